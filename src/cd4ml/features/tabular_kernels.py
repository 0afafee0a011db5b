"""The kernels of tabular encoding: one per column kind, and the parsers feeding them.

A categorical column maps values to codes through one dict (:class:`CodeTable`); the
numeric columns are checked against their ranges and imputed together
(:class:`NumericBlock`). Parsers turn request values (:data:`REQUEST_PARSERS`) and frame
columns (:func:`frame_column`) into typed arrays plus a first problem per cell (wrong
type, missing field); :class:`~cd4ml.features.tabular_encode.Encoder` runs them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as pdt

__all__ = ["REASONS", "CodeTable", "NumericBlock", "F32_MAX", "SMALL", "REQUEST_PARSERS",
           "frame_column", "parse_kind", "ABSENT", "NUM", "BOOL", "STR"]

#: why a cell was refused; the int8 code is the position
REASONS = ("", "missing_field", "unknown_field", "wrong_type", "not_finite", "below_min",
           "above_max", "unknown_category", "missing_value")
MISSING_FIELD, UNKNOWN_FIELD, WRONG_TYPE, NOT_FINITE, BELOW_MIN, ABOVE_MAX, \
    UNKNOWN_CATEGORY, MISSING_VALUE = range(1, 9)

#: the largest magnitude a float32 feature holds; also the bound of an unbounded column
F32_MAX = float(np.finfo(np.float32).max)
_UNKNOWN, _MISSING, _INFINITE = -1, -2, -3  # lookup results that are not codes
ABSENT = object()  # a field the record does not have
#: at most this many values are looked up one by one; more go through pd.factorize
SMALL = 64
NUM, BOOL, STR = "number", "bool", "string"  # how a column's values are parsed


class CodeTable:
    """A categorical column: ``categories[i]`` has code ``i``; ``unknown_code`` (policy
    unknown) or None; ``fill``: the code a missing value takes (impute) or None."""

    def __init__(self, categories: list[Any], unknown_code: int | None,
                 fill: float | None) -> None:
        self.categories, self.unknown_code, self.fill = categories, unknown_code, fill
        #: the one mapping from a value to its code, used by every path
        self.index: dict[Any, int] = {c: i for i, c in enumerate(categories)}
        #: numeric categories (no bool): sorted, with their codes, for arrays of numbers
        #: (a binary search per value instead of hashing them; same codes as ``index``)
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None
        if categories and all(type(c) in (int, float) or isinstance(c, (np.integer, np.floating))
                              for c in categories):
            keys = np.asarray(categories, np.float64)
            if len(np.unique(keys)) == len(keys) and np.isfinite(keys).all() and \
                    all(float(k) == c for k, c in zip(keys.tolist(), categories)):
                order = np.argsort(keys, kind="stable")
                self._sorted = (keys[order], order.astype(np.int64))

    def _code(self, v: Any) -> int:
        c = self.index.get(v)
        if c is not None:
            return c
        if v is None or v != v:
            return _MISSING
        return _INFINITE if isinstance(v, float) and math.isinf(v) else _UNKNOWN

    def _search(self, values: np.ndarray) -> np.ndarray:
        """As ``_code`` per value, for a float array and numeric categories."""
        keys, codes = self._sorted  # type: ignore[misc]
        pos = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
        found = keys[pos] == values
        raw = np.where(found, codes[pos], _UNKNOWN)
        if not found.all():
            raw[np.isnan(values)] = _MISSING
            raw[np.isinf(values)] = _INFINITE
        return raw

    def encode(self, values: Sequence[Any] | np.ndarray, pre: np.ndarray | None = None,
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """Codes (float64) of ``values``; per-row reasons (int8, 0 = fine) or None."""
        if self._sorted is not None and isinstance(values, np.ndarray) and \
                values.dtype.kind == "f" and len(values) > SMALL:
            raw = self._search(values)
        elif isinstance(values, np.ndarray) and len(values) > SMALL:
            idx, uniq = pd.factorize(values, use_na_sentinel=True)  # each distinct value once
            lut = np.array([self._code(u) for u in uniq.tolist()] + [_MISSING], np.int64)
            raw = lut[idx]
        else:
            vals = values.tolist() if isinstance(values, np.ndarray) else values
            raw = np.array([self._code(v) for v in vals], dtype=np.int64)
        out = raw.astype(np.float64)
        reason = pre
        if (raw < 0).any():
            r = np.zeros(len(raw), np.int8)
            unk, miss = raw == _UNKNOWN, raw == _MISSING
            r[raw == _INFINITE] = NOT_FINITE
            if self.unknown_code is None:
                r[unk] = UNKNOWN_CATEGORY
            else:
                out[unk] = self.unknown_code
            if self.fill is None:
                r[miss] = MISSING_VALUE
            else:
                out[miss] = self.fill
            reason = r if pre is None else np.where(pre != 0, pre, r)
        return out, (reason if reason is not None and reason.any() else None)


class NumericBlock:
    """The numeric (non-categorical) columns, checked and imputed together.

    ``lo``/``hi``: the schema's bounds (``±F32_MAX`` where none, so infinities fail);
    ``whole``: int columns; ``fill``: the value a missing one takes, NaN where refused."""

    def __init__(self, lo: list[float], hi: list[float], whole: list[bool],
                 fill: list[float | None]) -> None:
        self.lo, self.hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        self.whole = np.asarray(whole, bool)
        self.impute = np.asarray([f is not None for f in fill], bool)
        self.fill = np.asarray([np.nan if f is None else f for f in fill], np.float64)
        self._any_whole = bool(self.whole.any())
        self._lo, self._hi, self._whole = self.lo.tolist(), self.hi.tolist(), self.whole.tolist()

    def clean(self, V: np.ndarray) -> bool:
        """Whether every value is present and in range: nothing to refuse or impute."""
        if V.shape[0] == 1:  # one request row: a few comparisons, no array operations
            return all(lo <= v <= hi and (not whole or v == math.floor(v))
                       for v, lo, hi, whole in zip(V[0].tolist(), self._lo, self._hi,
                                                   self._whole, strict=True))
        with np.errstate(invalid="ignore"):
            ok = (V >= self.lo) & (V <= self.hi)  # NaN and +-inf fail both
            if self._any_whole:
                ok &= (V == np.floor(V)) | ~self.whole
        return bool(ok.all())

    def encode(self, V: np.ndarray, pre: np.ndarray | None = None,
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """``V`` (n, m) float64 -> (values with missing ones imputed, reasons or None)."""
        if pre is None and self.clean(V):
            return V, None
        with np.errstate(invalid="ignore"):
            r = np.zeros(V.shape, np.int8)
            r[V < self.lo] = BELOW_MIN
            r[V > self.hi] = ABOVE_MAX
            if self._any_whole:
                r[self.whole & np.isfinite(V) & (V != np.floor(V))] = WRONG_TYPE
        r[np.isinf(V)] = NOT_FINITE
        miss = np.isnan(V)
        r[miss & ~self.impute] = MISSING_VALUE
        out = np.where(miss & self.impute, self.fill, V)
        if pre is not None:
            r = np.where(pre != 0, pre, r)
        return out, (r if r.any() else None)


def parse_kind(col: Any) -> str:
    """How a column's values are parsed: as numbers, true/false or text."""
    return {"string": STR, "bool": BOOL}.get(col.type, NUM)


