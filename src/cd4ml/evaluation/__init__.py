"""Evaluation: forecast metrics, sliced holdout reports and the promotion gate.

numpy and pandas only (no scikit-learn or scipy at runtime); every metric is checked
against scikit-learn in the tests.

>>> import pandas as pd
>>> from cd4ml.config import GateConfig
>>> frame = pd.DataFrame({"y": [10.0, 20.0], "naive": [14.0, 20.0], "gbm": [11.0, 21.0],
...                       "store": [1, 2]})
>>> reports = {m: evaluate(frame, pred=m, target="y", slices=["store"]) for m in ["naive", "gbm"]}
>>> [(r["model"], r["mae"]) for r in compare(reports, "mae", baselines=["naive"])]
[('gbm', 1.0), ('naive', 2.0)]
>>> gate = apply_gate(reports["gbm"], {"naive": reports["naive"]},
...                   GateConfig(max_slice_regression_pct=10.0), metric="mae")
>>> gate["passed"], [r["passed"] for r in gate["rules"]]
(False, [True, False])
"""

from __future__ import annotations

from cd4ml.evaluation.gates import GATE_METRICS, apply_gate, render_gate
from cd4ml.evaluation.metrics import (
    HIGHER_IS_BETTER, METRICS, compute_metrics, holiday_weights, mae, nwrmsle, r2, rmse,
    wmae,
)
from cd4ml.evaluation.report import compare, evaluate, evaluation_weights, improvement_pct

__all__ = [
    "wmae", "mae", "rmse", "r2", "nwrmsle", "METRICS", "HIGHER_IS_BETTER",
    "compute_metrics", "holiday_weights",
    "evaluate", "compare", "evaluation_weights", "improvement_pct",
    "apply_gate", "render_gate", "GATE_METRICS",
]
