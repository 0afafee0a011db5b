"""A fixed traffic split, sticky by a request key.

A unit (a store, a customer id) is hashed with the experiment's salt by BLAKE2b, never
by Python's ``hash()`` (salted per process): the first 8 bytes of the digest, read as
an unsigned integer and divided by 2**64, give a point of [0, 1) that is the same on
every worker, after every restart and on every machine. The arms, in sorted order of
their names (so reordering a config does not reshuffle anyone), cut [0, 1) into
intervals as long as their shares; the unit's point falls in one of them. With two
arms, moving share from one to the other only moves units into the arm that grew.
A new salt draws an independent split (a new experiment, or an A/A test's re-draw).

A request without the key (absent, null or empty) is not an error: ``fallback`` says
what it gets, and :func:`assign` says which way it went —

- ``"request_id"`` (the default): the hash of its request id, so such requests still
  follow the shares, but a unit is no longer sticky across its requests;
- ``"arm:NAME"``: always the arm NAME (e.g. the stable version), which keeps such
  requests out of the comparison's other arm;
- ``"refuse"``: a :class:`~cd4ml.errors.RequestError` naming the key (HTTP 422).

>>> shares = {"stable": 0.9, "candidate": 0.1}
>>> arm_for("store-17", shares, salt="exp-1")
'stable'
>>> [arm_for(k, shares, salt="exp-1") for k in ("a", "b", "c", "d")]
['stable', 'stable', 'candidate', 'stable']
>>> assign({"store": 17}, "store", shares, "exp-1", request_id="r-1")
Assignment(arm='stable', by='key')
>>> assign({}, "store", shares, "exp-1", request_id="r-1", fallback="arm:stable")
Assignment(arm='stable', by='fallback')
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from cd4ml.errors import ConfigError, RequestError, short_repr

__all__ = ["arm_for", "arms_for", "assign", "check_shares", "unit", "Assignment", "Split",
           "FALLBACKS", "SHARE_TOLERANCE"]

#: How far from 1 the shares' sum may be.
SHARE_TOLERANCE = 1e-9
#: The forms ``fallback`` takes.
FALLBACKS = ("request_id", "arm:NAME", "refuse")


class Assignment(NamedTuple):
    arm: str
    #: ``"key"`` (sticky), ``"request_id"`` or ``"fallback"`` (a fixed arm)
    by: str


def check_shares(shares: Mapping[str, float], *, field: str = "shares") -> dict[str, float]:
    """``shares`` as a plain dict in sorted arm order, or a ConfigError naming them.

    >>> check_shares({"b": 0.5, "a": 0.5})
    {'a': 0.5, 'b': 0.5}
    >>> check_shares({"a": 50, "b": 50})
    Traceback (most recent call last):
    ...
    cd4ml.errors.ConfigError: shares.a = 50: must be in [0, 1]; shares are fractions (50 % is 0.5)
    >>> check_shares({"a": 0.5, "b": 0.4})
    Traceback (most recent call last):
    ...
    cd4ml.errors.ConfigError: shares = {'a': 0.5, 'b': 0.4}: sum to 0.9, must sum to 1 (100 %)
    """
    if not isinstance(shares, Mapping) or not shares:
        raise ConfigError("expected a mapping of arm name to share, with at least one arm",
                          key=field, value=shares)
    out: dict[str, float] = {}
    for name in sorted(shares, key=str):
        v = shares[name]
        if not isinstance(name, str) or not name:
            raise ConfigError("arm names must be non-empty strings", key=field, value=name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError("expected a number in [0, 1]", key=f"{field}.{name}", value=v)
        if not 0.0 <= v <= 1.0:
            raise ConfigError("must be in [0, 1]; shares are fractions (50 % is 0.5)",
                              key=f"{field}.{name}", value=v)
        out[name] = float(v)
    total = math.fsum(out.values())
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise ConfigError(f"sum to {total:.12g}, must sum to 1 (100 %)", key=field,
                          value=dict(shares))
    return out


def unit(key: str, salt: str) -> float:
    """The point of [0, 1) of ``key`` under ``salt``: stable across processes.

    >>> unit("store-17", "exp-1")
    0.4862425095832311
    """
    h = hashlib.blake2b(f"{salt}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0 ** 64


def _pick(u: float, shares: dict[str, float]) -> str:
    names = list(shares)
    cum, acc = [], 0.0
    for s in shares.values():
        acc += s
        cum.append(acc)
    i = bisect.bisect_right(cum, u)  # the first arm whose interval ends after u
    if i == len(names):  # u past a sum a rounding short of 1: the last arm with a share
        i = max(j for j, s in enumerate(shares.values()) if s > 0)
    return names[i]


def _not_text(key: Any) -> RequestError:
    return RequestError(f"key = {short_repr(key)}: expected a string",
                        [{"field": "key", "value": short_repr(key),
                          "problem": "expected a string"}])


def arm_for(key: str, shares: Mapping[str, float], salt: str) -> str:
    """The arm of the unit ``key``: the same for the same key, shares and salt."""
    if not isinstance(key, str):
        raise _not_text(key)
    return _pick(unit(key, salt), check_shares(shares))


def arms_for(keys: Iterable[str], shares: Mapping[str, float], salt: str) -> list[str]:
    """:func:`arm_for` of each key, the shares checked once (a replay, a batch).

    >>> arms_for(["a", "b", "c"], {"stable": 0.9, "candidate": 0.1}, salt="exp-1")
    ['stable', 'stable', 'candidate']
    """
    checked = check_shares(shares)
    out = []
    for key in keys:
        if not isinstance(key, str):
            raise _not_text(key)
        out.append(_pick(unit(key, salt), checked))
    return out


def _key_text(value: Any) -> str | None:
    """A request's key value as the text hashed (1, 1.0 and "1" are one unit), or None
    when it is missing."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # true/false names no unit
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return ""  # not a scalar: refused by the caller


