"""The encoding of tabular inputs: one kernel per column kind, shared by every source.

A categorical column maps values to codes through one dict (:class:`CodeTable`); a
numeric column is checked against its range and imputed (:class:`NumericBlock`).
Records (JSON requests), frames (training, batch) and matrices (a 2-D tensor) are each
parsed into typed columns plus a first problem per cell (wrong type, missing field), then
go through the same kernels (:class:`Encoder`). A plain request (every field present with
the right Python type and a known category) takes a shortcut through the same dicts and
the same numeric kernel, skipping only the per-cell bookkeeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as pdt

from cd4ml.errors import RequestError, short_repr

__all__ = ["REASONS", "CodeTable", "NumericBlock", "Encoder", "F32_MAX"]

#: why a cell was refused; the int8 code is the position
REASONS = ("", "missing_field", "unknown_field", "wrong_type", "not_finite", "below_min",
           "above_max", "unknown_category", "missing_value")
MISSING_FIELD, UNKNOWN_FIELD, WRONG_TYPE, NOT_FINITE, BELOW_MIN, ABOVE_MAX, \
    UNKNOWN_CATEGORY, MISSING_VALUE = range(1, 9)

#: the largest magnitude a float32 feature holds; also the bound of an unbounded column
F32_MAX = float(np.finfo(np.float32).max)
_UNKNOWN, _MISSING = -1, -2  # lookup results that are not codes
_ABSENT = object()  # a field the record does not have
#: at most this many values are looked up one by one; more go through pd.factorize
SMALL = 64
_NUM, _BOOL, _STR = "number", "bool", "string"  # how a column's values are parsed


class CodeTable:
    """A categorical column: ``categories[i]`` has code ``i``; ``unknown_code`` (policy
    unknown) or None; ``fill``: the code a missing value takes (impute) or None."""

    def __init__(self, categories: list[Any], unknown_code: int | None,
                 fill: float | None) -> None:
        self.categories, self.unknown_code, self.fill = categories, unknown_code, fill
        #: the one mapping from a value to its code, used by every path
        self.index: dict[Any, int] = {c: i for i, c in enumerate(categories)}

    def _code(self, v: Any) -> int:
        c = self.index.get(v)
        if c is not None:
            return c
        return _MISSING if v is None or v != v else _UNKNOWN

    def encode(self, values: Sequence[Any] | np.ndarray, pre: np.ndarray | None = None,
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """Codes (float64) of ``values``; per-row reasons (int8, 0 = fine) or None."""
        if isinstance(values, np.ndarray) and len(values) > SMALL:
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

    def encode(self, V: np.ndarray, pre: np.ndarray | None = None,
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """``V`` (n, m) float64 -> (values with missing ones imputed, reasons or None)."""
        with np.errstate(invalid="ignore"):
            ok = (V >= self.lo) & (V <= self.hi)  # NaN and +-inf fail both
            if self._any_whole:
                ok &= (V == np.floor(V)) | ~self.whole
            if pre is None and ok.all():
                return V, None
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


def _parse_kind(col: Any) -> str:
    return {"string": _STR, "bool": _BOOL}.get(col.type, _NUM)


def _number(v: Any) -> tuple[float, int]:
    """A request value for a number column -> (float, reason)."""
    if v is None:
        return math.nan, 0
    if v is _ABSENT:
        return math.nan, MISSING_FIELD
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                               np.floating)):
        return math.nan, WRONG_TYPE
    try:
        f = float(v)
    except OverflowError:  # an int beyond float64: out of every range
        return math.copysign(np.finfo(np.float64).max, v), 0
    return (math.nan, NOT_FINITE) if f != f else (f, 0)  # NaN is not a JSON number


def _flag(v: Any) -> tuple[float, int]:
    if v is None:
        return math.nan, 0
    if v is _ABSENT:
        return math.nan, MISSING_FIELD
    return (float(v), 0) if isinstance(v, (bool, np.bool_)) else (math.nan, WRONG_TYPE)


def _text(v: Any) -> tuple[Any, int]:
    if v is None:
        return None, 0
    if v is _ABSENT:
        return None, MISSING_FIELD
    return (v, 0) if isinstance(v, str) else (None, WRONG_TYPE)


_REQUEST_PARSERS: dict[str, Callable[[Any], tuple[Any, int]]] = {
    _NUM: _number, _BOOL: _flag, _STR: _text}


def _frame_column(kind: str, s: pd.Series) -> tuple[np.ndarray, np.ndarray | None]:
    """A frame column -> (typed values, reasons or None). Frames are read leniently:
    text that parses as a number is one (a CSV cell), a string column's values are text."""
    isna = s.isna().to_numpy()
    if kind == _STR:
        vals = np.where(isna, None, s.astype(str).to_numpy(dtype=object))
        return vals, None
    if pdt.is_bool_dtype(s.dtype):
        if kind == _BOOL:
            return s.to_numpy(dtype=np.float64, na_value=np.nan), None
        return np.full(len(s), np.nan), np.where(isna, 0, WRONG_TYPE).astype(np.int8)
    if pdt.is_numeric_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan), None
    obj = s.astype(object)
    is_bool = obj.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
    if kind == _BOOL:
        text = obj.map(lambda v: str(v).strip().lower())
        num = text.map({"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0, "1.0": 1.0,
                        "0.0": 0.0}).to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        num = pd.to_numeric(obj.where(~is_bool), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan)
        num[is_bool] = np.nan
    bad = ~isna & np.isnan(num)
    return num, (bad.astype(np.int8) * WRONG_TYPE if bad.any() else None)


