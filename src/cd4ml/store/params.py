"""A run's nested params as dotted keys, the form ``cd4ml runs diff`` and the dashboard's
run pages compare them in."""

from __future__ import annotations

from typing import Any

__all__ = ["flat", "flat_diff"]


def flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted keys (lists of dicts by index).

    >>> flat({"a": {"b": 1}, "c": [{"d": 2}], "e": [1, 2]})
    {'a.b': 1, 'c.0.d': 2, 'e': [1, 2]}
    """
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out
    if isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        out = {}
        for i, v in enumerate(d):
            out.update(flat(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: d}


def flat_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The dotted keys whose values differ between params ``a`` and ``b``: (a's, b's).

    >>> flat_diff({"m": {"lr": 0.1, "n": 5}}, {"m": {"lr": 0.05, "n": 5}})
    {'m.lr': (0.1, 0.05)}
    """
    fa, fb = flat(a), flat(b)
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb))
            if fa.get(k) != fb.get(k)}
