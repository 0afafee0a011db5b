"""Grid, random and TPE search at the same trial budget: best-so-far validation metric per
trial, and each method's wall time, on Walmart (WMAE, one LightGBM candidate) and ACS
employment (ROC AUC, one LightGBM candidate).

Usage: python benchmarks/search_curves.py [--trials 20] [--walmart ../shared/data/walmart]
       [--acs ../shared/data/acs-employment-ma/employment.parquet] [--acs-rows N]
       [--only walmart|acs] [--keep DIR]

Each dataset is one fresh project (a copy of examples/walmart or examples/employment)
whose one candidate is the same LightGBM searched by each method in turn (``lgb_grid``,
``lgb_random``, ``lgb_tpe``: one `cd4ml run --json` each, as a user would; the data stages
run once, and each name has its own trial cache, so no method reuses another's fits). A
method's wall time is its candidate stage's: two worker processes with one thread each,
started by that run (``fit s`` adds up the trials' own fit and scoring times). random and
TPE search ranges; grid searches points spread over the same ranges (it needs a finite
grid), sampled without replacement. The same seed makes TPE's first 5 (random start-up)
trials random's first 5; the curves part after them. The best-so-far curves are read from the trials `cd4ml runs --json` lists
under the run. Writes ``benchmarks/results/search_curves-<time>.json`` and ``.png`` (needs
matplotlib: ``pip install 'cd4ml[bench]'``) and prints a table. On the full data with the
default 20 trials it fits 120 models of a few hundred trees (two at a time): expect tens
of minutes on two cores; ``--trials 3 --walmart DIR-of-the-sample --acs-rows 2000`` checks
that it works in about two minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
METHODS = ("grid", "random", "tpe")

#: per dataset: its metric and direction, the candidate's fixed params, and the space
#: each method searches (random and TPE: ranges; grid: points over the same ranges)
SETUPS: dict[str, dict[str, Any]] = {
    "walmart": {
        "metric": "wmae", "higher": False,
        "params": {"objective": "l1", "n_estimators": 600, "subsample": 0.8,
                   "subsample_freq": 1, "colsample_bytree": 0.8,
                   "target_offset": "seasonal_mean3", "metric_weights": False,
                   "categorical": ["Store", "Dept"]},
        "ranges": {"num_leaves": {"low": 15, "high": 255, "int": True, "log": True},
                   "learning_rate": {"low": 0.02, "high": 0.2, "log": True},
                   "min_child_samples": {"low": 5, "high": 200, "int": True, "log": True}},
        "grid": {"num_leaves": [15, 31, 63, 127, 255],
                 "learning_rate": [0.02, 0.05, 0.1, 0.2],
                 "min_child_samples": [5, 20, 50, 100, 200]},
    },
    "acs": {
        "metric": "roc_auc", "higher": True,
        "params": {"n_estimators": 300, "subsample": 0.8, "subsample_freq": 1,
                   "colsample_bytree": 0.8, "categorical": []},
        "ranges": {"num_leaves": {"low": 7, "high": 127, "int": True, "log": True},
                   "learning_rate": {"low": 0.01, "high": 0.2, "log": True},
                   "min_child_samples": {"low": 5, "high": 400, "int": True, "log": True}},
        "grid": {"num_leaves": [7, 15, 31, 63, 127],
                 "learning_rate": [0.01, 0.03, 0.1, 0.2],
                 "min_child_samples": [5, 25, 100, 400]},
    },
}


def _project(kind: str, dest: Path, args: argparse.Namespace) -> Path:
    """A fresh copy of the dataset's example project with its data."""
    example = ROOT / "examples" / ("walmart" if kind == "walmart" else "employment")
    proj = dest / kind
    shutil.copytree(example, proj, ignore=shutil.ignore_patterns(".cd4ml", "data"))
    (proj / "data").mkdir()
    if kind == "walmart":
        for name in ("train.csv.zip", "features.csv", "stores.csv"):
            shutil.copyfile(args.walmart / name, proj / "data" / name)
    elif args.acs_rows:
        import pandas as pd

        df = pd.read_parquet(args.acs)
        df = df.groupby("year", group_keys=False).sample(n=args.acs_rows, random_state=0)
        df.sort_values("id").to_parquet(proj / "data" / "employment.parquet", index=False)
    else:
        shutil.copyfile(args.acs, proj / "data" / "employment.parquet")
    return proj


def _candidate(kind: str, method: str, trials: int) -> str:
    """The --set value: the dataset's LightGBM, searched by ``method``."""
    s = SETUPS[kind]
    cand = {"name": f"lgb_{method}", "type": "lightgbm", "params": s["params"],
            "search": {"method": method, "trials": trials, "workers": 2,
                       "space": s["grid"] if method == "grid" else s["ranges"]}}
    return "models.candidates=" + json.dumps([cand])


