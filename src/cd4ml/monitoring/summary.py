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
            return cls._numeric(s)
        if kind != "categorical":
            raise ValueError(f"kind == {kind!r}, expected one of {', '.join(KINDS)}")
        if isinstance(s.dtype, pd.CategoricalDtype):  # counted from its codes
            codes = s.cat.codes.to_numpy()
            seen = codes >= 0
            missing = int(len(codes) - seen.sum())
            counts = np.bincount(codes[seen] if missing else codes,
                                 minlength=len(s.cat.categories)).astype(np.int64)
            used = counts > 0  # a category dtype lists unused categories too
            labels, counts = _labels(s.cat.categories[used]), counts[used]
        else:
            missing = int(s.isna().sum())
            vc = s.value_counts(dropna=True, sort=False)
            labels = _labels(vc.index)
            counts = vc.to_numpy(dtype=np.int64)
        if len(set(labels.tolist())) < len(labels):  # 1 and "1" in one column: one label
            merged = pd.Series(counts).groupby(labels).sum()
            labels, counts = merged.index.to_numpy(dtype=object), merged.to_numpy(np.int64)
        order = np.argsort(labels.astype(str), kind="stable")
        return cls(kind, labels[order], counts[order], missing)

    @classmethod
    def _numeric(cls, s: pd.Series) -> ColumnSummary:
        """Distinct values counted by Arrow's hash kernel (2-3x pandas' on millions of
        rows, measured in benchmarks/monitoring_vs_peers.py), then sorted."""
        import pyarrow as pa
        import pyarrow.compute as pc

        s = pd.to_numeric(s, errors="coerce") if s.dtype == object else s
        arr = (s.to_numpy() if s.dtype == np.float64
               else s.to_numpy(dtype=np.float64, na_value=np.nan))
        finite = np.isfinite(arr)
        n_finite = int(finite.sum())
        # + 0.0 makes -0.0 into 0.0: one value, as == (and SciPy) sees them
        vals = (arr if n_finite == len(arr) else arr[finite]) + 0.0
        vc = pc.value_counts(pa.array(vals, type=pa.float64()))
        values = vc.field("values").to_numpy(zero_copy_only=False)
        counts = vc.field("counts").to_numpy(zero_copy_only=False).astype(np.int64)
        order = np.argsort(values, kind="stable")
        return cls("numeric", values[order], counts[order], len(arr) - n_finite)

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


def _labels(index: pd.Index) -> np.ndarray:
    """Every value's label (:func:`_label`), a whole array at a time where the values are
    all integers or all text."""
    vals = np.asarray(index)
    if vals.dtype.kind in "iu":
        return vals.astype(str).astype(object)
    if vals.dtype.kind == "O" and pd.api.types.infer_dtype(vals, skipna=False) == "string":
        return vals.astype(object)
    return np.array([_label(v) for v in vals.tolist()], dtype=object)


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
