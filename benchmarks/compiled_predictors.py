"""Compiled predictors for a LightGBM booster, against ``Booster.predict``, on real ACS rows.

The issue's reference model (``LGBMClassifier(n_estimators=200, num_leaves=63)``, trained
on the 2015 rows of ../shared/data/acs-employment-ma/employment.parquet with its 16 inputs,
the nominal ones as ``categorical_feature``) is compiled by each candidate that is
installed, and each is measured in this process:

- one row: the median of per-call times over ``--calls`` calls on random 2016 rows, one
  thread (what a single-row request pays);
- 1,000 rows: rows/s, on 1 and on 2 threads (median of 5 timings of ``--reps`` calls);
- build: seconds from the booster to a loaded predictor (done once, at registration);
- exact: max |compiled - Booster.predict| over all 69,126 rows of 2016, and the same on
  ``check_rows`` (each input in turn NaN, -1, 0, 1e9: missing values, unseen categories).

Candidates: LightGBM's own ``Booster.predict``; lleaves (LLVM) in cd4ml's settings
(``cd4ml.registry.compiled``: generic CPU, inlining on or off) and with its defaults;
treelite + tl2cgen (C through gcc); ONNX Runtime (onnxmltools' converter). Those not
installed are skipped (``pip install treelite tl2cgen onnxruntime onnxmltools``).
Then the thread crossover of cd4ml's ``CompiledPredictor`` (1 against 2 threads by rows).

    PYTHONPATH=src .venv/bin/python benchmarks/compiled_predictors.py [--quick]

Measure on a quiet machine (the load average is printed): 2 shared cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "acs-employment-ma" / "employment.parquet"
INPUTS = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
          "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]
CATEGORICAL = ["MAR", "RELP", "ESP", "CIT", "MIG", "MIL", "ANC", "RAC1P"]
Fn = Callable[[np.ndarray], np.ndarray]


def _loadavg() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def one_row_us(fn: Fn, rows: list[np.ndarray]) -> float:
    for r in rows[:500]:
        fn(r)
    times = []
    for r in rows:
        t0 = time.perf_counter_ns()
        fn(r)
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000


def rows_per_s(fn: Fn, X: np.ndarray, reps: int) -> float:
    for _ in range(max(3, reps // 10)):
        fn(X)
    per_call = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn(X)
        per_call.append((time.perf_counter() - t0) / reps)
    return len(X) / statistics.median(per_call)


def candidates(clf: Any, tmp: Path) -> dict[str, Callable[[], tuple[Fn, Fn, str]]]:
    """name -> builder returning (1-thread fn, 2-thread fn, library version)."""
    b = clf.booster_
    out: dict[str, Callable[[], tuple[Fn, Fn, str]]] = {
        "Booster.predict": lambda: (lambda X: b.predict(X, num_threads=1),
                                    lambda X: b.predict(X, num_threads=2), _v("lightgbm"))}

    def cd4ml_lleaves(inline: bool) -> Callable[[], tuple[Fn, Fn, str]]:
        def build() -> tuple[Fn, Fn, str]:
            from cd4ml.registry.compiled import build_compiled, load_compiled

            files, meta = build_compiled(b, X16[:256], inline=inline)
            fn, status = load_compiled(files, meta, b)
            assert fn is not None, status
            one = type(fn)(fn.model, fn.num_feature, parallel_from=10**9)
            two = type(fn)(fn.model, fn.num_feature, parallel_from=0)
            return one, two, _v("lleaves")
        return build

    def lleaves_variant(**kw: Any) -> Callable[[], tuple[Fn, Fn, str]]:
        def build() -> tuple[Fn, Fn, str]:
            import lleaves

            path = tmp / "model.txt"
            path.write_text(b.model_to_string())
            m = lleaves.Model(model_file=str(path))
            m.compile(**kw)
            return (lambda X: m.predict(X, n_jobs=1), lambda X: m.predict(X, n_jobs=2),
                    _v("lleaves"))
        return build

    def tl2cgen() -> tuple[Fn, Fn, str]:
        import tl2cgen
        import treelite

        lib = tmp / "model.so"
        tl2cgen.export_lib(treelite.frontend.from_lightgbm(b), toolchain="gcc", libpath=lib,
                           params={"parallel_comp": 2}, nthread=2)
        p1, p2 = tl2cgen.Predictor(lib, nthread=1), tl2cgen.Predictor(lib, nthread=2)
        return (lambda X: p1.predict(tl2cgen.DMatrix(X)).reshape(len(X)),
                lambda X: p2.predict(tl2cgen.DMatrix(X)).reshape(len(X)),
                f"treelite {_v('treelite')}, tl2cgen {_v('tl2cgen')}")

    def onnx() -> tuple[Fn, Fn, str]:
        import onnxmltools
        import onnxruntime as ort
        from onnxmltools.convert.common.data_types import FloatTensorType

        model = onnxmltools.convert_lightgbm(
            clf, initial_types=[("input", FloatTensorType([None, len(INPUTS)]))],
            zipmap=False, target_opset=15).SerializeToString()

        def session(n: int) -> Fn:
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = n, 1
            s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
            return lambda X: s.run(["probabilities"], {"input": X})[0][:, 1].astype(np.float64)
        return session(1), session(2), f"onnxruntime {_v('onnxruntime')}"

    out["lleaves (cd4ml: generic cpu, inlining)"] = cd4ml_lleaves(True)
    out["lleaves (cd4ml, inline=False)"] = cd4ml_lleaves(False)
    out["lleaves (its defaults: host cpu, inlining)"] = lleaves_variant()
    out["treelite+tl2cgen (gcc)"] = tl2cgen
    out["onnxruntime (onnxmltools)"] = onnx
    return out


def _v(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


X16: np.ndarray


def main() -> None:
    global X16
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated name prefixes")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.quick:
        args.calls, args.reps = 3000, 30
    import lightgbm as lgb
    import pandas as pd

    from cd4ml.registry.compiled import check_rows

    d = pd.read_parquet(DATA)
    tr, ho = d[d.year == 2015], d[d.year == 2016]
    X15 = np.ascontiguousarray(tr[INPUTS].to_numpy(np.float32))
    X16 = np.ascontiguousarray(ho[INPUTS].to_numpy(np.float32))
    clf = lgb.LGBMClassifier(n_estimators=200, num_leaves=63, random_state=0, verbose=-1)
    clf.fit(X15, tr.employed.to_numpy(), feature_name=INPUTS,
            categorical_feature=[INPUTS.index(c) for c in CATEGORICAL])
    b = clf.booster_
    want, edges = b.predict(X16), check_rows(X16[:256])
    want_edges = b.predict(edges)
    rng = np.random.default_rng(0)
    rows = [X16[i:i + 1] for i in rng.integers(0, len(X16), args.calls)]
    X1000 = X16[:1000]
    n_cat = sum(ln.startswith("num_cat=") and ln != "num_cat=0"
                for ln in b.model_to_string().splitlines())
    print(f"load average at start: {_loadavg()}; {os.cpu_count()} CPUs; python "
          f"{sys.version.split()[0]}; model: {b.num_trees()} trees, {n_cat} of them with "
          f"categorical splits")
    results = []
    only = [s for s in args.only.split(",") if s]
    with tempfile.TemporaryDirectory() as td:
        for name, build in candidates(clf, Path(td)).items():
            if only and not any(name.startswith(o) for o in only):
                continue
            t0 = time.perf_counter()
            try:
                one, two, version = build()
            except ImportError as exc:
                print(f"{name}: skipped ({exc})")
                continue
            build_s = time.perf_counter() - t0
            r = {"name": name, "version": version, "build_s": build_s,
                 "max_abs_diff_2016": float(np.max(np.abs(one(X16) - want))),
                 "max_abs_diff_edges": float(np.max(np.abs(one(edges) - want_edges))),
                 "one_row_us": one_row_us(one, rows),
                 "rows_s_1000_1thread": rows_per_s(one, X1000, args.reps),
                 "rows_s_1000_2threads": rows_per_s(two, X1000, args.reps)}
            results.append(r)
            print(f"{name:<44} one row {r['one_row_us']:6.1f} µs   1,000 rows: "
                  f"{r['rows_s_1000_1thread']:>9,.0f} rows/s (1 thread) "
                  f"{r['rows_s_1000_2threads']:>9,.0f} (2)   build {build_s:6.1f} s   "
                  f"max|diff| 2016 {r['max_abs_diff_2016']:.2g}, edges "
                  f"{r['max_abs_diff_edges']:.2g}   [{version}]", flush=True)
            if name.startswith("lleaves (cd4ml: "):
                results.append({"crossover": crossover(one, two, X16, args.reps)})
    print(f"load average at end: {_loadavg()}")
    if args.out:
        args.out.write_text(json.dumps({"loadavg_end": _loadavg(), "results": results},
                                       indent=1))


def crossover(one: Fn, two: Fn, X: np.ndarray, reps: int) -> list[dict[str, float]]:
    """rows/s of cd4ml's CompiledPredictor on 1 and 2 threads by rows per call."""
    out = []
    print("  threads: rows per call -> rows/s on 1 thread | on 2 threads")
    for n in (100, 250, 500, 750, 1000, 1500, 2000, 5000):
        Xn = X[:n]
        k = max(10, reps * 1000 // n)
        r = {"rows": n, "one": rows_per_s(one, Xn, k), "two": rows_per_s(two, Xn, k)}
        out.append(r)
        print(f"  {n:>6} -> {r['one']:>9,.0f} | {r['two']:>9,.0f}"
              f"  ({r['two'] / r['one']:.2f}x)", flush=True)
    return out


if __name__ == "__main__":
    main()
