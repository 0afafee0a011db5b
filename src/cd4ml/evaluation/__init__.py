"""Evaluation: metrics, sliced holdout reports, protected groups and the promotion gate.

Forecasts: :func:`evaluate`; classifiers: :func:`classification_report` (and
:func:`choose_threshold`); regressors: :func:`regression_report`; protected groups:
:func:`group_report`. numpy and pandas only (no scikit-learn, scipy or fairlearn at
runtime); every metric is checked against scikit-learn or fairlearn in the tests. The
leakage warnings (:func:`find_leaks`) fit one-feature models, with scikit-learn
(``cd4ml[ml]``, imported when they run).

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

import importlib
from typing import Any

# Loaded on first use, so `cd4ml run` on an up-to-date pipeline can print a gate
# report (render_gate needs neither numpy nor pandas) without importing pandas.
_WHERE = {
    "apply_gate": "gates", "render_gate": "render", "GATE_METRICS": "gates",
    "HIGHER_IS_BETTER": "metrics", "METRICS": "metrics", "compute_metrics": "metrics",
    "holiday_weights": "metrics", "mae": "metrics", "nwrmsle": "metrics", "r2": "metrics",
    "rmse": "metrics", "wmae": "metrics",
    "compare": "report", "evaluate": "report", "evaluation_weights": "report",
    "improvement_pct": "report", "higher_is_better": "report", "METRIC_NAMES": "metrics",
    "classification_report": "classification", "choose_threshold": "classification",
    "regression_report": "regression", "group_report": "fairness",
    "find_leaks": "leakage", "Leak": "leakage", "render_leakage": "render",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"cd4ml.evaluation.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cd4ml.evaluation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "wmae", "mae", "rmse", "r2", "nwrmsle", "METRICS", "HIGHER_IS_BETTER",
    "compute_metrics", "holiday_weights",
    "evaluate", "compare", "evaluation_weights", "improvement_pct", "higher_is_better",
    "METRIC_NAMES", "apply_gate", "render_gate", "GATE_METRICS",
    "classification_report", "choose_threshold", "regression_report", "group_report",
    "find_leaks", "Leak", "render_leakage",
]
