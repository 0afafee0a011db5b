"""A column as exact counts of its distinct values: what every drift statistic is computed on.

A :class:`ColumnSummary` holds a column's distinct non-missing values (sorted numbers, or
category labels) with how often each occurs, and how many rows were missing. Two summaries
merge exactly (:meth:`ColumnSummary.merge`): a window's summary is the merge of its
blocks', so adding a day of log costs what the day costs. Every statistic of
:mod:`cd4ml.monitoring.stats` reads summaries only, never the rows, and gives what SciPy
gives on the rows themselves (tested): a reference stores its summaries once, and
comparing a window to it never touches the training data again.

>>> import pandas as pd
>>> s = ColumnSummary.of(pd.Series([3.0, 1.0, None, 3.0]), "numeric")
>>> s.values.tolist(), s.counts.tolist(), s.n, s.missing
([1.0, 3.0], [1, 2], 3, 1)
>>> s.merge(ColumnSummary.of(pd.Series([2.0]), "numeric")).values.tolist()
[1.0, 2.0, 3.0]
>>> c = ColumnSummary.of(pd.Series(["b", "a", "b"]), "categorical")
>>> c.values.tolist(), c.counts.tolist()
(['a', 'b'], [1, 2])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = ["ColumnSummary", "Kind", "KINDS"]

Kind = Literal["numeric", "categorical"]
KINDS: tuple[str, ...] = ("numeric", "categorical")


@dataclass(frozen=True, slots=True)
class ColumnSummary:
    """Distinct non-missing values (sorted), their counts, and the missing count.

    ``values`` are float64 for a numeric column (NaN and infinities count as missing,
    as Evidently drops them) and strings for a categorical one (labels as the data spells them, numbers
    as text), so summaries of the same column always compare.
    """

    kind: Kind
    values: np.ndarray
    counts: np.ndarray
    missing: int

    @property
    def n(self) -> int:
        """Non-missing rows."""
        return int(self.counts.sum())

    @property
    def rows(self) -> int:
        return self.n + self.missing

    @property
    def missing_rate(self) -> float | None:
        return self.missing / self.rows if self.rows else None

    @classmethod
    def empty(cls, kind: Kind) -> ColumnSummary:
        dtype: Any = np.float64 if kind == "numeric" else object
        return cls(kind, np.array([], dtype=dtype), np.array([], dtype=np.int64), 0)

    @classmethod
    def of(cls, column: Any, kind: Kind) -> ColumnSummary:
        """The summary of a pandas Series (or anything ``pd.Series`` accepts)."""
        s = column if isinstance(column, pd.Series) else pd.Series(column)
        if kind == "numeric":
            s = pd.to_numeric(s, errors="coerce") if s.dtype == object else s
            arr = s.to_numpy(dtype=np.float64, na_value=np.nan)
            finite = np.isfinite(arr)
            missing = int(len(arr) - finite.sum())
            vc = pd.Series(arr if finite.all() else arr[finite]).value_counts(sort=False)
            order = np.argsort(vc.index.to_numpy(dtype=np.float64), kind="stable")
            return cls(kind, vc.index.to_numpy(dtype=np.float64)[order],
                       vc.to_numpy(dtype=np.int64)[order], missing)
        if kind != "categorical":
            raise ValueError(f"kind == {kind!r}, expected one of {', '.join(KINDS)}")
        missing = int(s.isna().sum())
        vc = s.value_counts(dropna=True, sort=False)
        labels = np.array([_label(v) for v in vc.index], dtype=object)
        counts = vc.to_numpy(dtype=np.int64)
        if len(set(labels.tolist())) < len(labels):  # 1 and "1" in one column: one label
            merged = pd.Series(counts).groupby(labels).sum()
            labels, counts = merged.index.to_numpy(dtype=object), merged.to_numpy(np.int64)
        order = np.argsort(labels.astype(str), kind="stable")
        return cls(kind, labels[order], counts[order], missing)

    def merge(self, other: ColumnSummary) -> ColumnSummary:
        """The summary of both samples together (exact)."""
        if other.kind != self.kind:
            raise ValueError(f"cannot merge a {self.kind} summary with a {other.kind} one")
        values, (a, b) = align(self, other)
        return ColumnSummary(self.kind, values, a + b, self.missing + other.missing)

    # -- moments of a numeric column (as numpy computes them on the rows) -------------
    def mean(self) -> float:
        return float(np.average(self.values, weights=self.counts))

    def std(self) -> float:
        """Population standard deviation (``np.std`` of the rows, ddof=0)."""
        mu = self.mean()
        return float(np.sqrt(np.average((self.values - mu) ** 2, weights=self.counts)))

    def sample(self) -> np.ndarray:
        """The rows back (sorted): for small samples and tests only."""
        return np.repeat(self.values, self.counts)

    # -- storage ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        vals = self.values.tolist()
        return {"kind": self.kind, "values": vals, "counts": self.counts.tolist(),
                "missing": self.missing}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnSummary:
        kind = d["kind"]
        dtype: Any = np.float64 if kind == "numeric" else object
        return cls(kind, np.array(d["values"], dtype=dtype),
                   np.array(d["counts"], dtype=np.int64), int(d["missing"]))


def _label(v: Any) -> str:
    """A category's label: text as it is, whole numbers without ``.0``."""
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return str(v)


def align(a: ColumnSummary, b: ColumnSummary) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The union of both summaries' values (sorted) and each one's counts on it."""
    if a.kind == "numeric":
        values = np.union1d(a.values, b.values)
    else:
        values = np.array(sorted(set(a.values.tolist()) | set(b.values.tolist())),
                          dtype=object)
    return values, (_on(values, a), _on(values, b))


def _on(values: np.ndarray, s: ColumnSummary) -> np.ndarray:
    out = np.zeros(len(values), dtype=np.int64)
    if len(s.values):
        if s.kind == "numeric":
            out[np.searchsorted(values, s.values)] = s.counts
        else:
            pos = {v: i for i, v in enumerate(values.tolist())}
            out[[pos[v] for v in s.values.tolist()]] = s.counts
    return out
