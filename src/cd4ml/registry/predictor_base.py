"""The base of every fitted model: ``predict`` on a float matrix, ``to_files`` without pickle.

Output by task: classification gives float64 probabilities of shape (n, k) (columns in
class-index order, binary too); regression and forecast give shape (n,).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cd4ml.errors import MissingExtraError, ModelError

__all__ = ["Predictor", "DEFAULT_TASK"]

#: the task a predictor without a ``task`` in its meta is for (bundles made before tasks)
DEFAULT_TASK = "forecast"


class Predictor:
    """Base: ``predict(X)`` on a float matrix whose columns are ``feature_names``.

    ``task`` and ``n_classes`` (classification) are stored in :meth:`meta`; a forecast
    predictor's meta leaves the task out, so forecast bundles stay as they were.
    """

    model_type: str = ""

    def __init__(self, *, feature_names: list[str], target_offset: str | None = None,
                 task: str = DEFAULT_TASK, n_classes: int | None = None) -> None:
        self.feature_names = list(feature_names)
        self.target_offset = target_offset
        self.task = task
        self.n_classes = n_classes
        if target_offset is not None and target_offset not in self.feature_names:
            raise ModelError(f"{self.model_type}: target_offset {target_offset!r} is not a "
                             f"feature; features: {self.feature_names}")
        self._offset_idx = (self.feature_names.index(target_offset)
                            if target_offset is not None else None)

    def offset(self, X: np.ndarray) -> np.ndarray | float:
        """The part of the prediction the model does not learn (0 where unknown)."""
        if self._offset_idx is None:
            return 0.0
        v = X[:, self._offset_idx].astype(np.float64)
        v[np.isnan(v)] = 0.0
        return v

    def _raw(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        if getattr(X, "ndim", None) != 2 or X.shape[1] != len(self.feature_names):
            raise ModelError(f"{self.model_type}: expected a matrix of "
                             f"{len(self.feature_names)} features {self.feature_names[:5]}"
                             f"{'...' if len(self.feature_names) > 5 else ''}, got shape "
                             f"{getattr(X, 'shape', type(X).__name__)}")
        return np.asarray(self._raw(X), dtype=np.float64) + self.offset(X)

    def meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.model_type, "feature_names": self.feature_names,
                               "target_offset": self.target_offset}
        if self.task != DEFAULT_TASK:
            out["task"] = self.task
        if self.n_classes is not None:
            out["n_classes"] = self.n_classes
        return out

    def to_files(self) -> dict[str, bytes]:
        raise NotImplementedError


def meta_args(meta: dict[str, Any]) -> dict[str, Any]:
    """The base constructor's arguments, from a saved meta."""
    return {"feature_names": meta["feature_names"], "target_offset": meta.get("target_offset"),
            "task": meta.get("task", DEFAULT_TASK), "n_classes": meta.get("n_classes")}


def file_of(files: dict[str, bytes], name: str, model_type: str) -> bytes:
    """``files[name]``, or a ModelError naming the file the predictor needs."""
    if name not in files:
        raise ModelError(f"{model_type}: the saved model has no {name!r} (files: "
                         f"{sorted(files)})")
    return files[name]


def import_extra(module: str, what: str, extra: str = "ml") -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(what, extra, module.split(".")[0]) from None
