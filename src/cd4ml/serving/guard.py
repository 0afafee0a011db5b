"""What a POST must show before its body is read: its origin, its content type, a token.

A web page in a browser can POST to a server on ``127.0.0.1`` (a "simple" request
with ``Content-Type: text/plain`` needs no CORS preflight). Three checks, made by
:meth:`Guard.read` for every POST route, close that door:

- **Origin.** A request whose ``Origin`` header is present must come from the server's
  own origin (``scheme://host[:port]`` as its ``Host`` header says) or from one listed
  in ``serving.allowed_origins``; anything else gets 403. Clients that are not
  browsers (curl, MLflow's, tritonclient) send no ``Origin`` and are not affected.
- **Content type.** JSON routes take ``application/json`` (any ``application/*+json``,
  UTF-8 only); ``/v2/.../infer`` also takes none or ``application/octet-stream`` (what
  ``tritonclient`` sends with binary tensors), ``/invocations`` also ``text/csv``.
  Anything else, ``text/plain`` and form encodings included, gets 415.
- **Token** (``/feedback`` only, when the server was started with the environment
  variable ``CD4ML_FEEDBACK_TOKEN``): ``Authorization: Bearer <token>``, compared in
  constant time; without it or with another one, 401 and nothing is stored. The token
  never comes from ``cd4ml.yaml``: every run stores its config as params.

One header a POST may show, read in the same pass: ``X-Event-Time``, the time the
request is about (a tabular model's event time; the monitoring windows by event time
read it from the log). An ISO 8601 date or date-time (UTC unless it gives an offset) or
epoch seconds; anything else gets 400 naming the header, the value and the forms, and
nothing is scored or logged (:func:`parse_event_time`). A request without it pays one
dictionary look-up.

>>> g = Guard(allowed_origins=frozenset({"https://app.example"}), feedback_token=None)
>>> g.origin_problem("https://app.example", "http", "127.0.0.1:5005") is None
True
>>> g.origin_problem("http://127.0.0.1:5005", "http", "127.0.0.1:5005") is None
True
>>> g.origin_problem("http://evil.example", "http", "127.0.0.1:5005")[:41]
"Origin 'http://evil.example' may not POST"
>>> media_type("application/json; charset=utf-8", JSON)
'application/json'
>>> media_type("application/vnd.api+json", JSON)
'application/json'
"""

from __future__ import annotations

import hmac
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cd4ml.errors import ConfigError, RequestError
from cd4ml.serving.routes import CONTEXT_KEY

__all__ = ["Guard", "JSON", "V2_INFER", "MLFLOW", "TOKEN_ENV", "feedback_token_from_env",
           "token_from_env", "bearer_problem", "media_type", "normalize_origin",
           "OriginRefused", "UnsupportedMediaType", "TokenRequired", "EVENT_TIME_HEADER",
           "parse_event_time"]

#: the environment variable holding the optional ``/feedback`` token
TOKEN_ENV = "CD4ML_FEEDBACK_TOKEN"

#: media types a route takes ("" for a request without a Content-Type)
JSON = frozenset({"application/json"})
V2_INFER = frozenset({"application/json", "application/octet-stream", ""})
MLFLOW = frozenset({"application/json", "text/csv"})

_DEFAULT_PORT = {"http": "80", "https": "443"}
#: the header of a request's event time (as ASGI gives it: lower case)
EVENT_TIME_HEADER = "x-event-time"
#: the headers the checks read (ASGI gives names in lower case)
_WANTED = frozenset({b"origin", b"host", b"content-type", b"authorization",
                     EVENT_TIME_HEADER.encode()})
#: event times the log holds (its reader gives them as timestamp[ns]: 1677-09-21 to
#: 2262-04-11), in whole years
_EVENT_YEARS = (1678, 2261)
_EVENT_RANGE = tuple(datetime(y, 1, 1, tzinfo=timezone.utc).timestamp()
                     for y in (_EVENT_YEARS[0], _EVENT_YEARS[1] + 1))
_EVENT_FORMS = ("an ISO 8601 date or date-time, UTC unless it gives an offset "
                "(2018-03-01, 2018-03-01T10:00:00Z, 2018-03-01T12:00:00+02:00), or epoch "
                "seconds (1519898400)")


class OriginRefused(RequestError):
    """A POST from a web page of another origin (403)."""

    status = 403


