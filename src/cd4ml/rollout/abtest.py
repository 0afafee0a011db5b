"""Two arms of an A/B test compared on per-request outcomes, and when to stop.

Outcomes are numbers per request (a click 0/1, a log loss, a revenue); ``higher_is_better``
says which way is good. Arm A is the control, B the candidate; every effect is B − A.

- :class:`ArmStats` — n, mean and variance (ddof 1) of an arm, from its outcomes or from
  the running sums (n, Σx, Σx²) a store keeps; fields may be arrays of one shape, to
  compare many simulated experiments at once;
- :func:`welch` — the fixed-horizon test: Welch's t statistic, p-value and confidence
  interval of the difference of means (equal to ``scipy.stats.ttest_ind(b, a,
  equal_var=False)``). Valid only when looked at once, at a sample size fixed up front
  (:func:`horizon`): looking every day and stopping at the first p < 0.05 inflates the
  false-positive rate many times over (the tests show it);
- :func:`msprt` — the always-valid test: the mixture sequential probability ratio test
  of Johari, Pekelis and Walsh ("Always valid inference: continuous monitoring of A/B
  tests", Operations Research 2022; Johari et al., KDD 2017). The difference of means is
  taken as normal, d ~ N(θ, V) with V = s²_A/n_A + s²_B/n_B (the plug-in variances;
  large-sample), and the likelihood ratio of θ against 0 is mixed over θ ~ N(0, τ²):

      Λ = sqrt(V / (V + τ²)) · exp(d² τ² / (2 V (V + τ²)))

  Under θ = 0 it is a martingale, so P(Λ ever ≥ 1/α) ≤ α: the p-value min(1, 1/Λ) (its
  running minimum over looks, with ``previous``) and the confidence sequence
  d ± sqrt(V (V + τ²) / τ² · (ln((V + τ²) / V) − 2 ln α)) (intersected over looks) may
  be read after every request. τ is given in standard deviations of the outcome
  (τ² = tau² · (s²_A + s²_B) / 2, scale-free; default 0.1): the test is most sensitive
  to effects of about that size. Plugging in estimated variances and assuming the arms
  fill at a steady ratio make the guarantee approximate: on 500 seeded A/A tests of
  Bernoulli(0.1) looked at every 200 requests per arm up to 20,000, 2.6 % were
  declared, against 37 % for Welch's test read at every look (tests);
- :func:`compare` — both tests and the effect (absolute and relative to A);
- :func:`recommend` — "keep collecting" (with a rough count of how many more per arm),
  "B better", "A better" or "no detectable difference".

>>> a = ArmStats.from_sums(20_000, 2_000, 2_000)   # 10.0 % of 20,000 converted
>>> b = ArmStats.from_sums(20_000, 2_400, 2_400)   # 12.0 %
>>> c = compare(a, b)
>>> round(c.diff, 4), round(c.relative, 3), c.welch.pvalue < 1e-9, c.sequential.pvalue < 1e-6
(0.02, 0.2, True, True)
>>> recommend(c).decision
'B better'
>>> recommend(compare(ArmStats.from_sums(500, 50, 50), ArmStats.from_sums(500, 55, 55))).decision
'keep collecting'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cd4ml.errors import ConfigError, DataError

__all__ = ["ArmStats", "Welch", "Sequential", "Comparison", "Recommendation", "welch",
           "msprt", "compare", "recommend", "horizon", "DECISIONS", "DEFAULT_TAU",
           "DEFAULT_MIN_N", "DEFAULT_MAX_N"]

#: The mixing distribution's standard deviation, in standard deviations of the outcome.
DEFAULT_TAU = 0.1
#: Outcomes per arm before anything is decided (the normal approximation needs some).
DEFAULT_MIN_N = 100
#: Outcomes per arm after which no evidence means "no detectable difference".
DEFAULT_MAX_N = 50_000
KEEP, B_BETTER, A_BETTER, NO_DIFFERENCE = ("keep collecting", "B better", "A better",
                                           "no detectable difference")
DECISIONS = (KEEP, B_BETTER, A_BETTER, NO_DIFFERENCE)

Num = Any  # a float, or an array of floats of one shape


def _check(name: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(expected, key=name, value=value)


def _alpha(alpha: float) -> None:
    _check("alpha", alpha, isinstance(alpha, (int, float)) and 0 < alpha < 1,
           "must be in (0, 1)")


@dataclass(frozen=True)
class ArmStats:
    """An arm's outcomes summarised: count, mean, variance (ddof 1; nan below 2)."""

    n: Num
    mean: Num
    var: Num

    @classmethod
    def of(cls, values: Any, *, arm: str = "A") -> ArmStats:
        """From the outcomes themselves; a missing or infinite one is refused."""
        x = np.asarray(values, dtype=float).ravel()
        bad = np.flatnonzero(~np.isfinite(x))
        if bad.size:
            raise DataError(f"outcomes of arm {arm}: row {bad[0]} = {float(x[bad[0]])!r} "
                            f"({bad.size} such): expected finite numbers (drop requests "
                            "without feedback first)")
        n = x.size
        return cls(n, float(x.mean()) if n else math.nan,
                   float(x.var(ddof=1)) if n > 1 else math.nan)

    @classmethod
    def from_sums(cls, n: Num, total: Num, total_sq: Num) -> ArmStats:
        """From the running sums n, Σx, Σx² (for 0/1 outcomes Σx² = Σx)."""
        n, s, ss = (np.asarray(v, dtype=float) for v in (n, total, total_sq))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s / n
            var = np.maximum(ss - s * mean, 0.0) / (n - 1)
            var = np.where(n > 1, var, np.nan)
        if n.ndim == 0:
            return cls(int(n), float(mean), float(var))
        return cls(n, mean, var)

    @property
    def sd(self) -> Num:
        return np.sqrt(self.var)


