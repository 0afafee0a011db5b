"""The dashboard's ASGI app (Starlette): routes, query parameters, errors, metrics.

Every page is built in a worker thread (reading the stores and the log takes time; the
event loop, which may be the model server's, keeps answering meanwhile) from a fresh
look at the project: its config, metadata store, artifacts and prediction log. A query
value that cannot be used is answered 422 naming the parameter, a run, model or version
that does not exist 404, as :data:`cd4ml.errors.HTTP_STATUS` maps cd4ml's errors.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from cd4ml.errors import Cd4mlError, MissingExtraError, RequestError, http_status

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, RedirectResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise MissingExtraError("the cd4ml dashboard", "serve", _exc.name or "starlette") from _exc

from cd4ml.dashboard.html import Links, esc, page

__all__ = ["create_dashboard", "MetricsText", "NO_METRICS", "ASSETS"]

#: the stylesheet and anything else a page loads: shipped in the package, no CDN
ASSETS = Path(__file__).resolve().parent / "assets"
#: gives the server's Prometheus text, or an awaitable of it (``compose.asgi_metrics``)
MetricsText = Callable[[], str | Awaitable[str]]
NO_METRICS = ("Software metrics (requests, latency, errors, refused requests by reason, "
              "the prediction log's queue and drops, memory) come from a model server's "
              "/metrics, and this dashboard has none to read: open it where `cd4ml serve` "
              "mounts it (/ui on the server's port), or start it with `cd4ml ui "
              "--metrics-url http://HOST:PORT/metrics`.")

#: a view: (the dashboard, the request, the scrape) -> (title, body, active tab)
Build = Callable[["Dashboard", Request, "tuple[str | None, str, str]"], tuple[str, str, str]]


def bad_query(name: str, value: Any, expected: str) -> RequestError:
    """A 422 naming the query parameter, its value and what it takes."""
    return RequestError(f"query parameter {name!r} = {value!r}: {expected}",
                        errors=[{"field": name, "value": value, "problem": expected}])


def choice(q: Mapping[str, str], name: str, options: tuple[str, ...], default: str) -> str:
    v = q.get(name) or default
    if v not in options:
        raise bad_query(name, v, f"expected one of {', '.join(options)}")
    return v


def integer(q: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise bad_query(name, raw, f"expected a whole number from {lo} to {hi}") from None
    if not lo <= v <= hi:
        raise bad_query(name, raw, f"expected a whole number from {lo} to {hi}")
    return v


def time_param(q: Mapping[str, str], name: str) -> float | None:
    from cd4ml.predlog import parse_time

    try:
        return parse_time(q.get(name))
    except RequestError:
        raise bad_query(name, q.get(name), "expected an ISO date/time (2026-11-23T10:00) "
                        "or an age such as 30m, 2h, 7d") from None


class Dashboard:
    """The project the pages read and how they reach it (one per app)."""

    def __init__(self, project_dir: str | Path, overrides: list[str] | None,
                 metrics_text: MetricsText | None, prefix: str) -> None:
        from cd4ml.config import load_config
        from cd4ml.dashboard.forecast import ServableCache

        self.root = Path(project_dir).resolve()
        self.overrides = list(overrides or [])
        load_config(self.root, self.overrides)  # a bad project fails here, in one line
        self.metrics_text = metrics_text
        self.links = Links(prefix)
        self.servables = ServableCache()

    def open(self) -> tuple[Any, Any, Path]:
        """(config, stores, project root): a fresh look, closed by the caller."""
        from cd4ml.pipeline.run import open_project

        cfg, _, stores, root = open_project(self.root, self.overrides)
        return cfg, stores, root

    async def scrape(self) -> tuple[str | None, str, str]:
        """(the Prometheus text or None, where it came from, why there is none)."""
        fn = self.metrics_text
        if fn is None:
            return None, "", NO_METRICS
        source = str(getattr(fn, "source", "the metrics_text callable"))
        try:
            got = await fn() if inspect.iscoroutinefunction(fn) else \
                await run_in_threadpool(fn)
            if inspect.isawaitable(got):
                got = await got
        except Exception as exc:  # a server that is down: the page says so, and stays up
            return None, source, f"could not read the server's metrics from {source}: {exc}"
        return str(got), source, ""

    def endpoint(self, build: Build, *, metrics: bool = False) -> Callable[..., Any]:
        async def handle(request: Request) -> Response:
            scraped = await self.scrape() if metrics else (None, "", "")
            try:
                title, body, active = await run_in_threadpool(build, self, request, scraped)
                status = 200
            except Cd4mlError as exc:
                status = http_status(exc)
                title, active = ("Not found" if status == 404 else "Cannot show this"), ""
                body = f'<p class="error" id="error">{esc(exc)}</p>'
            return HTMLResponse(page(title, body, links=self.links, active=active,
                                     project=self.root.name), status_code=status)

        return handle


def create_dashboard(project_dir: str | Path, overrides: list[str] | None = None, *,
                     metrics_text: MetricsText | None = None, prefix: str = "") -> Any:
    """The dashboard of the project at ``project_dir`` as an ASGI app, its pages under
    ``prefix`` (``""``, or a path such as ``/ui`` when mounted beside a model server).

    ``metrics_text`` gives the model server's Prometheus text (a plain callable, called
    in a thread, or an ``async`` one: :func:`cd4ml.dashboard.compose.asgi_metrics`); None:
    the monitoring page says where those figures would come from.
    """
    from cd4ml.dashboard import views

    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise ValueError(f"prefix == {prefix!r}: expected '' or a path such as '/ui'")
    d = Dashboard(project_dir, overrides, metrics_text, prefix)
    p = prefix
    routes = [Route(p + "/", d.endpoint(views.overview, metrics=True)),
              Route(p + "/runs", d.endpoint(views.runs)),
              Route(p + "/runs/compare", d.endpoint(views.compare)),
              Route(p + "/runs/{run_id}", d.endpoint(views.run)),
              Route(p + "/models", d.endpoint(views.models)),
              Route(p + "/models/{name}/{version}", d.endpoint(views.version)),
              Route(p + "/audit", d.endpoint(views.audit)),
              Route(p + "/monitor", d.endpoint(views.monitor_index)),
              Route(p + "/monitor/{name}/{ref}", d.endpoint(views.served, metrics=True)),
              Route(p + "/monitor/{name}/{ref}/window", d.endpoint(views.window)),
              Mount(p + "/assets", app=StaticFiles(directory=ASSETS), name="assets")]
    if p:
        async def to_root(request: Request) -> Response:
            return RedirectResponse(p + "/")

        routes.insert(0, Route(p, to_root))
    app = Starlette(routes=routes)
    app.state.dashboard = d
    return app
