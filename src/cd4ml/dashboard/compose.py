"""Putting the dashboard beside a model server, and where its software metrics come from.

:class:`Beside` is the composed ASGI app of ``cd4ml serve``: a request whose path is the
dashboard's prefix or under it goes to the dashboard, anything else (``/predict``,
``/metrics``, lifespan events) to the model server exactly as it came, with no layer of
the dashboard's in between. The dashboard therefore bypasses the server's limits and
request metrics: its pages are neither counted as traffic nor cut by
``serving.request_timeout_s``.

The dashboard's ``metrics_text`` is a callable giving the Prometheus text:

- :func:`asgi_metrics` asks the server app it sits beside for ``GET /metrics`` in
  process (the server refreshes its prediction-log gauges when scraped, so the figures
  are current; with several workers the text merges them all);
- :func:`url_metrics` scrapes a running server over HTTP (``cd4ml ui --metrics-url``).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Beside", "asgi_metrics", "url_metrics"]


class Beside:
    """``prefix`` and below to ``dashboard``, everything else to ``app``."""

    def __init__(self, app: Any, dashboard: Any, prefix: str) -> None:
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"prefix == {prefix!r}: expected a path such as '/ui'")
        self.app, self.dashboard, self.prefix = app, dashboard, prefix
        self._n = len(prefix)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if path.startswith(self.prefix) and (len(path) == self._n or path[self._n] == "/") \
                and scope["type"] == "http":
            await self.dashboard(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def asgi_metrics(app: Any, path: str = "/metrics") -> Callable[[], Awaitable[str]]:
    """An async callable that GETs ``path`` of the ASGI ``app`` in process."""

    async def scrape() -> str:
        chunks: list[bytes] = []
        status = [0]
        sent = [False]

        async def receive() -> dict[str, Any]:
            if sent[0]:
                return {"type": "http.disconnect"}
            sent[0] = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            elif msg["type"] == "http.response.body":
                chunks.append(msg.get("body", b""))

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": path,
                 "raw_path": path.encode(), "root_path": "", "query_string": b"",
                 "headers": [(b"host", b"127.0.0.1"), (b"x-request-id", b"dashboard")],
                 "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0)}
        await app(scope, receive, send)
        if status[0] != 200:
            raise RuntimeError(f"GET {path} of the server answered {status[0]}")
        return b"".join(chunks).decode("utf-8", "replace")

    scrape.source = f"this server's {path}"  # type: ignore[attr-defined]
    return scrape


def url_metrics(url: str, timeout_s: float = 3.0) -> Callable[[], str]:
    """A callable that GETs ``url`` (a server's ``/metrics``); its errors name the URL."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--metrics-url {url!r}: expected http://host:port/metrics")

    def scrape() -> str:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as res:  # noqa: S310
                return str(res.read().decode("utf-8", "replace"))
        except (urllib.error.URLError, OSError) as exc:
            raise RuntimeError(f"could not scrape {url}: {exc}") from None

    scrape.source = url  # type: ignore[attr-defined]
    return scrape