def _cli(proj: Path, *args: str) -> Any:
    res = subprocess.run([sys.executable, "-m", "cd4ml.cli", *args, "-p", str(proj), "--json"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"cd4ml {args[0]} failed: {res.stderr.strip()}")
    return json.loads(res.stdout)


def _best_so_far(values: list[float | None], higher: bool) -> list[float | None]:
    out: list[float | None] = []
    best: float | None = None
    for v in values:
        if v is not None and (best is None or (v > best if higher else v < best)):
            best = v
        out.append(best)
    return out


def bench(kind: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One `cd4ml run` per method in one project: the first prepares the data (snapshot,
    features, split), the others find it cached; each starts its own worker processes."""
    s = SETUPS[kind]
    proj = _project(kind, tmp, args)
    key = f"validation.{s['metric']}"
    methods = {}
    for m in METHODS:
        t0 = time.perf_counter()
        outcome = _cli(proj, "run", "--set", _candidate(kind, m, args.trials))
        total = time.perf_counter() - t0
        run = next(r for r in _cli(proj, "runs") if r["id"] == outcome["run_id"])
        seconds = {st["name"]: st["seconds"] for st in outcome["stages"]}
        trials = sorted(run["trials"], key=lambda c: c["params"]["trial"])
        values = [(c.get("metrics") or {}).get(key) for c in trials]
        curve = _best_so_far(values, s["higher"])
        best = curve[-1] if curve else None
        at = next((i for i, v in enumerate(values) if best is not None and v == best), None)
        methods[m] = {"trials": len(trials), "values": values, "best_so_far": curve,
                      "best": best,
                      "best_params": None if at is None else trials[at]["params"]["params"],
                      "wall_s": seconds.get(f"candidate:lgb_{m}"),
                      "fit_s": round(sum((c.get("summary") or {}).get("seconds", 0.0)
                                         for c in trials), 3),
                      "run_id": outcome["run_id"], "pipeline_s": round(total, 1),
                      "holdout": outcome["metrics"].get(f"holdout.selected.{s['metric']}")}
    return {"metric": s["metric"], "higher": s["higher"], "methods": methods}


def plot(results: dict[str, Any], path: Path, trials: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, (kind, res) in zip(axes[0], results.items(), strict=True):
        for m, r in res["methods"].items():
            xs = list(range(1, len(r["best_so_far"]) + 1))
            ax.plot(xs, r["best_so_far"], marker="o", markersize=3,
                    label=f"{m} ({r['wall_s']:.0f} s)")
        arrow = "higher is better" if res["higher"] else "lower is better"
        ax.set(title=f"{kind}: best validation {res['metric']} so far ({arrow})",
               xlabel="trial", ylabel=res["metric"])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"cd4ml search: grid vs random vs TPE, {trials} trials each, 2 workers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20, help="trials per method (default 20)")
    ap.add_argument("--walmart", type=Path, default=SHARED / "walmart",
                    help="folder with train.csv.zip, features.csv, stores.csv")
    ap.add_argument("--acs", type=Path, default=SHARED / "acs-employment-ma" /
                    "employment.parquet")
    ap.add_argument("--acs-rows", type=int, default=0,
                    help="rows per ACS year, a seeded sample (default: all)")
    ap.add_argument("--only", choices=sorted(SETUPS), default=None)
    ap.add_argument("--keep", type=Path, default=None, help="keep the projects here")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (the PNG beside it)")
    args = ap.parse_args(argv)
    if args.trials < 1:
        ap.error(f"--trials == {args.trials}, must be >= 1")
    kinds = [args.only] if args.only else list(SETUPS)
    if "walmart" in kinds and not (args.walmart / "train.csv.zip").is_file():
        sys.exit(f"Walmart data not found in {args.walmart}")
    if "acs" in kinds and not args.acs.is_file():
        sys.exit(f"ACS employment data not found at {args.acs}")
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="cd4ml-search-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        results = {kind: bench(kind, args, tmp) for kind in kinds}
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    out = args.out or ROOT / "benchmarks" / "results" / \
        f"search_curves-{time.strftime('%Y-%m-%dT%H%M')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "search_curves", "trials": args.trials, "workers": 2,
           "data": {"walmart": str(args.walmart), "acs": str(args.acs),
                    "acs_rows_per_year": args.acs_rows or "all"},
           "results": results}
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    png = out.with_suffix(".png")
    plot(results, png, args.trials)
    print(f"{'data':8} {'method':7} {'trials':>6} {'best':>12} {'wall s':>8} {'fit s':>8}"
          "  best params")
    for kind, res in results.items():
        for m, r in res["methods"].items():
            best = "-" if r["best"] is None else f"{r['best']:.4f}"
            print(f"{kind:8} {m:7} {r['trials']:>6} {best:>12} {r['wall_s'] or 0:>8.1f} "
                  f"{r['fit_s']:>8.1f}  {json.dumps(r['best_params'])}")
    print(f"wrote {out} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
