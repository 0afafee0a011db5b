"""Metrics of many groups under many row weightings at once, in plain numpy.

A metric set (:mod:`cd4ml.evaluation.tabular_metrics`) turns ``draws``, row indices of
shape ``(B, m)`` (one row per resample; the plain metric draws every row once), into
weights ``W`` of shape ``(B, units)`` over its units (rows, or cells of identical rows),
then returns ``(B, G)`` floats per metric, NaN where a metric is undefined for a group
and resample. Point estimates and bootstrap resamples so come from the same code. Sums go
through one ``bincount`` per resample, never a Python loop over rows.

>>> W = np.ones((1, 4)); codes = np.array([0, 0, 1, 1])
>>> sums(W, codes, 2, np.array([1.0, 2.0, 3.0, 5.0])).tolist()
[[3.0, 8.0]]
>>> counts(np.array([[0, 0, 3], [1, 2, 3]]), codes, 2).tolist()
[[2.0, 1.0], [1.0, 2.0]]
>>> r = Ranked(codes, 2, np.array([0.1, 0.9, 0.4, 0.4]), np.array([0, 1, 1, 0]))
>>> r.auc(r.split(W)).tolist()
[[1.0, 0.5]]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["sums", "counts", "ratio", "Ranked", "Split", "resamples", "CHUNK_ELEMENTS"]

#: a bootstrap chunk draws at most this many rows (B * n): a few tens of MB at most
CHUNK_ELEMENTS = 2_000_000


def sums(W: np.ndarray, key: np.ndarray, K: int, values: np.ndarray | None = None,
         ) -> np.ndarray:
    """``(B, K)``: per weighting, the sum of ``W * values`` over the units of each key."""
    out = np.empty((W.shape[0], K))
    for b, w in enumerate(W):  # one bincount per weighting (a resample), not per row
        out[b] = np.bincount(key, weights=w if values is None else w * values, minlength=K)
    return out


def counts(draws: np.ndarray, key: np.ndarray, K: int) -> np.ndarray:
    """``(B, K)``: per resample, how many drawn rows have each key."""
    out = np.empty((draws.shape[0], K))
    for b, d in enumerate(draws):
        out[b] = np.bincount(key[d], minlength=K)
    return out


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, NaN where ``den`` is 0."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64),
                                   np.asarray(den, dtype=np.float64))
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


@dataclass(frozen=True, slots=True)
class Split:
    """Weights of ranked units: positive and negative parts, and their running sums."""

    W: np.ndarray  #: the weights in ranked order
    P: np.ndarray  #: of positive units (0 elsewhere)
    N: np.ndarray  #: of negative units
    cP: np.ndarray  #: inclusive running sums along the ranked units
    cN: np.ndarray


class Ranked:
    """Units sorted by group, score and class once, for weighted ROC AUC and average precision.

    ``pos`` marks the positive units. Units with equal scores in a group form one block
    (ties count half in the AUC and form one threshold in the average precision, as in
    scikit-learn); in a block the negative units come first. Every group in ``0..G-1``
    must hold a unit. With ``presorted``, the units already are in that order,
    ``np.lexsort((pos, score, codes))``, and ``W`` is not reordered. Every statistic
    comes from the running sums of one :class:`Split`.
    """

    def __init__(self, codes: np.ndarray, G: int, score: np.ndarray, pos: np.ndarray, *,
                 presorted: bool = False):
        n = codes.size
        p = np.asarray(pos, dtype=np.float64)
        order = None if presorted else np.lexsort((p, score, codes))
        c = codes if order is None else codes[order]
        s = score if order is None else score[order]
        self.order, self.pos = order, p if order is None else p[order]
        new = np.ones(n, dtype=bool)
        new[1:] = (c[1:] != c[:-1]) | (s[1:] != s[:-1])
        block = np.cumsum(new) - 1
        starts = np.flatnonzero(new)
        ends = np.append(starts[1:], n)
        tied = (ends - starts) > 1  # blocks of 2 or more units: where ties need care
        self.tie_first, self.tie_end = starts[tied], ends[tied]
        self.tie_group = c[self.tie_first]
        in_tie = tied[block]
        self.tie_units = np.flatnonzero(in_tie)
        self.tie_units_first = starts[block[in_tie]]
        first = np.ones(n, dtype=bool)
        first[1:] = c[1:] != c[:-1]
        self.group_starts = np.flatnonzero(first)  # first unit of each group
        if self.group_starts.size != G or (n and c[-1] != G - 1):
            raise ValueError(f"codes hold {self.group_starts.size} groups, expected {G}")
        self.group_ends = np.append(self.group_starts[1:], n)  # one past the last unit
        self.codes, self.G = c, G

    def split(self, W: np.ndarray) -> Split:
        Ws = W if self.order is None else W[:, self.order]
        P = Ws * self.pos
        N = Ws - P
        return Split(Ws, P, N, np.cumsum(P, axis=1), np.cumsum(N, axis=1))

    @staticmethod
    def before(c: np.ndarray, units: np.ndarray) -> np.ndarray:
        """The running sum ``c`` just before each of ``units`` (0 before the first)."""
        out = np.zeros((c.shape[0], units.size))
        inside = units > 0
        out[:, inside] = c[:, units[inside] - 1]
        return out

    def _span(self, c: np.ndarray, first: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Sums over the units ``first[j] .. end[j] - 1`` from the running sums ``c``."""
        return self.before(c, end) - self.before(c, first)

    def totals(self, sp: Split) -> tuple[np.ndarray, np.ndarray]:
        """Positive and negative weight of each group, ``(B, G)`` each."""
        return (self._span(sp.cP, self.group_starts, self.group_ends),
                self._span(sp.cN, self.group_starts, self.group_ends))

    def auc(self, sp: Split) -> np.ndarray:
        """ROC AUC per group: P(score of a positive > a negative's), ties counting half."""
        Pg, Ng = self.totals(sp)
        # negatives come first in a block, so at a positive unit the running sum of the
        # negatives counts those with a lower or equal score (less the earlier groups')
        at_least = np.add.reduceat(sp.P * sp.cN, self.group_starts, axis=1)
        at_least -= self.before(sp.cN, self.group_starts) * Pg
        if self.tie_first.size:  # equal scores count half: less half the tied pairs
            tied = (self._span(sp.cP, self.tie_first, self.tie_end)
                    * self._span(sp.cN, self.tie_first, self.tie_end))
            at_least -= 0.5 * sums(tied, self.tie_group, self.G)
        return ratio(at_least, Pg * Ng)

    def average_precision(self, sp: Split) -> np.ndarray:
        """Average precision per group, ``sum_t (R_t - R_t-1) * P_t`` over score thresholds."""
        Pg, _ = self.totals(sp)
        # at a unit's block (its threshold) the units at or above it are those through the
        # end of its group less those before the block
        p_before, n_before = sp.cP - sp.P, sp.cN - sp.N
        if self.tie_units.size:
            p_before[:, self.tie_units] = p_before[:, self.tie_units_first]
            n_before[:, self.tie_units] = n_before[:, self.tie_units_first]
        tp = self.before(sp.cP, self.group_ends)[:, self.codes] - p_before
        fp = self.before(sp.cN, self.group_ends)[:, self.codes] - n_before
        precision = ratio(tp, tp + fp)
        contrib = np.where(sp.P > 0, sp.P * np.nan_to_num(precision), 0.0)
        return ratio(np.add.reduceat(contrib, self.group_starts, axis=1), Pg)


def resamples(n: int, count: int, seed: int) -> Iterator[np.ndarray]:
    """``count`` bootstrap draws of ``n`` rows from ``n`` with replacement, in chunks.

    Each chunk has shape ``(b, n)``: row ``r`` holds the indices drawn for one resample.
    Seeded: the same ``(n, count, seed)`` gives the same draws.

    >>> [d.shape for d in resamples(5, 3, seed=0)]
    [(3, 5)]
    """
    rng = np.random.default_rng(seed)
    per_chunk = max(1, CHUNK_ELEMENTS // max(n, 1))
    dtype = np.int32 if n < 2 ** 31 else np.int64
    done = 0
    while done < count:
        b = min(per_chunk, count - done)
        yield rng.integers(0, n, size=(b, n), dtype=dtype)
        done += b