@dataclass(frozen=True)
class Welch:
    """Welch's test of B − A: nan where an arm has < 2 outcomes or neither varies."""

    diff: Num
    se: Num
    df: Num
    statistic: Num
    pvalue: Num
    ci_low: Num
    ci_high: Num
    alpha: float


def welch(a: ArmStats, b: ArmStats, *, alpha: float = 0.05) -> Welch:
    """Welch's unequal-variance t-test and its (1 − alpha) confidence interval."""
    from scipy import stats

    _alpha(alpha)
    with np.errstate(invalid="ignore", divide="ignore"):
        ua, ub = np.divide(a.var, a.n), np.divide(b.var, b.n)
        diff = np.subtract(b.mean, a.mean)
        se = np.sqrt(ua + ub)
        df = (ua + ub) ** 2 / (ua ** 2 / np.subtract(a.n, 1) + ub ** 2 / np.subtract(b.n, 1))
        t = diff / se
        p = 2 * stats.t.sf(np.abs(t), df)
        half = stats.t.ppf(1 - alpha / 2, df) * se
    return Welch(*(_out(v) for v in (diff, se, df, t, p, diff - half, diff + half)), alpha)


@dataclass(frozen=True)
class Sequential:
    """The mSPRT of B − A at this look (``pvalue``, ``ci_*``: over every look so far)."""

    diff: Num
    variance: Num  #: V, the variance of the difference of means
    tau2: Num  #: the mixing variance, in outcome units squared
    log_lr: Num  #: ln Λ at this look
    pvalue: Num
    ci_low: Num
    ci_high: Num
    alpha: float


def _log_lr(diff: Num, v: Num, tau2: Num) -> Num:
    return 0.5 * np.log(v / (v + tau2)) + diff ** 2 * tau2 / (2 * v * (v + tau2))


def _half_width(v: Num, tau2: Num, alpha: float) -> Num:
    return np.sqrt(v * (v + tau2) / tau2 * (np.log((v + tau2) / v) - 2 * math.log(alpha)))