def assign(request: Mapping[str, Any], key_field: str, shares: Mapping[str, float],
           salt: str, *, request_id: str, fallback: str = "request_id") -> Assignment:
    """The arm of a request by its ``key_field``, or by ``fallback`` without it (see the
    module's docstring); a key that is not a scalar (a list, an object) is refused."""
    checked = check_shares(shares)
    if fallback.startswith("arm:"):
        if fallback[4:] not in checked:
            raise ConfigError(f"names no arm; expected one of {', '.join(checked)}",
                              key="fallback", value=fallback)
    elif fallback not in ("request_id", "refuse"):
        raise ConfigError(f"expected one of {', '.join(FALLBACKS)}", key="fallback",
                          value=fallback)
    return Split(checked, salt).assign(key_field, request.get(key_field),
                                       request_id=request_id, fallback=fallback)


class Split:
    """Shares and salt checked once, for many requests (the server's router).

    ``arm(key)`` is :func:`arm_for`; ``of_request(request_id)`` is the arm a request
    without a key gets under the ``request_id`` fallback (as :func:`assign` draws it).

    >>> split = Split({"stable": 0.9, "candidate": 0.1}, "exp-1")
    >>> split.arm("store-17"), split.of_request("r-1") == assign(
    ...     {}, "store", {"stable": 0.9, "candidate": 0.1}, "exp-1", request_id="r-1").arm
    ('stable', True)
    """

    __slots__ = ("shares", "salt", "_names", "_cum", "_last")

    def __init__(self, shares: Mapping[str, float], salt: str) -> None:
        self.shares = check_shares(shares)
        self.salt = salt
        self._names = list(self.shares)
        acc, cum = 0.0, []
        for s in self.shares.values():
            acc += s
            cum.append(acc)
        self._cum = cum
        self._last = max(j for j, s in enumerate(self.shares.values()) if s > 0)

    def _at(self, u: float) -> str:
        i = bisect.bisect_right(self._cum, u)
        return self._names[i if i < len(self._names) else self._last]

    def arm(self, key: str) -> str:
        """The arm of the unit ``key``."""
        return self._at(unit(key, self.salt))

    def of_request(self, request_id: str) -> str:
        """The arm of a request without a key, drawn by its request id."""
        return self._at(unit(f"request:{request_id}", self.salt))

    def assign(self, key_field: str, value: Any, *, request_id: str,
               fallback: str = "request_id") -> Assignment:
        """The arm of a request whose ``key_field`` holds ``value`` (None: absent), or
        by ``fallback`` without it; for ``arm:NAME`` the arm is NAME, ``by`` says
        ``fallback``. A key that names no unit (a list, a boolean) is refused, and so
        is a request without it under ``refuse`` (RequestError naming the field)."""
        text = _key_text(value)
        if text:
            return Assignment(self._at(unit(text, self.salt)), "key")
        if text == "":
            problem = "expected a string or a number (the unit the split is sticky by)"
            raise RequestError(f"{key_field} = {short_repr(value)}: {problem}",
                               [{"field": key_field, "value": short_repr(value),
                                 "problem": problem, "reason": "wrong_type"}])
        if fallback == "request_id":
            return Assignment(self.of_request(request_id), "request_id")
        if fallback == "refuse":
            problem = "missing: the split is sticky by it (fallback: refuse)"
            raise RequestError(f"{key_field}: {problem}",
                               [{"field": key_field, "value": None, "problem": problem,
                                 "reason": "missing_field"}])
        return Assignment(fallback[4:], "fallback")
