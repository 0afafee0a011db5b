"""A compiled LightGBM predictor: the booster's trees as native code, built at registration.

`lleaves <https://github.com/siboehm/lleaves>`_ compiles a booster's text model with LLVM
(through llvmlite) into one native function. :func:`build_compiled` does it once, when a
version is registered, and returns the object file and the rows it was checked on, for the
caller to store in the bundle (hash-verified like every file). :func:`load_compiled` loads
it at serving and hands back a predictor only after it matched the booster's own
predictions on those rows, and on the same rows with each input in turn missing, negative,
zero and huge (:func:`check_rows`); otherwise None, the plain predictor answers and the
status says why. Public APIs only: ``Booster.model_to_string``/``predict`` and lleaves'
``Model.compile``/``predict``.

Why lleaves (``benchmarks/compiled_predictors.py``; its results of 2026-12-02T0237: the
ACS booster of 200 trees of 63 leaves with categorical splits, this 2-core VM, quiet):
one row in 12 µs against 50 µs for ``Booster.predict`` (31-55 µs over runs; the Python
around the call is most of lleaves' 12); 1,000 rows at 806 k rows/s on one thread, 945 k
on two, against 124 k and 207 k; equal to the booster within 6.1e-16
on all 69,126 rows of 2016 and on the edge rows, categorical splits, missing values,
regression and multiclass included. treelite + tl2cgen (C through gcc) was exact too
but 45 µs for one row (a DMatrix per call), 224 k / 401 k rows/s; ONNX Runtime computes
in float32 (max |diff| 3.9e-7 on probabilities: it fails the tolerance), 18 µs, 149 k /
203 k rows/s. The cost is the build, once per registration: 27 s for this model with
lleaves' inlining (the default, ``inline=True``), 4 s without (500 k / 762 k rows/s).

The code is compiled for the generic CPU of the machine's architecture (no
host-specific instructions), so a bundle registered on one x86-64 host runs on any other;
one built for another architecture or OS is refused (``platform``) before anything loads.

The caller's part (registration, then loading a version)::

    files, meta = build_compiled(booster, X_sample)   # a few hundred encoded rows
    manifest["compiled"] = {"meta": meta,
                            "files": {n: artifacts.put_bytes(b) for n, b in files.items()}}
    ...
    files = {n: artifacts.get_bytes(d) for n, d in manifest["compiled"]["files"].items()}
    predict, status = load_compiled(files, manifest["compiled"]["meta"], booster)
    # predict(X) replaces booster.predict(X) when not None; status -> predictor_status
"""

from __future__ import annotations

import hashlib
import io
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from cd4ml.errors import MissingExtraError, ModelError

__all__ = ["KIND", "TOLERANCE", "PARALLEL_FROM_ROWS", "CompiledPredictor", "build_compiled",
           "load_compiled", "check_rows"]

KIND = "lleaves"
#: largest accepted |compiled - booster|, relative to max(1, |booster|): on probabilities
#: (and values up to 1) an absolute 1e-9; measured on 2016's 69,126 rows: 6.1e-16
TOLERANCE = 1e-9
#: from this many rows a call splits the rows between two threads; below, one thread.
#: Measured on the ACS model: two threads gave 1.26x the rows/s of one at 500 rows and
#: 1.29x at 1,000 on a quiet machine, 0.88-1.13x at 1,000 and 1.3-1.5x at 2,000 while
#: other work ran (and a server's other core parses the next request meanwhile)
PARALLEL_FROM_ROWS = 1000
OBJECT_FILE = "compiled.o"
SAMPLE_FILE = "compiled_sample.npy"
_TARGET_CPU = "generic"  # portable code: no instruction the architecture's baseline lacks
_EDGE_VALUES = (np.nan, -1.0, 0.0, 1e9)  # each input of a few sample rows set to these
_EDGE_ROWS = 8