def msprt(a: ArmStats, b: ArmStats, *, tau: float = DEFAULT_TAU, alpha: float = 0.05,
          previous: Sequential | None = None) -> Sequential:
    """The always-valid p-value and confidence sequence of B − A; ``previous`` (the
    result at the last look) carries the running minimum and intersection."""
    _alpha(alpha)
    _check("tau", tau, isinstance(tau, (int, float)) and 0 < tau < math.inf,
           "must be > 0 (standard deviations of the outcome)")
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        v = np.divide(a.var, a.n) + np.divide(b.var, b.n)
        tau2 = tau ** 2 * (np.add(a.var, b.var) / 2)
        diff = np.subtract(b.mean, a.mean)
        log_lr = _log_lr(diff, v, tau2)
        p = np.minimum(1.0, np.exp(-log_lr))
        half = _half_width(v, tau2, alpha)
        lo, hi = diff - half, diff + half
        if previous is not None:  # nan (no variation yet) does not reset the running values
            p = np.fmin(p, previous.pvalue)
            lo, hi = np.fmax(lo, previous.ci_low), np.fmin(hi, previous.ci_high)
    return Sequential(*(_out(x) for x in (diff, v, tau2, log_lr, p, lo, hi)), alpha)


def _out(x: Num) -> Num:
    return float(x) if np.ndim(x) == 0 else np.asarray(x)