class UnsupportedMediaType(RequestError):
    """A body in a content type the route does not take (415)."""

    status = 415


class TokenRequired(RequestError):
    """``/feedback`` without the server's bearer token, or with another one (401)."""

    status = 401
    headers = {"www-authenticate": "Bearer"}


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, without a default port or a final slash.

    >>> normalize_origin("HTTP://Example.com:80/")
    'http://example.com'
    """
    o = origin.strip().lower().rstrip("/")
    scheme, sep, rest = o.partition("://")
    host, colon, port = rest.rpartition(":")
    if sep and colon and "]" not in port and port == _DEFAULT_PORT.get(scheme):
        return f"{scheme}://{host}"
    return o


def media_type(header: str | None, accept: frozenset[str]) -> str | None:
    """The accepted media type ``header`` names (``application/*+json`` counts as JSON),
    or None when the route does not take it (a charset other than UTF-8 included)."""
    if header is None or not header.strip():
        return "" if "" in accept else None
    mtype, _, params = header.partition(";")
    mtype = mtype.strip().lower()
    for p in params.split(";"):
        k, _, v = p.partition("=")
        if k.strip().lower() == "charset" and v.strip().strip('"').lower() not in (
                "utf-8", "utf8"):
            return None
    if mtype.startswith("application/") and mtype.endswith("+json"):
        mtype = "application/json"
    return mtype if mtype in accept else None


def parse_event_time(value: str) -> float:
    """Epoch seconds from an ``X-Event-Time`` value: a number is epoch seconds, anything
    else an ISO 8601 date or date-time (UTC unless it gives an offset); a
    :class:`~cd4ml.errors.RequestError` (400) naming the header, the value and the forms
    for anything else, or a time outside the years the log holds.

    >>> parse_event_time("2018-03-01"), parse_event_time("2018-03-01T10:00:00Z")
    (1519862400.0, 1519898400.0)
    >>> parse_event_time("2018-03-01T12:00:00+02:00"), parse_event_time("1519898400.5")
    (1519898400.0, 1519898400.5)
    >>> parse_event_time("yesterday")
    Traceback (most recent call last):
    ...
    cd4ml.errors.RequestError: header X-Event-Time = 'yesterday': not a time; send ...
    """
    text = value.strip()
    try:
        t = float(text)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise _event_refused(value, "not a time") from None
        t = (dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)).timestamp()
    lo, hi = _EVENT_RANGE
    if not math.isfinite(t):
        raise _event_refused(value, "not a finite number")
    if not lo <= t < hi:
        raise _event_refused(value, f"outside the years {_EVENT_YEARS[0]} to "
                                    f"{_EVENT_YEARS[1]} (epoch seconds, not milliseconds)")
    return t


def _event_refused(value: str, why: str) -> RequestError:
    shown = value if len(value) <= 200 else value[:200] + "…"
    msg = f"header X-Event-Time = {shown!r}: {why}; send {_EVENT_FORMS}"
    return RequestError(msg, status=400, errors=[{
        "loc": f"header.{EVENT_TIME_HEADER}", "field": EVENT_TIME_HEADER, "value": shown,
        "problem": msg}])


def feedback_token_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The ``/feedback`` token from ``CD4ML_FEEDBACK_TOKEN``; None when it is not set.

    >>> feedback_token_from_env({}) is None, feedback_token_from_env({TOKEN_ENV: " s3 "})
    (True, 's3')
    >>> feedback_token_from_env({TOKEN_ENV: "  "})
    Traceback (most recent call last):
    ...
    cd4ml.errors.ConfigError: CD4ML_FEEDBACK_TOKEN = '  ': is set but empty, ...
    """
    return token_from_env(TOKEN_ENV, "/feedback open", environ)


def token_from_env(name: str, leaves: str,
                   environ: Mapping[str, str] | None = None) -> str | None:
    """A bearer token from the environment variable ``name`` (stripped); None when it is
    not set; a ConfigError when it is set but empty (what that would leave: ``leaves``).
    Tokens never come from ``cd4ml.yaml``: every run stores its config as params."""
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None:
        return None
    if not raw.strip():
        raise ConfigError(f"is set but empty, which would leave {leaves} while looking "
                          f"protected; set a token (python -c \"import secrets; "
                          f"print(secrets.token_urlsafe(32))\") or unset it",
                          key=name, value=raw)
    return raw.strip()


def bearer_problem(authorization: str | None, token: str) -> str | None:
    """None when ``authorization`` is ``Bearer <token>`` (compared in constant time with
    :func:`hmac.compare_digest`); else ``"missing"`` (no bearer credentials) or
    ``"wrong"`` (another token).

    >>> bearer_problem("Bearer s3", "s3"), bearer_problem(None, "s3"), bearer_problem(
    ...     "Basic s3", "s3"), bearer_problem("bearer s4", "s3")
    (None, 'missing', 'missing', 'wrong')
    """
    scheme, _, given = (authorization or "").strip().partition(" ")
    if not authorization or scheme.lower() != "bearer":
        return "missing"
    if hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"),
                           token.encode("utf-8", "surrogateescape")):
        return None
    return "wrong"


@dataclass(frozen=True, slots=True)
class Guard:
    """The checks of one server: its extra allowed origins and its feedback token."""

    allowed_origins: frozenset[str]
    feedback_token: str | None

    @classmethod
    def of(cls, allowed_origins: list[str], feedback_token: str | None) -> Guard:
        return cls(frozenset(map(normalize_origin, allowed_origins)), feedback_token)

    def origin_problem(self, origin: str, scheme: str, host: str | None) -> str | None:
        """Why a POST with this ``Origin`` is refused; None when it may go on."""
        o = normalize_origin(origin)
        own = normalize_origin(f"{scheme}://{host}") if host else None
        if o == own or o in self.allowed_origins:
            return None
        return (f"Origin {origin!r} may not POST here: it is not this server's origin "
                f"({own or 'no Host header'}) nor listed in serving.allowed_origins; add "
                f"it there to allow that web page")

    def check_scope(self, scope: Mapping[str, Any], accept: frozenset[str], *,
                    token: bool = False) -> str:
        """:meth:`check` for an ASGI request: its headers read in one pass (about a
        quarter of the cost of three look-ups in a ``Headers`` mapping); an
        ``X-Event-Time`` it shows is parsed into the request's context (``event_ts``)."""
        found: dict[str, str] = {}
        for k, v in scope["headers"]:
            if k in _WANTED:
                found[k.decode("latin-1")] = v.decode("latin-1")
        got = self.check(scope["method"], scope["path"], scope.get("scheme", "http"), found,
                         accept, token=token)
        event = found.get(EVENT_TIME_HEADER)
        if event is not None:
            scope[CONTEXT_KEY].event_ts = parse_event_time(event)
        return got

    def check(self, method: str, path: str, scheme: str, headers: Mapping[str, str],
              accept: frozenset[str], *, token: bool = False) -> str:
        """The request's media type (one of ``accept``), or the error to answer;
        ``headers`` by lower-case name."""
        origin = headers.get("origin")
        if origin is not None:
            why = self.origin_problem(origin, scheme, headers.get("host"))
            if why is not None:
                raise OriginRefused(why, errors=[{"loc": "header.origin", "field": "origin",
                                                  "value": origin[:200], "problem": why}])
        ctype = headers.get("content-type")
        # every route takes JSON: the common header skips the parsing
        got = "application/json" if ctype == "application/json" else media_type(ctype, accept)
        if got is None:
            takes = " or ".join(sorted(t or "no content type" for t in accept))
            msg = (f"content type {ctype!r} is not accepted by {method} {path}; send "
                   f"{takes} (UTF-8)")
            raise UnsupportedMediaType(msg, errors=[{
                "loc": "header.content-type", "field": "content-type",
                "value": (ctype or "")[:200], "problem": msg}])
        if token and self.feedback_token is not None:
            self._check_token(headers.get("authorization"), method, path)
        return got

    def _check_token(self, auth: str | None, method: str, path: str) -> None:
        assert self.feedback_token is not None
        problem = bearer_problem(auth, self.feedback_token)
        if problem == "missing":
            raise TokenRequired(f"{method} {path} needs 'Authorization: Bearer <token>': "
                                f"this server was started with {TOKEN_ENV}")
        if problem is not None:
            raise TokenRequired(f"{method} {path}: the bearer token is not the one this "
                                f"server was started with ({TOKEN_ENV}); nothing was stored")
