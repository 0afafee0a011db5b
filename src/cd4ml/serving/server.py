"""The server process: ``cd4ml serve`` runs uvicorn with :func:`app_from_env` per worker.

Each worker builds its app from the project's config: the prediction log, a model
watcher that loads the serving alias's version in the background and follows the alias
(hot swap), and a SIGTERM/SIGINT handler that turns readiness false for
``serving.drain_s`` before uvicorn stops. With several workers, Prometheus metrics go
through a multiprocess folder made here and removed at the end.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from cd4ml.errors import ConfigError
from cd4ml.serving.app import create_app
from cd4ml.serving.guard import feedback_token_from_env
from cd4ml.serving.hotswap import ModelHolder
from cd4ml.serving.router import DeploymentWatcher, Router
from cd4ml.serving.shadow_process import ShadowSpec
from cd4ml.serving.ops import METRICS, log_config
from cd4ml.serving.prediction_log import open_log

__all__ = ["app_from_env", "serve", "FACTORY"]

log = logging.getLogger("cd4ml.serve")

_ENV = "CD4ML_SERVE"


def _install_drain(drain_s: float, draining: threading.Event) -> None:
    """On the first SIGTERM/SIGINT: readiness false, keep serving ``drain_s``, then stop."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        prev = signal.getsignal(sig)
        if not callable(prev):
            continue

        def handler(signum: int, frame: Any, prev: Any = prev) -> None:
            if draining.is_set() or drain_s <= 0:
                draining.set()
                prev(signum, frame)
                return
            draining.set()
            log.info("draining for %.1f s before stopping (readiness is false)", drain_s,
                     extra={"event": "draining"})
            t = threading.Timer(drain_s, prev, args=(signum, None))
            t.daemon = True
            t.start()

        signal.signal(sig, handler)


def app_from_env() -> Any:
    """The app factory each worker runs (``cd4ml serve`` passes its settings by env)."""
    from cd4ml.config import load_config
    from cd4ml.registry.loader import load_version
    from cd4ml.serving.deployments import effective_deployment
    from cd4ml.store import open_stores

    opts = json.loads(os.environ[_ENV])
    root = Path(opts["project_dir"])
    cfg, _ = load_config(root, opts.get("overrides") or [])
    s = cfg.serving
    plog = open_log(s, root)
    if plog is not None:
        lost = sum(x["lost"] for x in plog.recovered)
        if lost:
            METRICS.log_lost.inc(lost)
    stores_box: dict[str, Any] = {}

    def stores() -> Any:
        if "s" not in stores_box:
            stores_box["s"] = open_stores(cfg.store, root)
        return stores_box["s"]

    def resolve() -> tuple[Any, dict[int, dict[str, Any]]]:
        st = stores()
        state = effective_deployment(st, cfg, s.deployment)
        rows = {a.version: st.metadata.resolve(state.model, a.version) for a in state.arms}
        return state, rows

    def load(row: dict[str, Any]) -> Any:
        st = stores()
        return load_version(st.metadata, st.artifacts, row["model_name"], row["version"],
                            forecast_table=s.forecast_table)

    holder = ModelHolder()
    router = Router(holder)
    watcher = DeploymentWatcher(router, resolve=resolve, load=load,
                                interval_s=s.poll_interval_s, keep_loaded=s.keep_loaded,
                                metrics=METRICS,
                                on_load_error=lambda exc: METRICS.load_failures.inc())
    draining = threading.Event()
    _install_drain(s.drain_s, draining)
    METRICS.ready.set(0)
    workers = int(opts.get("workers") or s.workers)
    return create_app(holder, settings=s, plog=plog, watcher=watcher, router=router,
                      startup_wait_s=600 if workers > 1 else 0, draining=draining,
                      feedback_token=feedback_token_from_env(),
                      shadow_spec=ShadowSpec(str(root), tuple(opts.get("overrides") or ())))


#: the app factory each worker runs by default
FACTORY = "cd4ml.serving.server:app_from_env"


def check_port(host: str, port: int) -> None:
    """A ConfigError (one line) when ``host:port`` cannot be listened on: another process
    holds it, or the address is not this machine's. Bound the way uvicorn binds
    (``SO_REUSEADDR``), so a port a stopped server left in TIME_WAIT counts as free."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            why = ("is in use by another process" if exc.errno == errno.EADDRINUSE
                   else f"cannot be listened on ({exc.strerror})")
            raise ConfigError(f"{host}:{port} {why}; choose another --port (or --host)",
                              key="serving.port", value=port) from None


def serve(project_dir: str | Path = ".", *, overrides: list[str] | None = None,
          port: int | None = None, host: str | None = None, workers: int | None = None,
          factory: str = FACTORY) -> None:
    """Serve the model holding the serving alias with uvicorn (``workers`` processes).

    ``factory`` (``module:function``) builds each worker's app; one other than
    :func:`app_from_env` wraps what it returns (``cd4ml serve`` puts the dashboard
    beside it this way, so serving never imports the dashboard)."""
    import shutil
    import tempfile

    import uvicorn

    from cd4ml.config import load_config
    from cd4ml.store import open_stores

    root = Path(project_dir).resolve()
    cfg, _ = load_config(root, overrides)
    feedback_token_from_env()  # an empty CD4ML_FEEDBACK_TOKEN: refused now, in one line
    with open_stores(cfg.store, root) as stores:  # fail now, in one line, if nothing serves
        stores.metadata.resolve(cfg.models.name, cfg.serving.alias)
    check_port(host or cfg.serving.host, port or cfg.serving.port)
    n = workers or cfg.serving.workers
    os.environ[_ENV] = json.dumps({"project_dir": str(root), "overrides": list(overrides or []),
                                   "workers": n})
    prom_dir = None
    if n > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        prom_dir = tempfile.mkdtemp(prefix="cd4ml-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom_dir
    try:
        uvicorn.run(factory, factory=True,
                    host=host or cfg.serving.host, port=port or cfg.serving.port, workers=n,
                    log_config=log_config(), access_log=False, lifespan="on",
                    # nothing uses the client's address: no X-Forwarded-* rewriting layer
                    proxy_headers=False)
    finally:
        if prom_dir:
            shutil.rmtree(prom_dir, ignore_errors=True)
