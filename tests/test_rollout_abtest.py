"""A/B comparison: Welch against SciPy on real rows, the mSPRT against its integral, its
validity under daily peeking (and the naive test's lack of it), power, recommendations,
and LightGBM vs logistic regression replayed on ACS 2017."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cd4ml.errors import ConfigError, DataError
from cd4ml.rollout.abtest import ArmStats, Sequential, compare, horizon, msprt, recommend, welch
from cd4ml.serving.sticky import arms_for

ROOT = Path(__file__).resolve().parents[1]
BLOCK, LOOKS, EXPERIMENTS = 200, 100, 500  # a look every 200 per arm, up to 20,000


def _tol(p: float, n: int) -> float:
    return 3 * math.sqrt(p * (1 - p) / n)


# -- Welch against SciPy -----------------------------------------------------------------

@pytest.fixture(scope="module")
def acs(acs_file: Path) -> pd.DataFrame:
    return pd.read_parquet(acs_file)


def _welch_pairs(df: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray]]:
    y17 = df[df.year == 2017]
    small = y17[y17.RAC1P == 6]  # a few thousand rows: a t distribution, not a normal
    return [(y17[y17.SEX == 1].AGEP.to_numpy(float), y17[y17.SEX == 2].AGEP.to_numpy(float)),
            (y17[y17.SEX == 1].employed.to_numpy(float),
             y17[y17.SEX == 2].employed.to_numpy(float)),
            (df[df.year == 2016].employed.to_numpy(float), y17.employed.to_numpy(float)),
            (small[small.SEX == 1].AGEP.to_numpy(float)[:300],
             small[small.SEX == 2].AGEP.to_numpy(float)[:40])]


def test_welch_equals_scipy_on_real_rows(acs: pd.DataFrame) -> None:
    from scipy import stats

    for a, b in _welch_pairs(acs):
        ref = stats.ttest_ind(b, a, equal_var=False)
        for alpha in (0.05, 0.01):
            ci = ref.confidence_interval(1 - alpha)
            for sa, sb in ((ArmStats.of(a), ArmStats.of(b)),
                           (ArmStats.from_sums(a.size, a.sum(), (a * a).sum()),
                            ArmStats.from_sums(b.size, b.sum(), (b * b).sum()))):
                w = welch(sa, sb, alpha=alpha)
                assert w.statistic == pytest.approx(ref.statistic, rel=1e-9, abs=1e-9)
                assert w.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-9)
                assert w.df == pytest.approx(ref.df, rel=1e-9)
                assert (w.ci_low, w.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9,
                                                              abs=1e-9)
                assert w.diff == pytest.approx(b.mean() - a.mean(), abs=1e-12)
        assert ArmStats.of(a).var == pytest.approx(np.var(a, ddof=1), rel=1e-12)


# -- the mSPRT against its definition ------------------------------------------------------

def test_msprt_equals_the_mixture_integral_and_its_confidence_sequence_inverts_it() -> None:
    """Λ = ∫ N(d; θ, V) / N(d; 0, V) N(θ; 0, τ²) dθ by SciPy's quadrature; the ends of the
    confidence sequence are the θ₀ where the test of θ₀ has Λ = 1/α exactly."""
    rng = np.random.default_rng(3)
    for n_a, n_b, p_a, p_b in ((400, 380, 0.10, 0.13), (5_000, 5_200, 0.30, 0.31)):
        a = ArmStats.of(rng.random(n_a) < p_a)
        b = ArmStats.of(rng.random(n_b) < p_b)
        s = msprt(a, b, tau=0.2, alpha=0.05)
        assert math.exp(s.log_lr) == pytest.approx(_mixture(s, 0.0), rel=1e-7)
        assert s.pvalue == pytest.approx(min(1.0, 1 / _mixture(s, 0.0)), rel=1e-7)
        for end in (s.ci_low, s.ci_high):
            assert _mixture(s, end) == pytest.approx(1 / 0.05, rel=1e-6)


def _mixture(s: Sequential, theta0: float) -> float:
    """The mixture likelihood ratio of the test of theta0, by numerical integration."""
    from scipy import integrate, stats

    d, sd_v, sd_t = s.diff - theta0, math.sqrt(s.variance), math.sqrt(s.tau2)

    def ratio(t: float) -> float:
        return stats.norm.pdf(d, t, sd_v) / stats.norm.pdf(d, 0, sd_v) * \
            stats.norm.pdf(t, 0, sd_t)

    return integrate.quad(ratio, -12 * sd_t, 12 * sd_t, points=[d], limit=200)[0]


def test_previous_looks_carry_the_running_minimum_and_intersection() -> None:
    rng = np.random.default_rng(5)
    ca = rng.binomial(BLOCK, 0.1, size=30).cumsum()
    cb = rng.binomial(BLOCK, 0.11, size=30).cumsum()
    n = BLOCK * np.arange(1, 31)
    whole = msprt(ArmStats.from_sums(n, ca, ca), ArmStats.from_sums(n, cb, cb))
    prev = None
    for i in range(30):
        prev = msprt(ArmStats.from_sums(n[i], ca[i], ca[i]),
                     ArmStats.from_sums(n[i], cb[i], cb[i]), previous=prev)
        assert prev.pvalue == pytest.approx(np.minimum.accumulate(whole.pvalue)[i], rel=1e-12)
        assert prev.ci_low == pytest.approx(np.maximum.accumulate(whole.ci_low)[i], rel=1e-12)
        assert prev.ci_high == pytest.approx(np.minimum.accumulate(whole.ci_high)[i],
                                             rel=1e-12)


# -- peeking: A/A false positives, power -------------------------------------------------

def _looks(p_a: float, p_b: float, seed: int, experiments: int = EXPERIMENTS):
    """Cumulative Bernoulli counts of both arms at every look (exactly distributed as
    per-request draws summed), as ArmStats of shape (experiments, looks)."""
    rng = np.random.default_rng(seed)
    ca = rng.binomial(BLOCK, p_a, size=(experiments, LOOKS)).cumsum(axis=1)
    cb = rng.binomial(BLOCK, p_b, size=(experiments, LOOKS)).cumsum(axis=1)
    n = np.broadcast_to(BLOCK * np.arange(1, LOOKS + 1), ca.shape)
    return ArmStats.from_sums(n, ca, ca), ArmStats.from_sums(n, cb, cb)


def test_aa_with_daily_peeking_msprt_holds_alpha_and_the_naive_test_does_not() -> None:
    a, b = _looks(0.1, 0.1, seed=0)
    seq, fixed = msprt(a, b), welch(a, b)
    fp_sequential = float((seq.pvalue <= 0.05).any(axis=1).mean())
    fp_naive = float((fixed.pvalue <= 0.05).any(axis=1).mean())  # stop at the first p < .05
    fp_once = float((fixed.pvalue[:, -1] <= 0.05).mean())  # Welch looked at once, at 20,000
    print(f"A/A, {EXPERIMENTS} experiments, a look every {BLOCK} to {BLOCK * LOOKS} per arm: "
          f"mSPRT {fp_sequential:.3f}, naive Welch with peeking {fp_naive:.3f}, "
          f"Welch once at the end {fp_once:.3f}")
    assert fp_sequential <= 0.05 + _tol(0.05, EXPERIMENTS)
    assert fp_naive > 0.2  # several times alpha
    assert abs(fp_once - 0.05) <= _tol(0.05, EXPERIMENTS)


def test_power_010_vs_012_declares_b_better_by_20000() -> None:
    a, b = _looks(0.10, 0.12, seed=1, experiments=200)
    seq = msprt(a, b)
    hit = (seq.pvalue <= 0.05) & (seq.diff > 0)
    wrong = (seq.pvalue <= 0.05) & (seq.diff < 0)
    power = float(hit.any(axis=1).mean())
    stops = BLOCK * (np.argmax(hit, axis=1)[hit.any(axis=1)] + 1)
    print(f"0.10 vs 0.12: B better in {power:.3f} of runs by 20,000 per arm; median stop at "
          f"{int(np.median(stops))} per arm")
    assert power >= 0.9
    assert not wrong.any()


# -- recommendations ---------------------------------------------------------------------

def _bern(n: int, k: int) -> ArmStats:
    return ArmStats.from_sums(n, k, k)


def test_recommendations() -> None:
    assert recommend(compare(_bern(20_000, 2_000), _bern(20_000, 2_400))).decision == \
        "B better"
    lower = compare(_bern(20_000, 2_000), _bern(20_000, 2_400), higher_is_better=False)
    assert recommend(lower).decision == "A better"
    early = recommend(compare(_bern(50, 5), _bern(50, 9)))
    assert (early.decision, early.more_per_arm) == ("keep collecting", 50)
    flat = compare(_bern(40_000, 4_000), _bern(40_000, 4_010))
    assert recommend(flat).decision == "keep collecting"
    assert recommend(flat, min_effect=0.01).decision == "no detectable difference"
    assert recommend(flat, max_n=40_000).decision == "no detectable difference"
    none = recommend(compare(_bern(500, 0), _bern(500, 0)))
    assert (none.decision, none.more_per_arm) == ("keep collecting", None)
    assert recommend(compare(_bern(500, 0), _bern(500, 0)), max_n=500).decision == \
        "no detectable difference"
    constant = compare(_bern(500, 0), _bern(500, 500))
    assert recommend(constant, method="fixed", horizon_n=500).decision == "B better"


def test_keep_collecting_says_roughly_how_many_more_and_the_guess_is_consistent() -> None:
    rec = recommend(compare(_bern(2_000, 200), _bern(2_000, 236)))
    assert rec.decision == "keep collecting"
    assert rec.more_per_arm is not None and 0 < rec.more_per_arm < 48_000
    n = 2_000 + rec.more_per_arm  # the same rates with that many: now decided
    later = recommend(compare(_bern(n, round(n * 0.1)), _bern(n, round(n * 0.118))))
    assert later.decision == "B better"


def test_fixed_horizon_decides_only_at_its_horizon_with_the_power_asked() -> None:
    """The horizon's power checked against the exact power of Welch's test (SciPy's
    noncentral t) and by seeded simulation."""
    from scipy import stats

    sd = math.sqrt((0.10 * 0.90 + 0.12 * 0.88) / 2)  # of the two arms' outcomes
    n = horizon(sd, 0.02, alpha=0.05, power=0.8)
    df, ncp = 2 * n - 2, 0.02 / (sd * math.sqrt(2 / n))
    crit = stats.t.ppf(0.975, df)
    exact = stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp)
    assert abs(exact - 0.8) < 0.001  # a normal approximation of the t test: close
    rng = np.random.default_rng(2)
    ka, kb = rng.binomial(n, 0.10, size=4_000), rng.binomial(n, 0.12, size=4_000)
    c = compare(ArmStats.from_sums(np.full(4_000, n), ka, ka),
                ArmStats.from_sums(np.full(4_000, n), kb, kb))
    assert abs(float((c.welch.pvalue <= 0.05).mean()) - 0.8) < _tol(0.8, 4_000) + 0.01
    before = recommend(compare(_bern(n - 1, 0), _bern(n - 1, n // 4)), method="fixed",
                       horizon_n=n)
    assert (before.decision, before.more_per_arm) == ("keep collecting", 1)
    at = recommend(compare(_bern(n, round(0.1 * n)), _bern(n, round(0.125 * n))),
                   method="fixed", horizon_n=n)
    assert at.decision == "B better"


def test_bad_input_is_refused_naming_it() -> None:
    with pytest.raises(DataError, match=r"outcomes of arm B: row 2 = nan \(1 such\): "
                                        r"expected finite numbers"):
        ArmStats.of([0.1, 0.2, float("nan")], arm="B")
    a = _bern(1_000, 100)
    with pytest.raises(ConfigError, match=r"alpha = 1.5: must be in \(0, 1\)"):
        compare(a, a, alpha=1.5)
    with pytest.raises(ConfigError, match=r"tau = 0: must be > 0"):
        msprt(a, a, tau=0)
    with pytest.raises(ConfigError, match=r"method = 'bayes': expected 'sequential' or"):
        recommend(compare(a, a), method="bayes")
    with pytest.raises(ConfigError, match=r"horizon_n = None: the fixed test needs"):
        recommend(compare(a, a), method="fixed")
    with pytest.raises(ConfigError, match=r"min_effect = -0.1: must be >= 0"):
        recommend(compare(a, a), min_effect=-0.1)
    many = ArmStats.from_sums(np.full(3, 100), np.full(3, 10), np.full(3, 10))
    with pytest.raises(ConfigError, match=r"comparison = 'arrays of shape \(3,\)'"):
        recommend(compare(many, many))


# -- real data: LightGBM vs logistic regression on ACS 2017 ----------------------------

@pytest.fixture(scope="module")
def acs_outcomes(acs: pd.DataFrame) -> dict[str, np.ndarray]:
    """LightGBM and a logistic regression fitted on 2015 with the employment example's
    inputs and label, their per-row log loss and correctness at 0.5 on 2017."""
    import lightgbm as lgb
    import yaml
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cfg = yaml.safe_load((ROOT / "examples" / "employment" / "cd4ml.yaml").read_text())
    target, row_id = cfg["data"]["target"], cfg["data"]["id"]
    inputs = [c for c in acs.columns if c not in {target, row_id, *cfg["inputs"]["drop"]}]
    train, test = acs[acs.year == 2015], acs[acs.year == 2017]
    params = {k: v for k, v in cfg["models"]["candidates"][0]["params"].items()
              if k != "categorical"}
    params.update(n_estimators=100, learning_rate=0.15)  # the example's trees, fewer: faster
    boosted = lgb.LGBMClassifier(**params, random_state=0, n_jobs=2, verbose=-1)
    boosted.fit(train[inputs], train[target])
    codes = [c for c in inputs if c != "AGEP"]  # PUMS codes one-hot, age scaled
    linear = make_pipeline(ColumnTransformer([("age", StandardScaler(), ["AGEP"]),
                                              ("codes", OneHotEncoder(handle_unknown="ignore"),
                                               codes)]),
                           LogisticRegression(max_iter=2_000))
    linear.fit(train[inputs], train[target])
    y = test[target].to_numpy()
    out: dict[str, np.ndarray] = {"id": test[row_id].astype(str).to_numpy()}
    for name, model in (("lightgbm", boosted), ("logistic", linear)):
        p = np.clip(model.predict_proba(test[inputs])[:, 1], 1e-15, 1 - 1e-15)
        out[f"{name}_logloss"] = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        out[f"{name}_correct"] = ((p >= 0.5) == (y == 1)).astype(float)
        assert out[f"{name}_logloss"].mean() == pytest.approx(log_loss(y, p), rel=1e-9)
        assert out[f"{name}_correct"].mean() == pytest.approx(accuracy_score(y, p >= 0.5))
    return out


def _arms(ids: np.ndarray, salt: str) -> np.ndarray:
    return np.asarray(arms_for(ids.tolist(), {"A": 0.5, "B": 0.5}, salt))


def test_acs_replay_declares_lightgbm_better(acs_outcomes: dict[str, np.ndarray]) -> None:
    arm = _arms(acs_outcomes["id"], "acs-2017-ab")
    for outcome, higher in (("logloss", False), ("correct", True)):
        c = compare(ArmStats.of(acs_outcomes[f"lightgbm_{outcome}"][arm == "A"], arm="A"),
                    ArmStats.of(acs_outcomes[f"logistic_{outcome}"][arm == "B"], arm="B"),
                    higher_is_better=higher)
        print(f"ACS 2017 {outcome}: LightGBM (A, n={c.a.n}) {c.a.mean:.4f}, logistic (B, "
              f"n={c.b.n}) {c.b.mean:.4f}; B - A {c.diff:.4f} ({c.relative:+.1%}), Welch p "
              f"{c.welch.pvalue:.2g} CI [{c.welch.ci_low:.4f}, {c.welch.ci_high:.4f}], mSPRT "
              f"p {c.sequential.pvalue:.2g} CS [{c.sequential.ci_low:.4f}, "
              f"{c.sequential.ci_high:.4f}]")
        assert c.welch.pvalue < 0.05 and c.sequential.pvalue < 0.05
        assert recommend(c, min_effect=0.02).decision == "A better"
        assert recommend(c, method="fixed", horizon_n=30_000).decision == "A better"


def test_acs_aa_replay_declares_no_winner(acs_outcomes: dict[str, np.ndarray]) -> None:
    decisions, welch_hits = [], 0
    for seed in range(20):
        arm = _arms(acs_outcomes["id"], f"acs-2017-aa-{seed}")
        c = compare(ArmStats.of(acs_outcomes["lightgbm_logloss"][arm == "A"]),
                    ArmStats.of(acs_outcomes["lightgbm_logloss"][arm == "B"]),
                    higher_is_better=False)
        decisions.append(recommend(c, min_effect=0.02).decision)
        welch_hits += c.welch.pvalue < 0.05
    print(f"ACS 2017 A/A, 20 salts: {decisions.count('no detectable difference')} no "
          f"detectable difference, {decisions.count('keep collecting')} keep collecting; "
          f"Welch p < 0.05 in {welch_hits}")
    assert sum(d not in ("A better", "B better") for d in decisions) >= 19
