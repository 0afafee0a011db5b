"""Check a frame against its :class:`~cd4ml.data.schema.Schema`; every failure counted.

Each failure names the column, the check, the severity, how many rows break it, what
was expected, and up to five examples (0-based row position and value). Checks are
vectorised: the 421,570-row Walmart sales file validates in a fraction of a second.

>>> import pandas as pd
>>> from cd4ml.data.schema import Column, Schema
>>> schema = Schema(name="sales", unique_keys=["k"], columns=[
...     Column(name="k", type="int"), Column(name="y", type="float", min=0)])
>>> report = validate(pd.DataFrame({"k": [1, 1, 2], "y": [3.0, None, -1.0]}), schema)
>>> report.ok
False
>>> print(report.summary())
sales: 3 checks failed: y nulls (1 row), y below min 0 (1 row), k duplicated (2 rows)
>>> report.failures[1].examples
[{'row': 2, 'value': -1.0}]
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as pdt

from cd4ml.data._types import examples, json_value
from cd4ml.data.schema import Column, Schema
from cd4ml.data.sources import parse_dates
from cd4ml.errors import ValidationFailed

__all__ = ["Failure", "ValidationReport", "validate"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Failure:
    """One failed check. ``count`` is the number of rows affected."""

    column: str
    check: str
    severity: Severity
    count: int
    expected: str
    examples: list[dict[str, Any]] = field(default_factory=list)

    def label(self) -> str:
        """Short text for the one-line summary, e.g. ``y nulls (3 rows)``."""
        rows = f"({self.count:,} row{'s' if self.count != 1 else ''})"
        return {
            "missing_column": f"{self.column} missing",
            "extra_column": f"{self.column} extra column",
            "type": f"{self.column} not {self.expected.split(' (')[0]} {rows}",
            "min": f"{self.column} below min {self.expected.removeprefix('>= ')} {rows}",
            "max": f"{self.column} above max {self.expected.removeprefix('<= ')} {rows}",
            "categories": f"{self.column} not in categories {rows}",
        }.get(self.check, f"{self.column} {self.check} {rows}")


@dataclass
class ValidationReport:
    """All failures of one frame against one schema."""

    name: str
    rows: int
    columns: int
    failures: list[Failure] = field(default_factory=list)

    @property
    def errors(self) -> list[Failure]:
        return [f for f in self.failures if f.severity == "error"]

    @property
    def warnings(self) -> list[Failure]:
        return [f for f in self.failures if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when no check failed with severity 'error' (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: name, rows, columns, ok, failures."""
        return {"name": self.name, "rows": self.rows, "columns": self.columns, "ok": self.ok,
                "failures": [asdict(f) for f in self.failures]}

    def summary(self) -> str:
        """One line: ``sales: ok (...)`` or ``sales: 2 checks failed: ...``."""
        warn = self.warnings
        tail = f"; {len(warn)} warning{'s' if len(warn) != 1 else ''}: " \
               + ", ".join(f.label() for f in warn) if warn else ""
        errs = self.errors
        if not errs:
            return f"{self.name}: ok ({self.rows:,} rows, {self.columns} columns){tail}"
        n = len(errs)
        return f"{self.name}: {n} check{'s' if n != 1 else ''} failed: " \
               + ", ".join(f.label() for f in errs) + tail

    def render(self, width: int = 120) -> str:
        """The summary and a table of failures, as plain text for a terminal."""
        if not self.failures:
            return self.summary()
        from rich.console import Console
        from rich.table import Table

        table = Table(show_lines=False)
        for head in ("severity", "column", "check", "rows", "expected", "examples (row: value)"):
            table.add_column(head, overflow="fold", justify="right" if head == "rows" else "left")
        for f in self.failures:
            ex = "; ".join(f"{e['row']}: {_show(e['value'])}" for e in f.examples)
            table.add_row(f.severity, f.column, f.check, f"{f.count:,}", f.expected, ex)
        buf = io.StringIO()
        Console(file=buf, width=width, color_system=None, force_terminal=False,
                legacy_windows=False).print(table)
        lines = [line.rstrip() for line in buf.getvalue().rstrip().splitlines()]
        return "\n".join([self.summary(), *lines])

    def raise_for_errors(self) -> None:
        """Raise :class:`ValidationFailed` (carrying this report) if any check failed."""
        if not self.ok:
            raise ValidationFailed(self.summary(), report=self)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _fail(out: list[Failure], col: str, check: str, mask: np.ndarray, values: Any,
          expected: str, severity: Severity = "error") -> None:
    n = int(mask.sum())
    if n:
        out.append(Failure(col, check, severity, n, expected, examples(mask, values)))


def _fits(recorded: dict[str, Any] | None, isna: np.ndarray) -> bool:
    """Whether parse errors recorded by ``read_source`` still describe this frame (attrs
    survive filtering and reordering; then the rows they name are no longer right)."""
    if not recorded or not recorded.get("count"):
        return False
    rows = [e.get("row") for e in recorded.get("examples", [])]
    return int(recorded["count"]) <= int(isna.sum()) and all(
        isinstance(r, int) and 0 <= r < len(isna) and isna[r] for r in rows)


