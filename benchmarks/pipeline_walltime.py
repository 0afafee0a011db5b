"""Wall time of the full pipeline on the full Walmart data: cold start, then no change.

Usage: python benchmarks/pipeline_walltime.py [--data ../shared/data/walmart] [--keep DIR]

Runs `cd4ml run --json` as a user would (a fresh process each time) in a fresh copy of
examples/walmart, and prints the wall time of each run and the gated model's holdout
metric. Goals (issue 2): cold < 3 min, no-change < 2 s on 2 cores; WMAE <= 1,500.
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

ROOT = Path(__file__).resolve().parents[1]


def run(proj: Path, *extra: str) -> tuple[float, dict]:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "cd4ml.cli", "run", "-p", str(proj), "--json",
                          *extra], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"cd4ml run failed: {res.stderr.strip()}")
    return dt, json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "walmart")
    ap.add_argument("--keep", type=Path, default=None, help="project folder to keep")
    args = ap.parse_args()
    if not (args.data / "train.csv.zip").is_file():
        sys.exit(f"full Walmart data not found in {args.data}")
    proj = args.keep or Path(tempfile.mkdtemp(prefix="cd4ml-bench-"))
    if proj.exists():
        shutil.rmtree(proj)
    shutil.copytree(ROOT / "examples" / "walmart", proj,
                    ignore=shutil.ignore_patterns(".cd4ml", "data"))
    (proj / "data").mkdir()
    for f in ("train.csv.zip", "features.csv", "stores.csv"):
        shutil.copyfile(args.data / f, proj / "data" / f)
    cold, doc = run(proj)
    stage_s = {s["name"]: s["seconds"] for s in doc["stages"]}
    noop, doc2 = run(proj)
    assert doc2["up_to_date"], "the second run was expected to do nothing"
    m = doc["metrics"]
    print(f"cold run            {cold:8.1f} s   (goal < 180 s)")
    print(f"no-change re-run    {noop:8.2f} s   (goal < 2 s)")
    print("slowest stages      " + ", ".join(
        f"{k} {v:.1f}s" for k, v in sorted(stage_s.items(), key=lambda kv: -kv[1])[:5]))
    print(f"selected            {doc['selected']}")
    print(f"holdout WMAE        {m.get('holdout.selected.wmae', float('nan')):10.1f}"
          f"   (goal <= 1,500)")
    for k in sorted(m):
        if k.startswith("holdout.") and k.endswith(".wmae") and k != "holdout.selected.wmae":
            print(f"  baseline {k.split('.')[1]:<16} {m[k]:10.1f}")
    print(f"gate passed         {bool(doc['gate'] and doc['gate'].get('passed'))}")
    if args.keep is None:
        shutil.rmtree(proj, ignore_errors=True)


if __name__ == "__main__":
    main()
