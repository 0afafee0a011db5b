"""The in-process floor: the predict call alone, timed with ``time.perf_counter``.

No HTTP, no JSON: a Python loop in this process calling LightGBM's ``Booster.predict``
on a ready 1-row feature matrix (numpy, and a pandas DataFrame as a pyfunc commonly
would), cd4ml's predictor on feature matrices (its own LightGBM call), and
``ServableModel.predict_records`` on request records (validation, feature lookup,
predictor).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["measure_floor"]


def _time(fn: Callable[[int], Any], n_inputs: int, rows: int, seconds: float,
          ) -> dict[str, Any]:
    fn(0)  # warm up
    times: list[float] = []
    t_end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < t_end or len(times) < 5:
        t0 = time.perf_counter()
        fn(i % n_inputs)
        times.append(time.perf_counter() - t0)
        i += 1
    a = np.asarray(times)
    total = float(a.sum())
    return {"rows": rows, "calls": len(a), "p50_us": float(np.median(a) * 1e6),
            "p99_us": float(np.percentile(a, 99) * 1e6), "mean_us": total / len(a) * 1e6,
            "calls_s": len(a) / total, "rows_s": len(a) * rows / total}


def measure_floor(servable: Any, single: list[dict[str, Any]],
                  batches: dict[int, list[list[dict[str, Any]]]], seconds: float,
                  ) -> list[dict[str, Any]]:
    """Timings of each predict path; ``single`` and ``batches`` are request records."""
    import pandas as pd

    out: list[dict[str, Any]] = []
    pred = servable.predictor
    booster = getattr(pred, "booster", None)
    names = list(pred.feature_names)

    def add(what: str, fn: Callable[[int], Any], n_inputs: int, rows: int) -> None:
        out.append({"what": what, **_time(fn, n_inputs, rows, seconds)})

    row_ids = [servable.rows_for([r]) for r in single]
    xs = [np.ascontiguousarray(servable.X[r]) for r in row_ids]
    if booster is not None:
        dfs = [pd.DataFrame(x, columns=names) for x in xs[:50]]
        add("Booster.predict, numpy, 1 row", lambda i: booster.predict(xs[i], num_threads=1),
            len(xs), 1)
        add("Booster.predict, pandas DataFrame, 1 row",
            lambda i: booster.predict(dfs[i], num_threads=1), len(dfs), 1)
    add(f"{type(pred).__name__}.predict (cd4ml's call), 1 row",
        lambda i: pred.predict(xs[i]), len(xs), 1)
    for n, bs in batches.items():
        xb = [np.ascontiguousarray(servable.X[servable.rows_for(b)]) for b in bs]
        add(f"{type(pred).__name__}.predict (cd4ml's call), {n} rows",
            lambda i, xb=xb: pred.predict(xb[i]), len(xb), n)
    add("ServableModel.predict_records, 1 row",
        lambda i: servable.predict_records([single[i]]), len(single), 1)
    for n, bs in batches.items():
        add(f"ServableModel.predict_records, {n} rows",
            lambda i, bs=bs: servable.predict_records(bs[i]), len(bs), n)
    return out
