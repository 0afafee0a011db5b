"""Running the rollout controller: once, or every few seconds beside ``cd4ml serve``, one
controller per project.

A controller holds the project's controller lock (``.cd4ml/rollout-controller.lock``,
an OS file lock: released when its process dies) for as long as it runs, so two servers
of one project never run two controllers: the second one's controller waits, trying the
lock every round, and takes over when the first is gone. ``--once`` does not wait: the
lock held elsewhere is a one-line error.

The server's metrics come from ``--metrics-url`` (``cd4ml serve`` passes its own
``/metrics``), by default ``http://serving.host:serving.port/metrics``; a server that
cannot be reached gives no text, and a canary step then waits (never judged on nothing).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cd4ml.errors import LockedError, MissingExtraError

__all__ = ["lock_path", "metrics_url", "scraper", "run_once", "watch"]

log = logging.getLogger("cd4ml.rollout")


def lock_path(root: str | Path) -> Path:
    """The project's controller lock."""
    return Path(root).resolve() / ".cd4ml" / "rollout-controller.lock"


def metrics_url(cfg: Any, port: int | None = None, host: str | None = None) -> str:
    """The ``/metrics`` of the project's server (a wildcard host read on loopback)."""
    where = host or cfg.serving.host
    where = "127.0.0.1" if where in ("0.0.0.0", "::", "") else where
    return f"http://{where}:{port or cfg.serving.port}/metrics"


def scraper(url: str, timeout_s: float = 5.0) -> Callable[[], str]:
    """A callable returning the Prometheus text at ``url`` ("" when unreachable)."""
    try:
        import httpx
    except ImportError:
        raise MissingExtraError("the rollout controller's metrics", "serve", "httpx") from None

    def scrape() -> str:
        try:
            r = httpx.get(url, timeout=timeout_s)
        except httpx.HTTPError:
            return ""
        return r.text if r.status_code == 200 else ""
    return scrape


def _controller(cfg: Any, root: Path, stores: Any, metrics: Callable[[], str] | None) -> Any:
    from cd4ml.rollout.controller import Controller

    return Controller(cfg, root, stores, metrics_source=metrics)


def run_once(project_dir: str | Path, overrides: list[str] | None = None, *,
             metrics: Callable[[], str] | None = None) -> list[dict[str, Any]]:
    """One tick under the lock; LockedError when another controller holds it."""
    from cd4ml.pipeline.run import open_project
    from cd4ml.store import project_lock

    cfg, _, stores, root = open_project(project_dir, overrides)
    with project_lock(lock_path(root)), stores:
        return _controller(cfg, root, stores, metrics).tick()


def watch(project_dir: str | Path, overrides: list[str] | None = None, *,
          every: float, metrics: Callable[[], str] | None = None,
          parent: int | None = None, on_tick: Callable[[list[dict[str, Any]]], None] | None
          = None, rounds: int | None = None) -> None:
    """Tick every ``every`` seconds while holding the lock (waiting for it while another
    process holds it); stops after ``rounds`` ticks, or when ``parent`` (a pid) is no
    longer this process's parent. A failing tick is logged, not fatal."""
    from cd4ml.pipeline.run import open_project
    from cd4ml.store import project_lock

    cfg, _, stores, root = open_project(project_dir, overrides)
    done, warned = 0, False

    def go_on() -> bool:
        return (rounds is None or done < rounds) and (parent is None or os.getppid() == parent)

    while go_on():
        try:
            with project_lock(lock_path(root)), stores:
                log.info("rollout controller: running every %g s", every)
                ctl = _controller(cfg, root, stores, metrics)
                while go_on():
                    started = time.monotonic()
                    try:
                        got = ctl.tick()
                        for e in got:
                            if e.get("action") not in ("wait", "none", "step began"):
                                log.warning("rollout %s: %s: %s", e["deployment"],
                                            e["action"], e.get("reason"))
                        if on_tick is not None:
                            on_tick(got)
                    except Exception as exc:  # noqa: BLE001 - a round must not end it
                        log.error("rollout controller tick failed: %s", exc)
                    done += 1
                    if go_on():
                        time.sleep(max(0.0, every - (time.monotonic() - started)))
                return
        except LockedError as exc:
            if not warned:
                log.info("rollout controller: waiting: %s", exc)
                warned = True
            time.sleep(every)