class CompiledPredictor:
    """``predict(X)`` as ``booster.predict(X)`` answers: (n,) binary/regression, (n, k)."""

    def __init__(self, model: Any, num_feature: int, *, parallel_from: int = PARALLEL_FROM_ROWS,
                 ) -> None:
        self.model, self.num_feature, self.parallel_from = model, num_feature, parallel_from
        # the second thread of large calls; it starts at the first one
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cd4ml-compiled")

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return self.predict(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.num_feature:
            raise ModelError(f"compiled predictor: expected a matrix of {self.num_feature} "
                             f"features, got shape {X.shape}")
        X64 = np.ascontiguousarray(X, dtype=np.float64)  # lleaves' fp64 input, made once
        n = len(X64)
        if n < self.parallel_from:
            return np.asarray(self.model.predict(X64, n_jobs=1))
        # two threads, the second started once: lleaves' own n_jobs=2 starts a pool per
        # call, which cost more than it saved at 1,000 rows (291 k against 483 k rows/s
        # for this split, measured while other work ran)
        half = n // 2
        second = self._pool.submit(self.model.predict, X64[half:], 1)
        first = self.model.predict(X64[:half], n_jobs=1)
        return np.concatenate([first, second.result()])


def check_rows(sample: np.ndarray) -> np.ndarray:
    """The rows a compiled model is checked on: ``sample``, then for its first few rows
    each input in turn set to NaN, -1, 0 and 1e9 (missing values, unseen categories and
    out-of-range numbers take branches real rows may not).

    >>> check_rows(np.zeros((10, 3), dtype=np.float32)).shape
    (106, 3)
    """
    sample = np.asarray(sample, dtype=np.float32)
    base = sample[:_EDGE_ROWS]
    edges = []
    for j in range(sample.shape[1]):
        for v in _EDGE_VALUES:
            rows = base.copy()
            rows[:, j] = v
            edges.append(rows)
    return np.concatenate([sample, *edges]) if edges else sample


def build_compiled(booster: Any, sample_X: np.ndarray, *, inline: bool = True,
                   ) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Compile ``booster``; returns (files, meta) for the bundle. Raises ModelError when
    lleaves cannot compile it or the result differs from the booster on ``check_rows``.

    ``inline=False`` builds ~6x faster (4 s against 27 s for 200 trees of 63 leaves) for
    ~1.6x fewer rows/s on batches; one row costs the same."""
    lleaves = _lleaves()
    if lleaves is None:
        raise MissingExtraError("the compiled predictor", "fast", "lleaves")
    sample = _sample_matrix(sample_X, booster.num_feature())
    import llvmlite.binding as llvm

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cd4ml-compile-") as tmp:
        model_path = Path(tmp) / "model.txt"
        model_path.write_text(booster.model_to_string())
        obj_path = Path(tmp) / OBJECT_FILE
        try:
            model = lleaves.Model(model_file=str(model_path))
            model.compile(cache=str(obj_path), finline=inline, target_cpu=_TARGET_CPU,
                          target_cpu_features="")
        except Exception as exc:  # e.g. ValueError: an objective lleaves does not implement
            raise ModelError(f"lleaves cannot compile this booster: "
                             f"{type(exc).__name__}: {exc}") from None
        obj = obj_path.read_bytes()
    build_s = time.perf_counter() - t0
    npy = io.BytesIO()
    np.save(npy, sample, allow_pickle=False)
    files = {OBJECT_FILE: obj, SAMPLE_FILE: npy.getvalue()}
    meta = {
        "kind": KIND,
        "libraries": {name: _version(name) for name in ("lleaves", "llvmlite", "lightgbm")},
        "platform": _platform(llvm.get_process_triple()),
        "target_cpu": _TARGET_CPU, "finline": inline,
        "num_feature": int(booster.num_feature()),
        "num_class": int(booster.num_model_per_iteration()),
        "num_trees": int(booster.num_trees()),
        "model_sha256": _sha256(booster.model_to_string().encode()),
        "files": {name: _sha256(data) for name, data in files.items()},
        "sample_rows": len(sample),
        "tolerance": TOLERANCE,
        "build_s": round(build_s, 2),
    }
    ok, detail = _agree(CompiledPredictor(model, meta["num_feature"]), booster, sample)
    if not ok:
        raise ModelError(f"lleaves' compiled model differs from the booster: {detail}")
    meta["checked"] = detail
    return files, meta


def load_compiled(files: dict[str, bytes], meta: dict[str, Any], booster: Any,
                  sample_X: np.ndarray | None = None) -> tuple[CompiledPredictor | None, str]:
    """(predictor, status) when the stored model matches ``booster`` on ``check_rows`` of
    ``sample_X`` (default: the rows stored at build), else (None, why not)."""
    try:
        fn, detail = _load(files, meta, booster, sample_X)
    except _Refused as exc:
        return None, f"not used: {exc}; the plain predictor answers"
    return fn, f"verified: {detail}; {KIND} {meta['libraries']['lleaves']} answers"


class _Refused(Exception):
    pass


#: what build_compiled's meta holds and a load reads
_META_KEYS = ("libraries", "platform", "files", "num_feature", "num_class", "num_trees",
              "finline")


def _load(files: dict[str, bytes], meta: dict[str, Any], booster: Any,
          sample_X: np.ndarray | None) -> tuple[CompiledPredictor, str]:
    if meta.get("kind") != KIND:
        raise _Refused(f"compiled kind {meta.get('kind')!r} is not {KIND!r}")
    need = [k for k in _META_KEYS if k not in meta]
    need += [f"files.{f}" for f in (OBJECT_FILE, SAMPLE_FILE) if f not in meta.get("files", {})]
    if need:
        raise _Refused(f"its meta lacks {need} (not written by build_compiled)")
    lleaves = _lleaves()
    if lleaves is None:
        raise _Refused("lleaves is not installed (pip install 'cd4ml[fast]')")
    built, here = meta["libraries"]["lleaves"], _version("lleaves")
    if built != here:
        raise _Refused(f"compiled with lleaves {built}, this environment has {here}")
    import llvmlite.binding as llvm

    plat = _platform(llvm.get_process_triple())
    if plat != meta["platform"] or meta.get("target_cpu") != _TARGET_CPU:
        raise _Refused(f"compiled for {meta['platform']} (cpu {meta.get('target_cpu')!r}), "
                       f"this is {plat}")
    for name, digest in meta["files"].items():
        if name not in files:
            raise _Refused(f"file {name} is missing")
        if _sha256(files[name]) != digest:
            raise _Refused(f"file {name} does not hash to the sha256 recorded at build "
                           f"({digest[:12]}...)")
    shape = {"num_feature": booster.num_feature(), "num_class": booster.num_model_per_iteration(),
             "num_trees": booster.num_trees()}
    differ = {k: (meta[k], v) for k, v in shape.items() if meta[k] != v}
    if differ:
        raise _Refused(f"compiled from another model (built, this booster): {differ}")
    sample = np.load(io.BytesIO(files[SAMPLE_FILE]), allow_pickle=False) \
        if sample_X is None else sample_X
    sample = _sample_matrix(sample, shape["num_feature"])
    with tempfile.TemporaryDirectory(prefix="cd4ml-compiled-") as tmp:
        model_path = Path(tmp) / "model.txt"
        model_path.write_text(booster.model_to_string())
        obj_path = Path(tmp) / f"{meta['files'][OBJECT_FILE]}.o"  # keyed by its sha256
        obj_path.write_bytes(files[OBJECT_FILE])
        try:
            model = lleaves.Model(model_file=str(model_path))
            model.compile(cache=str(obj_path), finline=meta["finline"],
                          target_cpu=_TARGET_CPU, target_cpu_features="")
        except Exception as exc:
            raise _Refused(f"lleaves cannot load {OBJECT_FILE}: "
                           f"{type(exc).__name__}: {exc}") from None
    fn = CompiledPredictor(model, shape["num_feature"])
    ok, detail = _agree(fn, booster, sample)
    if not ok:
        raise _Refused(f"mismatch: {detail}")
    return fn, detail


def _agree(fn: CompiledPredictor, booster: Any, sample: np.ndarray) -> tuple[bool, str]:
    """Whether ``fn`` equals ``booster.predict`` within TOLERANCE on ``check_rows(sample)``."""
    X = check_rows(sample)
    want = np.asarray(booster.predict(X), dtype=np.float64)
    try:
        got = fn.predict(X)
    except Exception as exc:
        return False, f"the compiled model failed on {len(X)} rows: {type(exc).__name__}: {exc}"
    if got.shape != want.shape:
        return False, f"output shape {got.shape}, the booster's {want.shape}"
    diff = np.abs(got - want)
    bad = ~(diff <= TOLERANCE * np.maximum(1.0, np.abs(want)))  # NaN counts as bad
    rows = f"{len(sample)} sample rows and {len(X) - len(sample)} edge rows"
    worst = float(np.nanmax(diff)) if np.isfinite(diff).any() else float("nan")
    if bad.any():
        n_bad = int(bad.reshape(len(X), -1).any(axis=1).sum())
        return False, (f"{n_bad} of {len(X)} rows ({rows}) differ from the booster by more "
                       f"than {TOLERANCE:g} (max |diff| {worst:.3g})")
    return True, f"{rows} within {TOLERANCE:g} of the booster (max |diff| {worst:.2g})"


def _sample_matrix(X: Any, num_feature: int) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != num_feature or len(X) == 0:
        raise ModelError(f"compiled predictor: sample_X must be a non-empty matrix of "
                         f"{num_feature} features, got shape {X.shape}")
    return np.ascontiguousarray(X)


def _lleaves() -> Any:
    try:
        import lleaves
    except ImportError:
        return None
    return lleaves


def _version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def _platform(triple: str) -> dict[str, str]:
    return {"system": platform.system(), "machine": platform.machine(), "triple": triple}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
