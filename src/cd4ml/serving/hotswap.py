"""Model published as data: follow the serving alias and swap versions while serving.

A :class:`ModelWatcher` thread per worker loads the version the alias names (when the
server starts, readiness is false until this first load is done), then polls the
registry every ``serving.poll_interval_s``. When the alias moves it loads the new
version in the background (every file verified against the hash the registry
recorded), warms it up (a prediction on real rows must be finite), and swaps it in
with one reference assignment; the new version may be of another kind (a forecast
replaced by a classifier). A request reads the holder once, so requests in
flight finish on the version they started with. A version that fails to load or warm
up is skipped until the alias moves again; the old version keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cd4ml.errors import UnavailableError
from cd4ml.serving.contracts import contract_class

__all__ = ["ModelHolder", "ModelWatcher", "warm_up"]

log = logging.getLogger("cd4ml.serve")


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


class ModelWatcher:
    """Loads the alias's version, then follows the alias (hot swap)."""

    def __init__(self, holder: ModelHolder, *, resolve: Callable[[], dict[str, Any]],
                 load: Callable[[dict[str, Any]], Any], interval_s: float,
                 on_load_error: Callable[[Exception], None] | None = None) -> None:
        self.holder, self.resolve, self.load = holder, resolve, load
        self.interval = interval_s
        self.on_load_error = on_load_error
        self.failed: set[str] = set()
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cd4ml-model-watcher",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def check(self) -> bool:
        """One poll: load and swap if the alias names another version. True if swapped."""
        row = self.resolve()
        cur = self.holder.current
        if cur is not None and (row["digest"], row["version"]) == (cur.digest, cur.version):
            return False
        key = f"{row['version']}:{row['digest']}"
        if key in self.failed:
            return False
        t0 = time.perf_counter()
        try:
            new = self.load(row)
            warm_up(new)
        except Exception as exc:
            self.failed.add(key)
            self.last_error = str(exc)
            log.error("could not load version %s: %s; %s", row["version"], exc,
                      "still serving version %s" % cur.version if cur else "nothing serves",
                      extra={"event": "model_load_failed", "version": row["version"]})
            if self.on_load_error:
                self.on_load_error(exc)
            return False
        old = self.holder.swap(new)
        self.last_error = None
        log.info("serving %s version %s (was %s), loaded in %.1f s", new.name, new.version,
                 old.version if old else "none", time.perf_counter() - t0,
                 extra={"event": "model_swapped", "model": new.name, "version": new.version,
                        "previous_version": old.version if old else None,
                        "load_s": round(time.perf_counter() - t0, 3)})
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception as exc:  # registry unreachable, alias removed...
                self.last_error = str(exc)
                log.error("watching the registry failed: %s", exc,
                          extra={"event": "registry_poll_failed"})
            if self.holder.current is not None and self.interval <= 0:
                return
            self._stop.wait(self.interval if self.interval > 0 else 1.0)
