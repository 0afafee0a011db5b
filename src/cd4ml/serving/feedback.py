"""``POST /feedback``: actuals and rewards, checked before they are stored.

An item names a logged request (``request_id``, plus ``row`` or ``actuals`` for a
multi-row request) or a forecast by its series keys and date; it carries ``actual``
and/or ``reward``, finite numbers. A classifier's actual (the true label) must be one
of its classes, when the version that answered is the one served; feedback for a
tabular model names its request (keys and a date are a forecast's). Unknown request
ids give 404, other problems 422.
"""

from __future__ import annotations

import os
import time
from typing import Any

from cd4ml.errors import NotFoundError, RequestError
from cd4ml.predlog import find_requests

__all__ = ["check_feedback"]


#: the largest magnitude of an actual or a reward: below it a float holds every integer,
#: so a value just past it is never rounded back inside (as 10**400 - 1 would round to
#: the largest float)
MAX_VALUE = 2 ** 53


def _is_finite_number(v: Any) -> bool:
    """A number within ±2**53 (an int too large for a float is not; no OverflowError).

    >>> _is_finite_number(3), _is_finite_number(10 ** 400), _is_finite_number(True)
    (True, False, False)
    >>> _is_finite_number(float("nan")), _is_finite_number(2 ** 53 + 1)
    (False, False)
    """
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return -MAX_VALUE <= v <= MAX_VALUE  # False for NaN; exact for ints of any size


def _finite(item: dict[str, Any], key: str, loc: str, errors: list[dict[str, Any]]) -> Any:
    if key not in item:
        return None
    v = item[key]  # an explicit null is refused, as the OpenAPI document declares
    if not _is_finite_number(v):
        errors.append({"loc": f"{loc}.{key}", "field": key, "value": repr(v)[:80],
                       "problem": f"expected a finite number within ±2**53 "
                                  f"({MAX_VALUE})"})
        return None
    return float(v)


def _lookup(plog: Any, ids: list[str], deadline: float) -> dict[str, dict[str, Any]]:
    """The logged requests of ``ids``: one visit of each segment for all of them; the
    ids not found are looked for again, in this worker's segments only, once its queue
    is flushed (they may still have been waiting there). Damaged segments met are set
    aside."""
    if not ids:
        return {}
    got = find_requests(plog.dir, ids, deadline=deadline)
    found = got.found
    missing = [i for i in ids if i not in found]
    if missing:
        plog.flush(timeout=max(0.0, min(10.0, deadline - time.monotonic())))
        again = find_requests(plog.dir, missing, deadline=deadline, pid=os.getpid())
        found.update(again.found)
        got.damaged += again.damaged
    for path, problem in got.damaged:
        plog.set_aside_file(path, problem)
    return found


def _answered_by(rt: Any, found: dict[str, Any]) -> Any:
    """The contract of the version that answered a logged request, if it is the one
    served (else None: any finite actual is taken)."""
    m = rt.holder.current
    if m is None or (found.get("model"), found.get("version")) != (m.name, m.version):
        return None
    return rt.contract(m)


def check_feedback(rt: Any, items: list[Any], deadline: float | None = None,
                   ) -> list[dict[str, Any]]:
    """Validate feedback items; unknown request ids give 404, other problems 422.

    The request ids are looked up all at once (:func:`find_requests`), bounded by
    ``deadline`` (monotonic seconds; default ``serving.request_timeout_s`` from now):
    past it, :class:`DeadlineError` (504). The middleware's timeout cannot stop this
    work, which runs in a thread.
    """
    plog = rt.plog
    assert plog is not None  # /feedback answers 503 without a log
    if deadline is None:
        deadline = time.monotonic() + rt.settings.request_timeout_s
    ids = [str(it["request_id"]) for it in items
           if isinstance(it, dict) and it.get("request_id") is not None]
    known = _lookup(plog, list(dict.fromkeys(ids)), deadline)
    out: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    unknown: list[str] = []
    for i, it in enumerate(items):
        loc = f"feedback[{i}]"
        if not isinstance(it, dict):
            errors.append({"loc": loc, "field": None, "value": repr(it)[:80],
                           "problem": "expected an object"})
            continue
        actual, reward = _finite(it, "actual", loc, errors), _finite(it, "reward", loc, errors)
        actuals = it.get("actuals")
        if actuals is not None and (not isinstance(actuals, list) or
                                    not all(map(_is_finite_number, actuals))):
            errors.append({"loc": f"{loc}.actuals", "field": "actuals",
                           "value": repr(actuals)[:80],
                           "problem": "expected a list of finite numbers"})
            continue
        if actual is None and reward is None and actuals is None:
            if not any(e["loc"].startswith(loc) for e in errors):
                errors.append({"loc": loc, "field": "actual", "value": None,
                               "problem": "give 'actual' (or 'actuals') and/or 'reward'"})
            continue
        rid = it.get("request_id")
        if rid is not None:
            extra = sorted(set(it) - {"request_id", "row", "actual", "actuals", "reward"})
            if extra:
                errors.append({"loc": f"{loc}.{extra[0]}", "field": extra[0],
                               "value": repr(it[extra[0]])[:80],
                               "problem": "unknown field; with request_id give row, actual, "
                                          "actuals, reward"})
                continue
            found = known.get(str(rid))
            if found is None:
                unknown.append(str(rid))
                continue
            contract = _answered_by(rt, found)
            if contract is not None:  # the model that answered says what an actual is
                wrong = [e for a in ([actual] if actual is not None else actuals or [])
                         for e in contract.feedback_actual(float(a), loc)]
                if wrong:
                    errors.append(wrong[0])
                    continue
            n = found["n_rows"]
            if actuals is not None:
                if len(actuals) != n:
                    errors.append({"loc": f"{loc}.actuals", "field": "actuals",
                                   "value": len(actuals),
                                   "problem": f"request {rid} had {n} rows; give {n} actuals"})
                    continue
                out += [{"request_id": str(rid), "row": j, "actual": float(a),
                         "reward": reward} for j, a in enumerate(actuals)]
                continue
            row = it.get("row", 0 if n == 1 else None)
            if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < n:
                errors.append({"loc": f"{loc}.row", "field": "row", "value": row,
                               "problem": f"request {rid} had {n} rows: give 'row' from 0 to "
                                          f"{n - 1}, or 'actuals' with {n} values"})
                continue
            out.append({"request_id": str(rid), "row": row, "actual": actual,
                        "reward": reward})
        else:
            keys = {k.lower(): v for k, v in it.items()
                    if k not in ("actual", "reward")}  # "actuals" is for a request id
            wrong = rt.contract(rt.holder.model).feedback_keys(keys, loc)
            if wrong:
                errors += wrong
                continue
            out.append({"keys": keys, "actual": actual, "reward": reward})
    if errors:
        first = errors[0]
        raise RequestError(f"{first['loc']}: {first['problem']}"
                           + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                           errors=errors)
    if unknown:
        first = ", ".join(repr(u) for u in unknown[:3])
        raise NotFoundError(f"request_id {first} "
                            + ("is" if len(unknown) == 1 else "are")
                            + " not in the prediction log"
                            + (f" (and {len(unknown) - 3} more)" if len(unknown) > 3 else "")
                            + "; it may be older than serving.log.retention_days or made "
                              "by another server")
    return out
