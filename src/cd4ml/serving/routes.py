"""What the server knows about a request before a route runs: its typed context and its
place in the app's route table.

:class:`RequestContext` is the one record the middleware makes per request (request id,
start time) and the routes fill in (the model version that answered, the error type,
the event time a POST declared);
it travels in the ASGI scope under :data:`CONTEXT_KEY` and is read with
:func:`context_of`, never as loose keys of a shared dict.

:class:`RouteTable` is derived from the app's own routes once, when the app is built:
the low-cardinality label of each path for metrics (its path template), which
protocol's error shape a path answers in (from the route's tags: ``v2``, ``mlflow``,
else native), which routes are probes (tag :data:`PROBE`: health and metrics, which
the concurrency limit never refuses), and which POST endpoints the middleware may call directly, past
FastAPI's generic layers (those whose parameters are the request and the path's own
parameters). A route added to the app is in the table with nothing else to edit.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.routing import Match

__all__ = ["RequestContext", "CONTEXT_KEY", "context_of", "RouteTable", "RouteEntry",
           "Protocol", "error_body", "PROBE"]

#: the ASGI scope key of a request's :class:`RequestContext` (namespaced, as the ASGI
#: spec asks of extensions)
CONTEXT_KEY = "cd4ml.context"

#: the error shapes of the protocols a route can speak
Protocol = str  # "native" | "v2" | "mlflow"
_PROTOCOL_TAGS = ("v2", "mlflow")
#: the tag of a probe route (health, readiness, metrics): cheap, and answered even when
#: the worker is at ``serving.max_concurrency``, so a load balancer or Prometheus does
#: not read a busy server as a dead one
PROBE = "probe"


@dataclass(slots=True)
class RequestContext:
    """One request as the server tracks it, from the middleware to the answer."""

    request_id: str
    t0: float  # time.perf_counter() when the middleware took the request
    protocol: Protocol = "native"  # the error shape of its route (:class:`RouteTable`)
    model_version: int | None = None  # set by the route that scored it
    error_type: str | None = None  # set by the error handler
    endpoint: str = "other"  # its route's label (:class:`RouteTable`)
    #: the time the request is about (epoch seconds), from ``X-Event-Time`` (set by
    #: :meth:`~cd4ml.serving.guard.Guard.check_scope`); logged with its predictions
    event_ts: float | None = None


def context_of(request: Request) -> RequestContext:
    """The context the middleware bound to this request."""
    ctx: RequestContext = request.scope[CONTEXT_KEY]
    return ctx


def error_body(protocol: Protocol, message: str, code: str = "BAD_REQUEST") -> dict[str, Any]:
    """An error in the shape the protocol uses.

    >>> error_body("v2", "no"), error_body("mlflow", "no"), error_body("native", "no")
    ({'error': 'no'}, {'error_code': 'BAD_REQUEST', 'message': 'no'}, {'detail': 'no'})
    """
    if protocol == "v2":
        return {"error": message}
    if protocol == "mlflow":
        return {"error_code": code, "message": message}
    return {"detail": message}


Endpoint = Callable[..., Awaitable[Any]]


@dataclass(slots=True, frozen=True)
class RouteEntry:
    """A route of the app as the middleware sees it."""

    label: str  # the path template: the metrics' endpoint label
    protocol: Protocol
    #: a probe (tag :data:`PROBE`): takes no slot of the concurrency limit
    probe: bool = False
    #: the endpoint the middleware calls directly for a POST (None: FastAPI routes it)
    direct: Endpoint | None = None


#: a path that is not a route of the app
UNKNOWN = RouteEntry("other", "native")


def _tags(route: Any) -> tuple[str, ...]:
    return tuple(getattr(route, "tags", None) or ())


def _protocol(route: Any) -> Protocol:
    return next((t for t in _PROTOCOL_TAGS if t in _tags(route)), "native")


def _direct(route: Any) -> Endpoint | None:
    """The endpoint, if it is a coroutine taking only the request and path parameters."""
    fn = getattr(route, "endpoint", None)
    if fn is None or "POST" not in (getattr(route, "methods", None) or ()) or \
            not inspect.iscoroutinefunction(fn):
        return None
    params = set(inspect.signature(fn).parameters)
    path_params = set(getattr(route, "param_convertors", {}))
    return fn if params == {"request", *path_params} else None


#: templated paths a RouteTable remembers the match of
MEMO_PATHS = 1024


@dataclass(slots=True)
class RouteTable:
    """The app's routes: exact paths by dict, templated ones by the route's own match."""

    #: exact path -> its entry for any method but a directly called POST
    exact: dict[str, RouteEntry] = field(default_factory=dict)
    #: exact path -> its entry for a POST the middleware calls directly
    exact_post: dict[str, RouteEntry] = field(default_factory=dict)
    #: (route, entry for any method, entry for a POST) of each templated route
    templated: list[tuple[Any, RouteEntry, RouteEntry]] = field(default_factory=list)
    #: (method, path) -> what a templated route matched for it, so that the route's
    #: regular expressions run once per path (the v2 paths name a model); at most
    #: MEMO_PATHS paths, then forgotten all at once
    matched: dict[tuple[str, str], tuple[RouteEntry, dict[str, Any]]] = field(
        default_factory=dict)

    @classmethod
    def of(cls, routes: Iterable[Any]) -> RouteTable:
        """The table of ``routes`` (Starlette/FastAPI route objects; entries without a
        ``path``, such as an included router's placeholder, are skipped)."""
        table = cls()
        for route in routes:
            path = getattr(route, "path", None)
            if path is None:
                continue
            plain = RouteEntry(path, _protocol(route), PROBE in _tags(route))
            direct = _direct(route)
            post = RouteEntry(path, plain.protocol, plain.probe, direct) \
                if direct is not None else plain
            if getattr(route, "param_convertors", None):
                table.templated.append((route, plain, post))
                continue
            table.exact.setdefault(path, plain)
            if direct is not None:
                table.exact_post.setdefault(path, post)
        return table

    def find(self, scope: Any) -> tuple[RouteEntry, dict[str, Any]]:
        """The route of a request and its path parameters (:data:`UNKNOWN` if none).

        As Starlette's router: the first route that matches path and method, else the
        first whose path matches (the app answers 405 there)."""
        path = scope["path"]
        if scope["method"] == "POST":
            hit = self.exact_post.get(path)
            if hit is not None:
                return hit, {}
        hit = self.exact.get(path)
        if hit is not None:
            return hit, {}
        key = (scope["method"], path)
        hit2 = self.matched.get(key)
        if hit2 is not None:
            return hit2
        partial = None
        for route, plain, post in self.templated:
            match, child = route.matches(scope)
            if match is Match.FULL:
                found = (post if scope["method"] == "POST" else plain,
                         child.get("path_params", {}))
                if len(self.matched) >= MEMO_PATHS:
                    self.matched.clear()
                self.matched[key] = found
                return found
            if match is Match.PARTIAL and partial is None:
                partial = plain
        return partial or UNKNOWN, {}

    def labels(self) -> list[str]:
        """Every path template (the metrics' endpoint labels, besides ``other``)."""
        return sorted({*self.exact, *(e.label for _, e, _ in self.templated)})