class Encoder:
    """The kernels of a column list, and the three sources parsed into them.

    ``columns`` are InputColumn-like (name, type, categorical, min, max, unknown,
    missing); ``codes[name]`` the code table of each categorical column; ``fills[name]``
    the imputed value (a code for categorical columns) of each impute column.
    """

    def __init__(self, columns: Sequence[Any], codes: Mapping[str, list[Any]],
                 fills: Mapping[str, float]) -> None:
        self.columns = list(columns)
        self.names = [c.name for c in self.columns]
        self.k = len(self.columns)
        self.kinds = [_parse_kind(c) for c in self.columns]
        self.tables: dict[int, CodeTable] = {}
        num: list[int] = []
        for j, c in enumerate(self.columns):
            if c.categorical:
                cats = list(codes[c.name])
                self.tables[j] = CodeTable(cats, len(cats) if c.unknown == "unknown" else None,
                                           fills.get(c.name) if c.missing == "impute" else None)
            else:
                num.append(j)
        self.num_idx = np.asarray(num, np.intp)
        numeric = [self.columns[j] for j in num]
        self.numeric = NumericBlock(
            [max(-F32_MAX, c.min) if c.min is not None else -F32_MAX for c in numeric],
            [min(F32_MAX, c.max) if c.max is not None else F32_MAX for c in numeric],
            [c.type == "int" for c in numeric],
            [fills.get(c.name) if c.missing == "impute" else None for c in numeric])
        self._all_numeric = len(num) == self.k
        gets = [self.tables[j].index.get if j in self.tables else None for j in range(self.k)]
        record_types = {_NUM: frozenset({int, float}), _BOOL: frozenset({bool}),
                        _STR: frozenset({str})}
        self._plain_records = list(zip(self.names, [record_types[k] for k in self.kinds],
                                       gets, strict=True))
        self._plain_matrix = list(zip([frozenset({float})] * self.k, gets, strict=True))

    # -- the shortcut for plain inputs ----------------------------------------------------
    def _finish_plain(self, rows: list[list[Any]]) -> np.ndarray | None:
        try:
            V = np.array(rows, dtype=np.float64).reshape(len(rows), self.k)
        except OverflowError:
            return None
        if self.num_idx.size:
            block = V if self._all_numeric else V[:, self.num_idx]
            if self.numeric.encode(block)[1] is not None:
                return None
        return V

    def plain_records(self, records: list[Any]) -> np.ndarray | None:
        """The float64 rows when every record is plain, else None (then :meth:`records`)."""
        k, plan, rows = self.k, self._plain_records, []
        try:
            for rec in records:
                if type(rec) is not dict or len(rec) != k:
                    return None
                row = []
                for name, types, get in plan:
                    v = rec[name]
                    if type(v) not in types:
                        return None
                    if get is not None:
                        v = get(v)
                        if v is None:
                            return None
                    row.append(v)
                rows.append(row)
        except KeyError:
            return None
        return self._finish_plain(rows)

    def plain_matrix(self, M: np.ndarray) -> np.ndarray | None:
        rows = []
        for raw in M.tolist():
            row = []
            for v, (_types, get) in zip(raw, self._plain_matrix, strict=True):
                if get is not None:
                    v = get(v)
                    if v is None:
                        return None
                row.append(v)
            rows.append(row)
        return self._finish_plain(rows)

    # -- the checked paths ---------------------------------------------------------------
    def run(self, cols: list[Any], pre: list[np.ndarray | None], n: int,
            ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Typed columns -> (float64 matrix, reasons per column position)."""
        X = np.empty((n, self.k), np.float64)
        reasons: dict[int, np.ndarray] = {}
        for j, table in self.tables.items():
            X[:, j], r = table.encode(cols[j], pre[j])
            if r is not None:
                reasons[j] = r
        if self.num_idx.size:
            V = np.column_stack([np.asarray(cols[j], np.float64) for j in self.num_idx]) \
                if n else np.empty((0, self.num_idx.size))
            P = None
            if any(pre[j] is not None for j in self.num_idx):
                P = np.column_stack([np.zeros(n, np.int8) if pre[j] is None else pre[j]
                                     for j in self.num_idx])
            out, R = self.numeric.encode(V, P)
            X[:, self.num_idx] = out
            if R is not None:
                for a, j in enumerate(self.num_idx.tolist()):
                    if R[:, a].any():
                        reasons[j] = R[:, a]
        return X, reasons

    def records(self, records: Sequence[Any]) -> np.ndarray:
        """Float64 rows of request records; RequestError listing every bad field."""
        n, names = len(records), self.names
        known = set(names)
        raw: list[list[Any]] = [[_ABSENT] * n for _ in range(self.k)]
        row_errors: dict[int, list[dict[str, Any]]] = {}
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping):
                row_errors[i] = [{"loc": f"rows[{i}]", "field": None, "value": _show(rec),
                                  "problem": f"expected an object with fields {names}",
                                  "reason": "wrong_type"}]
                continue
            for j, name in enumerate(names):
                raw[j][i] = rec.get(name, _ABSENT)
            for f in rec:
                if f not in known:
                    row_errors.setdefault(i, []).append(self._unknown_field(i, f, rec[f]))
        cols: list[Any] = []
        pre: list[np.ndarray | None] = []
        for j, kind in enumerate(self.kinds):
            parse = _REQUEST_PARSERS[kind]
            got = [parse(v) for v in raw[j]]
            vals = [g[0] for g in got]
            cols.append(np.array(vals, dtype=object if kind == _STR else np.float64))
            r = np.array([g[1] for g in got], np.int8)
            pre.append(r if r.any() else None)
        X, reasons = self.run(cols, pre, n)
        for i in row_errors:  # a record that is not an object: one error, not one per field
            for r in reasons.values():
                r[i] = 0 if not isinstance(records[i], Mapping) else r[i]

        def value(i: int, j: int) -> Any:
            return records[i].get(names[j])
        self.raise_for(reasons, value, row_errors)
        return X

    def frame(self, df: pd.DataFrame, *, extra: str = "ignore",
              ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Float64 rows of a frame and every problem found (nothing raised)."""
        errors: list[dict[str, Any]] = []
        present = {str(c): c for c in df.columns}
        for name in self.names:
            if name not in present:
                errors.append({"loc": f"columns.{name}", "field": name, "value": None,
                               "problem": "column required", "reason": "missing_field"})
        if extra == "refuse":
            for c in present:
                if c not in set(self.names):
                    errors.append({**self._unknown_field(None, c, None), "loc": f"columns.{c}"})
        if errors:
            return np.empty((len(df), self.k)), errors
        cols, pre = [], []
        for kind, name in zip(self.kinds, self.names, strict=True):
            v, r = _frame_column(kind, df[present[name]])
            cols.append(v)
            pre.append(r)
        X, reasons = self.run(cols, pre, len(df))
        series = [df[present[name]] for name in self.names]
        return X, self.errors(reasons, lambda i, j: series[j].iat[i], {})

    def matrix(self, M: Any) -> np.ndarray:
        """Float64 rows of an (n, k) numeric matrix in signature order (NaN = missing)."""
        try:
            M = np.asarray(M, dtype=np.float64)
        except (TypeError, ValueError):
            raise RequestError("inputs: expected a numeric matrix", errors=[{
                "loc": "inputs", "field": None, "value": None, "reason": "wrong_type",
                "problem": "expected a numeric matrix"}]) from None
        if M.ndim != 2 or M.shape[1] != self.k:
            problem = f"expected shape (n, {self.k}): one column per input {self.names}"
            raise RequestError(f"inputs: shape {list(M.shape)}: {problem}", errors=[{
                "loc": "inputs", "field": None, "value": list(M.shape), "problem": problem,
                "reason": "wrong_type"}])
        strings = [c.name for c in self.columns if c.type == "string"]
        if strings:
            problem = f"a numeric matrix cannot carry the string input(s) {strings}"
            raise RequestError(f"inputs: {problem}; send one value per field instead",
                               errors=[{"loc": "inputs", "field": strings[0], "value": None,
                                        "problem": problem, "reason": "wrong_type"}])
        if len(M) <= SMALL // 4:
            fast = self.plain_matrix(M)
            if fast is not None:
                return fast
        X, reasons = self.run([M[:, j] for j in range(self.k)], [None] * self.k, len(M))
        self.raise_for(reasons, lambda i, j: float(M[i, j]), {})
        return X

    # -- errors -------------------------------------------------------------------------
    def _unknown_field(self, i: int | None, f: Any, v: Any) -> dict[str, Any]:
        near = [n for n in self.names if n.lower() == str(f).lower()]
        hint = f"; did you mean {near[0]!r}? (names are case-sensitive)" if near else \
            f"; the inputs are {', '.join(self.names)}"
        return {"loc": f"rows[{i}].{f}", "field": str(f), "value": _show(v),
                "problem": "unknown field" + hint, "reason": "unknown_field"}

    def errors(self, reasons: dict[int, np.ndarray], value: Callable[[int, int], Any],
               row_errors: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """One error dict per bad cell, by row then signature order."""
        cells: dict[int, list[dict[str, Any]]] = {i: list(e) for i, e in row_errors.items()}
        for j in sorted(reasons):
            col, r = self.columns[j], reasons[j]
            for i in np.flatnonzero(r).tolist():
                code = int(r[i])
                v = None if code == MISSING_FIELD else value(i, j)
                cells.setdefault(i, []).append({
                    "loc": f"rows[{i}].{col.name}", "field": col.name, "value": _show(v),
                    "problem": self.problem(j, code), "reason": REASONS[code]})
        out: list[dict[str, Any]] = []
        for i in sorted(cells):
            out.extend(sorted(cells[i], key=lambda e: (e["reason"] == "unknown_field",
                                                       self._pos(e["field"]))))
        return out

    def _pos(self, field: Any) -> int:
        return self.names.index(field) if field in self.names else self.k

    def raise_for(self, reasons: dict[int, np.ndarray], value: Callable[[int, int], Any],
                  row_errors: dict[int, list[dict[str, Any]]]) -> None:
        if reasons or row_errors:
            errors = self.errors(reasons, value, row_errors)
            raise RequestError(message(errors), errors=errors)

    def problem(self, j: int, code: int) -> str:
        """What is wrong with a cell of column ``j``, for a person to fix it."""
        c = self.columns[j]
        if code == MISSING_FIELD:
            return "field required" + ("; send null to have it imputed"
                                       if c.missing == "impute" else "")
        if code == WRONG_TYPE:
            if c.type == "string":
                return "expected a string"
            if c.type == "bool":
                return "expected true or false"
            return "expected a whole number" if c.type == "int" else "expected a number"
        if code == NOT_FINITE:
            return "must be a finite number (send null for a missing value)"
        if code == BELOW_MIN:
            return f"below the schema's minimum {c.min}" if c.min is not None \
                else f"below the smallest number the model takes ({-F32_MAX:.3g})"
        if code == ABOVE_MAX:
            return f"above the schema's maximum {c.max}" if c.max is not None \
                else f"above the largest number the model takes ({F32_MAX:.3g})"
        if code == UNKNOWN_CATEGORY:
            cats = self.tables[j].categories
            shown = ", ".join(map(str, cats[:20])) + (", ..." if len(cats) > 20 else "")
            where = "the declared categories" if c.categories is not None \
                else "the categories seen in training"
            return f"not one of {where}: {shown}"
        return (f"missing value; this input refuses them (inputs.columns.{c.name}.missing: "
                f"impute would fill them)")


def message(errors: list[dict[str, Any]]) -> str:
    """One line naming the first bad field, e.g. ``rows[0].AGEP = -5: below ...``."""
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if first["reason"] in ("missing_field", "missing_value") or first["field"] is None:
        return f"{first['loc']}: {first['problem']}{more}"
    return f"{first['loc']} = {first['value']!r}: {first['problem']}{more}"


def _show(v: Any) -> Any:
    """A JSON-safe, short form of a bad value for an error."""
    if v is None or v is _ABSENT:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, (bool, int, float, str)) and len(repr(v)) <= 80:
        return v
    return short_repr(v)
