"""Tabular inputs from three sources through the same kernels, and the errors they find.

Records (JSON requests), frames (training, batch) and matrices (a 2-D tensor) are each
parsed into typed columns (:mod:`cd4ml.features.tabular_kernels`), then encoded by the
same :class:`CodeTable` and :class:`NumericBlock` kernels (:meth:`Encoder.run`). A plain
request (every field present with the right Python type and a known category) takes a
shortcut through the same dicts and the same numeric check, skipping only the per-cell
bookkeeping. Every bad cell becomes one error dict (loc, field, value, problem, reason).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.errors import RequestError, short_repr
from cd4ml.features.tabular_kernels import (ABOVE_MAX, ABSENT, BELOW_MIN, F32_MAX,
                                            MISSING_FIELD, MISSING_VALUE, NOT_FINITE, REASONS,
                                            REQUEST_PARSERS, SMALL, UNKNOWN_CATEGORY,
                                            WRONG_TYPE, CodeTable, NumericBlock, BOOL, NUM,
                                            STR, frame_column, parse_kind)

__all__ = ["Encoder", "message"]

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
        self.kinds = [parse_kind(c) for c in self.columns]
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
        #: the bounds as a float32 tensor holds them (_snap_bounds)
        self._lo32 = self.numeric.lo.astype(np.float32)
        self._hi32 = self.numeric.hi.astype(np.float32)
        gets = [self.tables[j].index.get if j in self.tables else None for j in range(self.k)]
        record_types = {NUM: frozenset({int, float}), BOOL: frozenset({bool}),
                        STR: frozenset({str})}
        self._plain_records = list(zip(self.names, [record_types[k] for k in self.kinds],
                                       gets, strict=True))
        self._gets = gets  # a matrix holds floats only: no type to check

    # -- the shortcut for plain inputs ----------------------------------------------------
    def _finish_plain(self, rows: list[list[Any]]) -> np.ndarray | None:
        try:
            V = np.array(rows, dtype=np.float64).reshape(len(rows), self.k)
        except OverflowError:
            return None
        if self.num_idx.size:
            block = V if self._all_numeric else V[:, self.num_idx]
            if not self.numeric.clean(block):
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

    def _snap_bounds(self, M: np.ndarray) -> np.ndarray:
        """``M`` with each float32-rounded schema bound of a numeric column replaced by the
        bound itself (``M`` itself when no value sits at such a bound)."""
        cols = self.num_idx
        block = M[:, cols]
        b32 = block.astype(np.float32)
        lo, hi = self.numeric.lo, self.numeric.hi
        at_lo, at_hi = b32 == self._lo32, b32 == self._hi32
        if not (at_lo.any() or at_hi.any()):
            return M
        block = np.where(at_hi, hi, np.where(at_lo, lo, block))  # hi last, as before
        out = M.copy()
        out[:, cols] = block
        return out

    def plain_matrix(self, M: np.ndarray) -> np.ndarray | None:
        rows = []
        for raw in M.tolist():
            row = []
            for v, get in zip(raw, self._gets, strict=True):
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
        raw: list[list[Any]] = [[ABSENT] * n for _ in range(self.k)]
        row_errors: dict[int, list[dict[str, Any]]] = {}
        not_objects: list[int] = []
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping):
                row_errors[i] = [{"loc": f"rows[{i}]", "field": None, "value": _show(rec),
                                  "problem": f"expected an object with fields {names}",
                                  "reason": "wrong_type"}]
                not_objects.append(i)
                continue
            for j, name in enumerate(names):
                raw[j][i] = rec.get(name, ABSENT)
            for f in rec:
                if f not in known:
                    row_errors.setdefault(i, []).append(self._unknown_field(i, f, rec[f]))
        cols: list[Any] = []
        pre: list[np.ndarray | None] = []
        for j, kind in enumerate(self.kinds):
            parse = REQUEST_PARSERS[kind]
            got = [parse(v) for v in raw[j]]
            vals = [g[0] for g in got]
            cols.append(np.array(vals, dtype=object if kind == STR else np.float64))
            r = np.array([g[1] for g in got], np.int8)
            pre.append(r if r.any() else None)
        X, reasons = self.run(cols, pre, n)
        for r in reasons.values():  # a record that is not an object: one error, not k
            r[not_objects] = 0

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
            v, r = frame_column(kind, df[present[name]])
            cols.append(v)
            pre.append(r)
        X, reasons = self.run(cols, pre, len(df))
        series = [df[present[name]] for name in self.names]
        return X, self.errors(reasons, lambda i, j: series[j].iat[i], {})

    def matrix(self, M: Any) -> np.ndarray:
        """Float64 rows of an (n, k) numeric matrix in signature order (NaN = missing).

        A float32 matrix (an FP32 tensor, as MLServer's clients send) holds the schema's
        bounds as float32 too: 0.48 arrives as 0.4799999893. Such a value is taken as the
        bound it stands for (the model sees float32 anyway); JSON numbers are exact."""
        f32 = getattr(M, "dtype", None) == np.float32
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
        if f32 and self.num_idx.size:
            M = self._snap_bounds(M)
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
                v = None if code in (MISSING_FIELD, MISSING_VALUE) else value(i, j)
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
    if first["value"] is None:
        return f"{first['loc']}: {first['problem']}{more}"
    return f"{first['loc']} = {first['value']!r}: {first['problem']}{more}"


def _show(v: Any) -> Any:
    """A JSON-safe, short form of a bad value for an error."""
    if v is None or v is ABSENT:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, (bool, int, float, str)) and len(repr(v)) <= 80:
        return v
    return short_repr(v)