def _as_type(s: pd.Series, col: Column, attrs: dict[str, Any],
             ) -> tuple[np.ndarray, pd.Series, np.ndarray, dict[str, Any] | None]:
    """(bad-type mask, values coerced to the type, null mask, recorded parse errors)."""
    isna = s.isna().to_numpy()
    none = np.zeros(len(s), dtype=bool)
    if col.type == "string":
        return none, s, isna, None
    if col.type == "date":
        if pdt.is_datetime64_any_dtype(s.dtype):
            recorded = (attrs.get("parse_errors") or {}).get(col.name)
            return none, s, isna, recorded if _fits(recorded, isna) else None
        parsed, bad = parse_dates(s)
        return bad, parsed, isna, None
    if col.type == "bool":
        if pdt.is_bool_dtype(s.dtype):
            return none, s, isna, None
        text = s.astype("str").str.strip().str.lower()
        bad = ~isna & ~text.isin(["true", "false", "1", "0", "1.0", "0.0"]).to_numpy()
        return bad, s, isna, None
    # int / float
    if pdt.is_bool_dtype(s.dtype) or pdt.is_datetime64_any_dtype(s.dtype):
        return ~isna, pd.Series(np.nan, index=s.index), isna, None
    num = s if pdt.is_numeric_dtype(s.dtype) else pd.to_numeric(s, errors="coerce")
    arr = num.to_numpy(dtype="float64", na_value=np.nan)
    bad = ~isna & np.isnan(arr)
    if col.type == "int" and not pdt.is_integer_dtype(num.dtype):
        with np.errstate(invalid="ignore"):
            bad |= ~np.isnan(arr) & (arr != np.floor(arr))
    return bad, num, isna, None


def _check_column(s: pd.Series, col: Column, attrs: dict[str, Any], out: list[Failure]) -> None:
    bad, values, isna, recorded = _as_type(s, col, attrs)
    name = col.name
    fmt = " (YYYY-MM-DD or ISO 8601)" if col.type == "date" else ""
    if recorded and recorded.get("count"):
        out.append(Failure(name, "type", "error", int(recorded["count"]),
                           f"{col.type}{fmt}", list(recorded.get("examples", []))[:5]))
        nulls = isna.copy()
        nulls[[e["row"] for e in recorded.get("examples", [])]] = False
        n_null = int(isna.sum()) - int(recorded["count"])
    else:
        _fail(out, name, "type", bad, s, f"{col.type}{fmt}")
        nulls, n_null = isna, int(isna.sum())
    if not col.nullable and n_null > 0:
        ex = examples(nulls, s)
        out.append(Failure(name, "nulls", "error", n_null, "no missing values", ex))
    ok = ~isna & ~bad
    if col.min is not None or col.max is not None:
        if col.type == "date":
            cmp = pd.to_datetime(values, errors="coerce")
            lo = pd.Timestamp(str(col.min)) if col.min is not None else None
            hi = pd.Timestamp(str(col.max)) if col.max is not None else None
        else:
            cmp = pd.to_numeric(values, errors="coerce")
            lo, hi = col.min, col.max
        if lo is not None:
            _fail(out, name, "min", ok & (cmp < lo).to_numpy(dtype=bool, na_value=False), s,
                  f">= {col.min}")
        if hi is not None:
            _fail(out, name, "max", ok & (cmp > hi).to_numpy(dtype=bool, na_value=False), s,
                  f"<= {col.max}")
    if col.categories is not None:
        vals = s.astype("str") if col.type == "string" else values
        inside = vals.isin(col.categories).to_numpy(dtype=bool, na_value=False)
        shown = ", ".join(map(str, col.categories[:10])) + (", ..." if len(col.categories) > 10
                                                            else "")
        _fail(out, name, "categories", ok & ~inside, s, f"one of: {shown}")


def _check_keys(df: pd.DataFrame, keys: list[str], out: list[Failure]) -> None:
    dup = df.duplicated(subset=keys, keep=False).to_numpy()
    n = int(dup.sum())
    if not n:
        return
    pos = np.flatnonzero(dup)
    sub = df[keys].iloc[pos].reset_index(drop=True)
    order = sub.sort_values(keys, kind="stable").index[:5]
    ex = [{"row": int(pos[i]), "value": {k: json_value(sub[k].iat[i]) for k in keys}}
          for i in order]
    label = keys[0] if len(keys) == 1 else f"({', '.join(keys)})"
    out.append(Failure(label, "duplicated", "error", n, f"unique {label}", ex))


def validate(df: pd.DataFrame, schema: Schema) -> ValidationReport:
    """Check ``df`` against ``schema``; never raises for bad data (see ``raise_for_errors``).

    Dates that ``read_source`` could not parse (``df.attrs["parse_errors"]``) are reported
    as type failures with their raw values, not as nulls.
    """
    out: list[Failure] = []
    attrs = dict(df.attrs)
    present = {str(c) for c in df.columns}
    for col in schema.columns:
        if col.name not in present:
            out.append(Failure(col.name, "missing_column", "error", len(df),
                               f"column {col.name!r} of type {col.type}"))
            continue
        _check_column(df[col.name], col, attrs, out)
    for c in df.columns:
        if str(c) not in set(schema.names):
            out.append(Failure(str(c), "extra_column", "warning", len(df),
                               "only the schema's columns"))
    keys = schema.unique_keys or []
    if keys and all(k in present for k in keys):
        _check_keys(df, keys, out)
    return ValidationReport(schema.name, len(df), len(df.columns), out)
