"""What an adapter's fit function receives: the rows to fit, checked and typed once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FitData", "OURS", "check_metric_weights"]

#: parameters cd4ml reads itself; the rest go to the library
OURS = frozenset({"target_offset", "categorical", "fit_rows", "group_key",
                  "recency_half_life", "metric_weights"})


def check_metric_weights(value: Any, *, where: str) -> bool:
    """``params.metric_weights``: true (fit with the metric's row weights, the default) or
    false (every row once); else a one-line ModelError naming ``where``."""
    if not isinstance(value, bool):
        from cd4ml.errors import ModelError

        raise ModelError(f"{where} = {value!r}: expected true (fit with the metric's row "
                         f"weights) or false (every row once)")
    return value


@dataclass(frozen=True)
class FitData:
    name: str  #: the spec's name, for messages
    params: dict[str, Any]  #: the adapter's defaults, overridden by the spec's params
    X: pd.DataFrame  #: the rows to fit; columns = feature names
    y: np.ndarray  #: float64 target (forecast, regression) or int64 class indices 0..k-1
    w: np.ndarray  #: float64 weights
    seed: int
    task: str
    base: np.ndarray | float = 0.0  #: the target offset at these rows (0 without one)
    offset: str | None = None  #: the feature the target is learnt relative to
    keys: tuple[str, ...] = ()  #: forecast series keys
    categorical: dict[str, int] | None = None  #: tabular: feature -> number of codes
    n_classes: int | None = None  #: classification
    estimator: str | None = None  #: scikit-learn estimator class (the adapter's)

    @property
    def names(self) -> list[str]:
        return list(self.X.columns)

    @property
    def kw(self) -> dict[str, Any]:
        """The parameters that go to the library."""
        return {k: v for k, v in self.params.items() if k not in OURS}

    def matrix(self) -> np.ndarray:
        return self.X.to_numpy(dtype=np.float32)

    def target(self) -> np.ndarray:
        """What the model learns: the target less the offset (class indices as they are)."""
        return self.y - self.base if self.n_classes is None else self.y

    def predictor_args(self) -> dict[str, Any]:
        return {"feature_names": self.names, "target_offset": self.offset, "task": self.task,
                "n_classes": self.n_classes}
