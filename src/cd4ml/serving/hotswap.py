"""Model published as data: the version a worker describes, and the warm-up each
version passes before it serves.

The router's :class:`~cd4ml.serving.router.DeploymentWatcher` loads every version the
deployment names in the background (every file verified against the hash the registry
recorded), warms each up (a prediction on real rows must be finite), and swaps the
routing table in with one reference assignment; the :class:`ModelHolder` then holds the
primary version (the new one may be of another kind: a forecast replaced by a
classifier). Requests in flight finish on the version they started with. A version that
fails to load or warm up is skipped until its digest changes; the old one keeps serving.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from cd4ml.errors import UnavailableError
from cd4ml.serving.contracts import contract_class

__all__ = ["ModelHolder", "warm_up"]



class ModelHolder:
    """The version being served; replaced atomically (a reference swap)."""

    def __init__(self, model: Any | None = None) -> None:
        self.current = model
        self._lock = threading.Lock()
        self.listeners: list[Callable[[Any | None, Any], None]] = []

    @property
    def model(self) -> Any:
        m = self.current
        if m is None:
            raise UnavailableError("the model is still loading; retry shortly "
                                   "(GET /ready says when)")
        return m

    def swap(self, model: Any) -> Any | None:
        with self._lock:
            old, self.current = self.current, model
        for fn in self.listeners:
            fn(old, model)
        return old


def warm_up(model: Any, rows: int = 64) -> None:
    """Predict real rows once (first calls allocate); refuse a model that answers NaN
    (how, the model's contract says: :mod:`cd4ml.serving.contracts`)."""
    contract_class(model).warm_up(model, rows)