def horizon(sd: float, min_effect: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Outcomes per arm for a fixed-horizon test to detect ``min_effect`` (outcome units)
    with ``power`` at two-sided ``alpha``, the outcome's sd being ``sd`` in both arms:
    2 (z_{1−α/2} + z_power)² sd² / min_effect².

    >>> horizon(0.3, 0.02)   # 10 % vs 12 % conversions, roughly
    3532
    """
    from scipy import stats

    _alpha(alpha)
    _check("power", power, isinstance(power, (int, float)) and 0 < power < 1,
           "must be in (0, 1)")
    _check("sd", sd, isinstance(sd, (int, float)) and 0 < sd < math.inf, "must be > 0")
    _check("min_effect", min_effect,
           isinstance(min_effect, (int, float)) and 0 < min_effect < math.inf, "must be > 0")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return math.ceil(2 * (z * sd / min_effect) ** 2)


@dataclass(frozen=True)
class Comparison:
    a: ArmStats
    b: ArmStats
    higher_is_better: bool
    diff: Num  #: mean B − mean A
    relative: Num  #: diff / mean A (nan when mean A is 0)
    welch: Welch
    sequential: Sequential


def compare(a: ArmStats, b: ArmStats, *, higher_is_better: bool = True,
            alpha: float = 0.05, tau: float = DEFAULT_TAU,
            previous: Sequential | None = None) -> Comparison:
    """The effect of B over A with both tests (``previous``: see :func:`msprt`)."""
    _check("higher_is_better", higher_is_better, isinstance(higher_is_better, bool),
           "expected true or false")
    diff = _out(np.subtract(b.mean, a.mean))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = _out(np.where(np.asarray(a.mean) != 0, diff / np.asarray(a.mean), np.nan))
    return Comparison(a, b, higher_is_better, diff, rel, welch(a, b, alpha=alpha),
                      msprt(a, b, tau=tau, alpha=alpha, previous=previous))


@dataclass(frozen=True)
class Recommendation:
    decision: str  #: one of DECISIONS
    reason: str
    #: for "keep collecting": roughly how many more outcomes per arm (None: unknown)
    more_per_arm: int | None
    comparison: Comparison


def _winner(c: Comparison) -> str:
    better = c.diff > 0 if c.higher_is_better else c.diff < 0
    return B_BETTER if better else A_BETTER


def _constant(c: Comparison) -> Recommendation:
    """At the end, outcomes that never varied in either arm: their means decide."""
    why = f"outcomes constant in both arms (A {c.a.mean:g}, B {c.b.mean:g})"
    return Recommendation(NO_DIFFERENCE if c.diff == 0 else _winner(c), why, None, c)


def _more(c: Comparison, n: int, min_effect: float, max_n: int) -> int:
    """Outcomes per arm until a decision if the current estimates (effect, variances)
    held and both arms grew at their current ratio: where Λ reaches 1/α, or where the
    confidence sequence fits inside ±min_effect; at most until max_n."""
    s = c.sequential
    k = np.geomspace(1.0, max(max_n / n, 1.0), 4000)[1:]  # n grows to n·k
    v = s.variance / k
    ok = _log_lr(s.diff, v, s.tau2) >= -math.log(s.alpha)
    if abs(s.diff) < min_effect:
        ok |= _half_width(v, s.tau2, s.alpha) <= min_effect - abs(s.diff)
    first = int(np.argmax(ok)) if ok.any() else len(k) - 1
    return max(1, min(math.ceil(n * k[first]) - n, max_n - n))


def recommend(c: Comparison, *, min_effect: float = 0.0, min_n: int = DEFAULT_MIN_N,
              max_n: int = DEFAULT_MAX_N, method: str = "sequential",
              horizon_n: int | None = None) -> Recommendation:
    """What to do now, on the ``"sequential"`` test (may be asked after every look) or on
    the ``"fixed"`` one (decides only once both arms have ``horizon_n`` outcomes, from
    :func:`horizon`). Sequentially: a p-value ≤ alpha names the better arm; a confidence
    sequence inside ±``min_effect`` (outcome units; 0: never), or ``max_n`` outcomes per
    arm without evidence, is "no detectable difference"; before ``min_n`` per arm nothing
    is decided."""
    if np.ndim(c.diff) != 0:
        raise ConfigError("recommend() takes one comparison, not arrays of them",
                          key="comparison", value=f"arrays of shape {np.shape(c.diff)}")
    _check("min_effect", min_effect, isinstance(min_effect, (int, float))
           and 0 <= min_effect < math.inf, "must be >= 0 (outcome units)")
    _check("min_n", min_n, isinstance(min_n, int) and min_n >= 2, "must be an integer >= 2")
    _check("max_n", max_n, isinstance(max_n, int) and max_n > min_n,
           f"must be an integer > min_n ({min_n})")
    _check("method", method, method in ("sequential", "fixed"),
           "expected 'sequential' or 'fixed'")
    n = int(min(c.a.n, c.b.n))
    if method == "fixed":
        _check("horizon_n", horizon_n, isinstance(horizon_n, int) and horizon_n >= 2,
               "the fixed test needs its horizon, outcomes per arm (see horizon())")
        assert horizon_n is not None
        if n < horizon_n:
            return Recommendation(KEEP, f"the fixed test decides at {horizon_n} per arm; "
                                  f"{n} so far", horizon_n - n, c)
        w = c.welch
        if not math.isfinite(w.pvalue):
            return _constant(c)
        if w.pvalue <= w.alpha:
            return Recommendation(_winner(c), f"Welch p = {w.pvalue:.3g} at the horizon",
                                  None, c)
        return Recommendation(NO_DIFFERENCE, f"Welch p = {w.pvalue:.3g} > {w.alpha} at "
                              "the horizon", None, c)
    if n < min_n:
        return Recommendation(KEEP, f"{n} outcomes in the smaller arm, fewer than min_n "
                              f"= {min_n}", min_n - n, c)
    s = c.sequential
    if not math.isfinite(s.pvalue):
        if n >= max_n:
            return _constant(c)
        return Recommendation(KEEP, "no variation in the outcomes yet", None, c)
    if s.pvalue <= s.alpha:
        return Recommendation(_winner(c), f"always-valid p = {s.pvalue:.3g} <= {s.alpha}; "
                              f"B - A in [{s.ci_low:.4g}, {s.ci_high:.4g}]", None, c)
    if min_effect > 0 and -min_effect < s.ci_low and s.ci_high < min_effect:
        return Recommendation(NO_DIFFERENCE, f"B - A in [{s.ci_low:.4g}, {s.ci_high:.4g}],"
                              f" inside +-{min_effect:g}", None, c)
    if n >= max_n:
        return Recommendation(NO_DIFFERENCE, f"max_n = {max_n} per arm reached with "
                              f"always-valid p = {s.pvalue:.3g}", None, c)
    return Recommendation(KEEP, f"always-valid p = {s.pvalue:.3g} > {s.alpha}; the count is "
                          "a rough guess, as if the current estimates held",
                          _more(c, n, min_effect, max_n), c)
