"""Per-call cost of a 1-row prediction through cd4ml's LightGBM adapter, in-process.

The server answers from the bundle's precomputed forecast table in the common case, so
this cost matters only with ``serving.forecast_table: false``. A model shaped like the
flagship one (cd4ml's LightGBM defaults: 400 trees of up to 63 leaves, 20 features) is
fitted on synthetic data, then ``LightGBMPredictor.predict`` is timed on single rows.

    PYTHONPATH=src python benchmarks/lightgbm_single_row.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import lightgbm as lgb

    from cd4ml.registry.predictors import LightGBMPredictor
    from cd4ml.training.adapters import ADAPTERS

    rng = np.random.default_rng(0)
    n_features = 20
    X = rng.normal(size=(50_000, n_features)).astype(np.float32)
    y = X[:, 0] * 3 + np.sin(X[:, 1]) * 2 + rng.normal(size=len(X))
    params = {**ADAPTERS["lightgbm"].defaults("forecast"), "random_state": 0, "deterministic": True,
              "force_row_wise": True, "verbose": -1}
    booster = lgb.LGBMRegressor(**params).fit(X, y).booster_
    names = [f"f{i}" for i in range(n_features)]
    p = LightGBMPredictor(booster, feature_names=names)
    rows = [X[i:i + 1] for i in rng.integers(0, len(X), args.calls)]
    for r in rows[:200]:  # warm up (the first call sets things up)
        p.predict(r)
    per_call = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for r in rows:
            p.predict(r)
        per_call.append((time.perf_counter() - t0) / len(rows) * 1e6)
    print(f"LightGBMPredictor.predict, 1 row, {booster.num_trees()} trees: "
          f"median {statistics.median(per_call):.1f} µs/call "
          f"(min {min(per_call):.1f}, {args.repeats} x {args.calls} calls)")


if __name__ == "__main__":
    main()