def _number(v: Any) -> tuple[float, int]:
    """A request value for a number column -> (float, reason)."""
    if v is None:
        return math.nan, 0
    if v is ABSENT:
        return math.nan, MISSING_FIELD
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                               np.floating)):
        return math.nan, WRONG_TYPE
    try:
        f = float(v)
    except OverflowError:  # an int beyond float64: out of every range
        return (1.0 if v > 0 else -1.0) * float(np.finfo(np.float64).max), 0
    return (math.nan, NOT_FINITE) if f != f else (f, 0)  # NaN is not a JSON number


def _flag(v: Any) -> tuple[float, int]:
    if v is None:
        return math.nan, 0
    if v is ABSENT:
        return math.nan, MISSING_FIELD
    return (float(v), 0) if isinstance(v, (bool, np.bool_)) else (math.nan, WRONG_TYPE)


def _text(v: Any) -> tuple[Any, int]:
    if v is None:
        return None, 0
    if v is ABSENT:
        return None, MISSING_FIELD
    return (v, 0) if isinstance(v, str) else (None, WRONG_TYPE)


REQUEST_PARSERS: dict[str, Callable[[Any], tuple[Any, int]]] = {
    NUM: _number, BOOL: _flag, STR: _text}


def frame_column(kind: str, s: pd.Series) -> tuple[np.ndarray, np.ndarray | None]:
    """A frame column -> (typed values, reasons or None). Frames are read leniently:
    text that parses as a number is one (a CSV cell), a string column's values are text."""
    isna = s.isna().to_numpy()
    if kind == STR:
        if pdt.is_float_dtype(s.dtype):  # codes a reader took for numbers (NaN made them float)
            s = s.map(lambda v: str(int(v)) if float(v).is_integer() else str(v),
                      na_action="ignore")
        vals = np.where(isna, None, s.astype(str).to_numpy(dtype=object))
        return vals, None
    if pdt.is_bool_dtype(s.dtype):
        if kind == BOOL:
            return s.to_numpy(dtype=np.float64, na_value=np.nan), None
        return np.full(len(s), np.nan), np.where(isna, 0, WRONG_TYPE).astype(np.int8)
    if pdt.is_numeric_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan), None
    obj = s.astype(object)
    is_bool = obj.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
    if kind == BOOL:
        text = obj.map(lambda v: str(v).strip().lower())
        num = text.map({"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0, "1.0": 1.0,
                        "0.0": 0.0}).to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        num = np.array(pd.to_numeric(obj.where(~is_bool), errors="coerce"), np.float64)
        num[is_bool] = np.nan
    bad = ~isna & np.isnan(num)
    return num, (bad.astype(np.int8) * WRONG_TYPE if bad.any() else None)
