"""What an admin request says, checked before anything is read from the store: its JSON
body (each field of the expected type, no field the route does not take), its revision
(``expected_revision`` or ``If-Match``) and who sent it (``X-Cd4ml-Actor``).

Every refusal is a :class:`~cd4ml.errors.RequestError` naming the field, the value and
what was expected, in the ``{"loc", "field", "value", "problem"}`` entries the model
server's errors carry.

>>> fields({"version": 3, "reason": "new run"}, CANDIDATE)
{'version': 3, 'reason': 'new run'}
>>> fields({"version": "3"}, CANDIDATE)
Traceback (most recent call last):
...
cd4ml.errors.RequestError: version = '3': expected a version number (an integer >= 1)
>>> revision_of('W/"4"'), revision_of("*")
(4, None)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cd4ml.errors import RequestError, short_repr

__all__ = ["parse_json", "fields", "revision_of", "expected_revision", "actor_of", "refusal",
           "Spec", "DEPLOY", "CANDIDATE", "STEP", "ROLLBACK", "MAX_BODY_BYTES",
           "ACTOR_HEADER", "DEFAULT_ACTOR"]

#: an admin body is a few fields; anything larger is refused (413) unread
MAX_BODY_BYTES = 64 * 1024
#: the header naming who made a change (the audit's actor), and who it is without one
ACTOR_HEADER = "x-cd4ml-actor"
DEFAULT_ACTOR = "admin-api"
_MAX_ACTOR = 200


def refusal(field: str, value: Any, problem: str, *, loc: str | None = None,
            status: int = 422) -> RequestError:
    """``field = value: problem`` as a RequestError with its one ``errors`` entry."""
    shown = value if isinstance(value, (str, int, float, bool, type(None))) else \
        short_repr(value, 200)
    msg = f"{field} = {short_repr(value, 200)}: {problem}"
    return RequestError(msg, status=status, errors=[{
        "loc": loc or f"body.{field}", "field": field, "value": shown, "problem": problem}])


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} given twice")
        out[k] = v
    return out


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``); 400 naming what is wrong.

    >>> parse_json(b""), parse_json(b'{"to": 2}')
    ({}, {'to': 2})
    >>> parse_json(b'{"to": 2')
    Traceback (most recent call last):
    ...
    cd4ml.errors.RequestError: body is not JSON: Expecting ',' delimiter: line 1 column 9 ...
    """
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_object,
                         parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise _bad_body(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except (ValueError, RecursionError) as exc:
        raise _bad_body(f"body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise _bad_body(f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _bad_body(msg: str) -> RequestError:
    return RequestError(msg, status=400, errors=[{"loc": "body", "field": "body",
                                                  "value": None, "problem": msg}])


# -- field kinds: each returns the value or raises a refusal --------------------------

Check = Callable[[str, Any], Any]


def _text(name: str, v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise refusal(name, v, "expected a non-empty string")
    return v


def _text_or_none(name: str, v: Any) -> str | None:
    if v is not None and not isinstance(v, str):
        raise refusal(name, v, "expected a string or null")
    return v


def _number(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise refusal(name, v, "expected a number")
    return float(v)


def _shares(name: str, v: Any) -> list[float]:
    if not isinstance(v, list) or not v:
        raise refusal(name, v, "expected a list of candidate shares, e.g. [0.05, 0.25, 0.5, 1]")
    return [_number(f"{name}.{i}", x) for i, x in enumerate(v)]


def _integer(least: int, what: str) -> Check:
    def check(name: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise refusal(name, v, f"expected {what} (an integer >= {least})")
        return v
    return check


_revision = _integer(0, "the revision read")



@dataclass(frozen=True, slots=True)
class Spec:
    """The fields a route takes (each with its check) and those it needs."""

    checks: Mapping[str, Check]
    required: tuple[str, ...] = ()


DEPLOY = Spec({"strategy": _text, "automation": _text_or_none, "steps": _shares,
               "split": _number, "key": _text_or_none, "fallback": _text_or_none,
               "alias": _text_or_none, "reason": _text_or_none,
               "expected_revision": _revision}, required=("strategy",))
CANDIDATE = Spec({"version": _integer(1, "a version number"), "reason": _text_or_none,
                  "expected_revision": _revision}, required=("version",))
STEP = Spec({"reason": _text_or_none, "expected_revision": _revision})
ROLLBACK = Spec({"to": lambda n, v: None if v is None else
                 _integer(0, "the revision to restore")(n, v),
                 "reason": _text_or_none, "expected_revision": _revision})


def fields(body: Mapping[str, Any], spec: Spec) -> dict[str, Any]:
    """``body`` checked against ``spec``: every field known and of its kind, the required
    ones present (422 naming the first that is not)."""
    for name in body:
        if name not in spec.checks:
            raise refusal(name, body[name], f"unknown field; expected one of "
                                            f"{', '.join(spec.checks)}")
    for name in spec.required:
        if name not in body:
            raise refusal(name, None, "required")
    return {k: spec.checks[k](k, v) for k, v in body.items()}


def revision_of(if_match: str) -> int | None:
    """The revision an ``If-Match`` header names (``"4"``, ``W/"4"`` or ``4``); None for
    ``*`` (any); 400 for anything else."""
    text = if_match.strip()
    if text == "*":
        return None
    tag = text[2:] if text.startswith("W/") else text
    tag = tag[1:-1] if len(tag) >= 2 and tag[0] == tag[-1] == '"' else tag
    if not tag.isdigit() or not tag.isascii():
        raise refusal("if-match", if_match, "expected the revision read, as an ETag: "
                      "\"4\" (one only)", loc="header.if-match", status=400)
    return int(tag)


def expected_revision(body: dict[str, Any], if_match: str | None) -> int | None:
    """The revision a write was computed from: ``expected_revision`` in the body or the
    ``If-Match`` header (400 when both are given and differ); None: not said."""
    from_body = body.pop("expected_revision", None)
    from_header = None if if_match is None else revision_of(if_match)
    if from_body is not None and from_header is not None and from_body != from_header:
        raise refusal("expected_revision", from_body, f"If-Match says revision "
                      f"{from_header}; give one of them, or both the same", status=400)
    return from_body if from_body is not None else from_header


def actor_of(header: str | None) -> str:
    """Who the audit log says made the change: ``X-Cd4ml-Actor`` or ``admin-api``.

    >>> actor_of(" ann "), actor_of(None), actor_of("")
    ('ann', 'admin-api', 'admin-api')
    """
    who = (header or "").strip()
    if not who:
        return DEFAULT_ACTOR
    if len(who) > _MAX_ACTOR or not who.isprintable():
        raise refusal(ACTOR_HEADER, who, f"expected a printable name of at most "
                      f"{_MAX_ACTOR} characters", loc=f"header.{ACTOR_HEADER}", status=400)
    return who
