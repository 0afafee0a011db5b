"""Drift statistics of a current sample against a reference, both given as summaries.

Each function takes two :class:`~cd4ml.monitoring.summary.ColumnSummary` (reference,
current) and returns what SciPy returns on the rows themselves (the tests check it on
the real data within 1e-6):

- :func:`ks` — two-sample Kolmogorov–Smirnov statistic and p-value
  (``scipy.stats.ks_2samp``: exact up to 10,000 rows a side, Smirnov's asymptotic
  distribution above, as SciPy chooses);
- :func:`wasserstein` — first Wasserstein distance (``scipy.stats.wasserstein_distance``),
  and :func:`normed_wasserstein`, divided by the reference's standard deviation
  (at least 0.001, so a constant reference still compares);
- :func:`chi_square` — Pearson's chi-square of the current counts against the
  reference's proportions (``scipy.stats.chisquare``), over the reference's categories;
- :func:`jensen_shannon` — Jensen–Shannon distance, natural log
  (``scipy.spatial.distance.jensenshannon``) of the two distributions' shares;
- :func:`psi` — population stability index, sum of (r - c) ln(r / c) over shares;
- :func:`z_proportions` — two-proportion z-test of one category's share (binary columns).

Shares (for Jensen–Shannon and PSI) are per value when the reference has at most 20
distinct values or the column is categorical, and otherwise per bin of the Sturges rule
over both samples' range (as Evidently bins them, so the figures agree with its own).
"""

from __future__ import annotations

import math

import numpy as np

from cd4ml.monitoring.summary import ColumnSummary, align

__all__ = ["ks", "wasserstein", "normed_wasserstein", "chi_square", "jensen_shannon", "psi",
           "z_proportions", "proportions_test", "shares", "EXACT_KS_ROWS", "BIN_VALUES"]

#: Up to this many rows a side, the KS p-value is SciPy's exact one (as ``ks_2samp`` does).
EXACT_KS_ROWS = 10_000
#: A numeric reference with more distinct values than this is binned for shares.
BIN_VALUES = 20
#: The smallest standard deviation a normed Wasserstein distance divides by.
MIN_STD = 0.001


def _check(ref: ColumnSummary, cur: ColumnSummary) -> None:
    if ref.n == 0 or cur.n == 0:
        raise ValueError("a drift statistic needs at least one non-missing row on each side "
                         f"(reference has {ref.n}, current {cur.n})")


def ks(ref: ColumnSummary, cur: ColumnSummary) -> tuple[float, float]:
    """(statistic, p-value) of the two-sample KS test, two-sided."""
    from scipy import stats

    _check(ref, cur)
    n1, n2 = ref.n, cur.n
    if max(n1, n2) <= EXACT_KS_ROWS:  # small: SciPy's exact distribution on the rows
        r = stats.ks_2samp(ref.sample(), cur.sample())
        return float(r.statistic), float(r.pvalue)
    _, (a, b) = align(ref, cur)
    d = float(np.max(np.abs(np.cumsum(a) / n1 - np.cumsum(b) / n2)))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    p = float(stats.kstwo.sf(d, np.round(m * n / (m + n))))
    return d, min(max(p, 0.0), 1.0)


def wasserstein(ref: ColumnSummary, cur: ColumnSummary) -> float:
    """The area between the two empirical CDFs."""
    _check(ref, cur)
    values, (a, b) = align(ref, cur)
    if len(values) < 2:
        return 0.0
    diff = np.cumsum(a)[:-1] / ref.n - np.cumsum(b)[:-1] / cur.n
    return float(np.sum(np.abs(diff) * np.diff(values)))


def normed_wasserstein(ref: ColumnSummary, cur: ColumnSummary) -> float:
    """Wasserstein distance in units of the reference's standard deviation."""
    return wasserstein(ref, cur) / max(ref.std(), MIN_STD)


def chi_square(ref: ColumnSummary, cur: ColumnSummary) -> tuple[float, float]:
    """(statistic, p-value) of the current counts against the reference's shares.

    Categories the reference never saw are left out here (they have no expected count);
    the new-category rate reports them. With one category there is nothing to test:
    (0.0, 1.0).
    """
    from scipy import stats

    _check(ref, cur)
    values, (a, b) = align(ref, cur)
    seen = a > 0
    a, b = a[seen], b[seen]
    if len(a) < 2 or b.sum() == 0:
        return 0.0, 1.0
    expected = a * (b.sum() / a.sum())
    r = stats.chisquare(b, expected)
    return float(r.statistic), float(r.pvalue)


def shares(ref: ColumnSummary, cur: ColumnSummary) -> tuple[np.ndarray, np.ndarray]:
    """Each side's share of rows per value (or per Sturges bin of a numeric column with
    more than ``BIN_VALUES`` distinct reference values)."""
    _check(ref, cur)
    if ref.kind == "numeric" and len(ref.values) > BIN_VALUES:
        edges = _sturges_edges(ref, cur)
        a = np.histogram(ref.values, edges, weights=ref.counts)[0]
        b = np.histogram(cur.values, edges, weights=cur.counts)[0]
    else:
        _, (a, b) = align(ref, cur)
    return a / ref.n, b / cur.n


def _sturges_edges(ref: ColumnSummary, cur: ColumnSummary) -> np.ndarray:
    """``np.histogram_bin_edges(both samples, bins="sturges")`` from the summaries."""
    lo = float(min(ref.values[0], cur.values[0]))
    hi = float(max(ref.values[-1], cur.values[-1]))
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
        return np.linspace(lo, hi, 2)
    width = (hi - lo) / (math.log2(ref.n + cur.n) + 1.0)
    return np.linspace(lo, hi, int(np.ceil((hi - lo) / width)) + 1)


def jensen_shannon(ref: ColumnSummary, cur: ColumnSummary) -> float:
    """Jensen–Shannon distance (natural log) of the two distributions' shares."""
    from scipy.spatial import distance

    p, q = shares(ref, cur)
    return float(distance.jensenshannon(p, q))


def _fill_zeros(p: np.ndarray) -> np.ndarray:
    """Empty shares replaced by a small one, so a log ratio is defined (Evidently's rule:
    0.0001, or a millionth of the smallest share when that is smaller)."""
    smallest = p[p > 0].min()
    return np.where(p == 0, smallest / 1e6 if smallest <= 1e-4 else 1e-4, p)


def psi(ref: ColumnSummary, cur: ColumnSummary) -> float:
    """Population stability index of the two distributions' shares."""
    p, q = shares(ref, cur)
    p, q = _fill_zeros(p), _fill_zeros(q)
    return float(np.sum((p - q) * np.log(p / q)))


def proportions_test(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (``k`` successes of ``n``)."""
    from scipy import stats

    if n1 == 0 or n2 == 0:
        raise ValueError(f"a proportion test needs rows on both sides (got {n1} and {n2})")
    pooled = (k1 + k2) / (n1 + n2)
    if pooled in (0.0, 1.0):
        return 1.0
    z = (k1 / n1 - k2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return float(2 * stats.norm.sf(abs(z)))


def z_proportions(ref: ColumnSummary, cur: ColumnSummary) -> float:
    """p-value of the z-test of the first category's share (of the values of both,
    sorted), the test for a column with two values."""
    _check(ref, cur)
    _, (a, b) = align(ref, cur)
    return proportions_test(int(a[0]), ref.n, int(b[0]), cur.n)
