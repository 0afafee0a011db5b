"""The drift methods by name, what each measures, and which one a column gets by default.

A method is either a **test** (its score is a p-value: drift when it is below the
threshold) or a **distance** (drift when the score reaches the threshold):

============== ==================== ========== =========
name           column kinds         measures   threshold
============== ==================== ========== =========
ks             numeric              p-value    0.05
chisquare      categorical          p-value    0.05
z              categorical          p-value    0.05
wasserstein    numeric              distance   0.1  (normed by the reference's std)
jensenshannon  numeric, categorical distance   0.1
psi            numeric, categorical distance   0.1
============== ==================== ========== =========

The default (Evidently's rule, so figures compare with it): a reference of at most 1,000
rows gets a test — KS for a numeric column, chi-square for a categorical one, the
proportion z-test when both samples hold two values or fewer; a larger reference gets a
distance — normed Wasserstein for a numeric column, Jensen–Shannon for a categorical
one. A numeric column with at most 5 distinct values (both samples) is compared as
categories.

A test alone flags negligible shifts on large windows, and a distance alone flags noise
on small ones, so a verdict needs both (:data:`COMPANIONS`): a distance must also be
significant (KS, or chi-square, p < 0.05), and a test must also show a practical effect
(normed Wasserstein, or Jensen–Shannon, at least 0.1). The second opinion is asked only
when the method itself says drift, so a quiet column costs one statistic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cd4ml.monitoring import stats
from cd4ml.monitoring.summary import ColumnSummary

__all__ = ["Method", "METHODS", "COMPANIONS", "default_method", "method_named",
           "SMALL_REFERENCE", "FEW_VALUES"]

#: A reference of at most this many rows gets a test by default, a larger one a distance.
SMALL_REFERENCE = 1000
#: A numeric column with at most this many distinct values is compared as categories.
FEW_VALUES = 5

Score = Callable[[ColumnSummary, ColumnSummary], tuple[float, float | None]]


@dataclass(frozen=True)
class Method:
    """A drift method: ``score(reference, current)`` gives (score, statistic); the score
    is a p-value (``measures == "p_value"``) or a distance."""

    name: str
    kinds: tuple[str, ...]
    measures: Literal["p_value", "distance"]
    threshold: float
    score: Score
    label: str

    def drifted(self, score: float, threshold: float | None = None) -> bool:
        t = self.threshold if threshold is None else threshold
        return score < t if self.measures == "p_value" else score >= t


def _ks(r: ColumnSummary, c: ColumnSummary) -> tuple[float, float | None]:
    d, p = stats.ks(r, c)
    return p, d


def _chi(r: ColumnSummary, c: ColumnSummary) -> tuple[float, float | None]:
    x, p = stats.chi_square(r, c)
    return p, x


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("ks", ("numeric",), "p_value", 0.05, _ks, "Kolmogorov–Smirnov p-value"),
    Method("chisquare", ("categorical",), "p_value", 0.05, _chi, "chi-square p-value"),
    Method("z", ("categorical",), "p_value", 0.05,
           lambda r, c: (stats.z_proportions(r, c), None), "proportion z-test p-value"),
    Method("wasserstein", ("numeric",), "distance", 0.1,
           lambda r, c: (stats.normed_wasserstein(r, c), stats.wasserstein(r, c)),
           "Wasserstein distance (normed)"),
    Method("jensenshannon", ("numeric", "categorical"), "distance", 0.1,
           lambda r, c: (stats.jensen_shannon(r, c), None), "Jensen–Shannon distance"),
    Method("psi", ("numeric", "categorical"), "distance", 0.1,
           lambda r, c: (stats.psi(r, c), None), "population stability index"),
)}

#: The second opinion a verdict needs: (significance for a distance, effect for a test),
#: by the kind the column is compared as.
COMPANIONS: dict[str, tuple[str, str]] = {"numeric": ("ks", "wasserstein"),
                                          "categorical": ("chisquare", "jensenshannon")}


def method_named(name: str, kind: str, *, column: str = "?") -> Method:
    """The method ``name`` for a column of ``kind``, or a ValueError naming both."""
    m = METHODS.get(name)
    if m is None:
        raise ValueError(f"drift method {name!r} (column {column!r}) is not known; expected "
                         f"one of {', '.join(METHODS)}")
    if kind not in m.kinds:
        raise ValueError(f"drift method {name!r} does not apply to the {kind} column "
                         f"{column!r}; it takes {' or '.join(m.kinds)} columns")
    return m


def distinct(ref: ColumnSummary, cur: ColumnSummary) -> int:
    """Distinct values of both samples together."""
    if ref.kind == "numeric":
        import numpy as np

        return len(np.union1d(ref.values, cur.values))
    return len(set(ref.values.tolist()) | set(cur.values.tolist()))


def compared_as(ref: ColumnSummary, cur: ColumnSummary) -> str:
    """The kind a column is compared as: a numeric one with few values as categories."""
    if ref.kind == "numeric" and distinct(ref, cur) <= FEW_VALUES:
        return "categorical"
    return ref.kind


def default_method(ref: ColumnSummary, cur: ColumnSummary) -> Method:
    """The method a column gets when its config names none (the rule in the module doc)."""
    kind = compared_as(ref, cur)
    if ref.n <= SMALL_REFERENCE:
        if kind == "numeric":
            return METHODS["ks"]
        return METHODS["z"] if distinct(ref, cur) <= 2 else METHODS["chisquare"]
    return METHODS["wasserstein"] if kind == "numeric" else METHODS["jensenshannon"]
