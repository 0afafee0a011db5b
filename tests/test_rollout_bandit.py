"""Bandits: Thompson beats ε-greedy on 0.10 vs 0.12, runs are reproducible, the posterior
matches SciPy's, the state round-trips through JSON, bad rewards are refused."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cd4ml.errors import ConfigError, DataError, RequestError
from cd4ml.rollout.bandit import (MIN_PULLS, BanditState, EpsilonGreedy, ThompsonSampling,
                                  simulate)

MEANS = {"v1": 0.10, "v2": 0.12}
SEEDS = list(range(20))


@pytest.fixture(scope="module")
def runs() -> dict[str, object]:
    return {name: simulate(policy, MEANS, 10_000, SEEDS)
            for name, policy in (("thompson", ThompsonSampling()),
                                 ("epsilon", EpsilonGreedy(epsilon=0.1)))}


def test_thompson_regrets_less_than_epsilon_greedy_and_both_find_the_better_arm(
        runs: dict[str, object]) -> None:
    regret = {k: float(v.cumulative_regret[:, -1].mean()) for k, v in runs.items()}
    late = {k: float((v.chosen[:, -1_000:] == 1).mean()) for k, v in runs.items()}
    print(f"0.10 vs 0.12, 10,000 steps, mean over 20 seeds: cumulative regret {regret}; "
          f"share of the better arm in the last 1,000 steps {late}")
    assert regret["thompson"] < regret["epsilon"]
    assert late["thompson"] > 0.5 and late["epsilon"] > 0.5


def test_a_run_is_reproducible_and_depends_on_its_own_seed_only(
        runs: dict[str, object]) -> None:
    again = simulate(ThompsonSampling(), MEANS, 10_000, [3, 7])
    np.testing.assert_array_equal(again.chosen, runs["thompson"].chosen[[3, 7]])
    np.testing.assert_array_equal(again.regret, runs["thompson"].regret[[3, 7]])
    alone = simulate(EpsilonGreedy(epsilon=0.1), MEANS, 10_000, 5)
    np.testing.assert_array_equal(alone.chosen[0], runs["epsilon"].chosen[5])


@pytest.mark.parametrize("policy", [ThompsonSampling(), EpsilonGreedy(epsilon=0.2)])
def test_simulate_is_choose_and_update_in_a_loop(policy: object) -> None:
    """One decision code: the simulator's run equals choose/update on the same streams."""
    sim = simulate(policy, MEANS, 500, 11)
    decide, reward = (np.random.default_rng(c) for c in np.random.SeedSequence(11).spawn(2))
    state = policy.start(MEANS)
    arms = []
    for _ in range(500):
        arm = policy.choose(state, decide)
        state = policy.update(state, arm, float(reward.random() < MEANS[arm]))
        arms.append(list(MEANS).index(arm))
    np.testing.assert_array_equal(sim.chosen[0], arms)
    assert sum(state.pulls) == 500


def test_thompson_shares_match_scipy_posteriors() -> None:
    """P(arm is best) by the policy's draws against SciPy's integral of the posteriors:
    Beta for binary rewards, Student t for continuous ones."""
    from scipy import integrate, stats

    draws = 100_000
    state = BanditState(("a", "b"), (40, 50), (5.0, 9.0), (5.0, 9.0))
    got = ThompsonSampling().shares(state, draws=draws)
    pa, pb = stats.beta(1 + 5, 1 + 35), stats.beta(1 + 9, 1 + 41)
    ref = integrate.quad(lambda x: pb.pdf(x) * pa.cdf(x), 0, 1)[0]  # P(b > a)
    assert abs(got["b"] - ref) < 4 * math.sqrt(ref * (1 - ref) / draws)

    rng = np.random.default_rng(4)
    xa, xb = rng.normal(1.0, 2.0, 12), rng.normal(1.8, 1.0, 8)
    state = BanditState(("a", "b"), (12, 8), (xa.sum(), xb.sum()),
                        ((xa ** 2).sum(), (xb ** 2).sum()))
    got = ThompsonSampling(reward="continuous").shares(state, draws=draws)

    def post(x: np.ndarray):  # flat prior in (mu, sigma^2): t with n - 3 degrees of freedom
        n, s = x.size, ((x - x.mean()) ** 2).sum()
        return stats.t(n - 3, loc=x.mean(), scale=math.sqrt(s / (n * (n - 3))))

    ta, tb = post(xa), post(xb)
    ref = integrate.quad(lambda m: tb.pdf(m) * ta.cdf(m), -np.inf, np.inf)[0]
    assert abs(got["b"] - ref) < 4 * math.sqrt(ref * (1 - ref) / draws)


def test_epsilon_greedy_shares_are_what_choose_does() -> None:
    policy = EpsilonGreedy(epsilon=0.3)
    state = BanditState(("a", "b", "c"), (10, 10, 10), (2.0, 5.0, 5.0), (2.0, 5.0, 5.0))
    shares = policy.shares(state)
    assert shares == {"a": 0.1, "b": 0.45, "c": 0.45}
    rng = np.random.default_rng(0)
    picks = [policy.choose(state, rng) for _ in range(20_000)]
    for arm, p in shares.items():
        assert abs(picks.count(arm) / 20_000 - p) < 4 * math.sqrt(p * (1 - p) / 20_000)


def test_continuous_rewards_three_arms() -> None:
    means = {"a": 0.0, "b": 0.3, "c": 0.15}
    ts = simulate(ThompsonSampling(reward="continuous"), means, 3_000, range(10),
                  kind="gaussian")
    eg = simulate(EpsilonGreedy(epsilon=0.1, reward="continuous"), means, 3_000, range(10),
                  kind="gaussian")
    assert (ts.chosen[:, :MIN_PULLS * 3] >= 0).all()
    assert np.bincount(ts.chosen[:, :MIN_PULLS * 3].ravel(), minlength=3).tolist() == \
        [MIN_PULLS * 10] * 3  # each arm tried MIN_PULLS times first
    assert float((ts.chosen[:, -500:] == 1).mean()) > 0.5
    assert ts.cumulative_regret[:, -1].mean() < eg.cumulative_regret[:, -1].mean()


def test_state_round_trips_through_json() -> None:
    policy = ThompsonSampling(reward="continuous")
    state = policy.start(["v1", "v2", "v3"])
    for arm, r in (("v1", 2.5), ("v3", -1.0), ("v1", 0.25)):
        state = policy.update(state, arm, r)
    text = json.dumps(state.to_dict(), allow_nan=False)
    assert BanditState.from_dict(json.loads(text)) == state
    assert state.to_dict()["arms"]["v1"] == {"pulls": 2, "sum": 2.75, "sum_sq": 6.3125}


@pytest.mark.parametrize("record, match", [
    ({"arms": {"a": {"pulls": -1, "sum": 0, "sum_sq": 0}, "b": {"pulls": 0, "sum": 0,
                                                              "sum_sq": 0}}},
     r"arms.a.pulls = -1: expected an integer >= 0"),
    ({"arms": {"a": {"pulls": 1, "sum": float("nan"), "sum_sq": 0},
               "b": {"pulls": 0, "sum": 0, "sum_sq": 0}}},
     r"arms.a.sum = nan: expected a finite number"),
    ({"arms": {"a": {"pulls": 1}}}, r"arms.a = \{'pulls': 1\}: expected pulls, sum, sum_sq"),
    ({"bandit": 1}, r"bandit state = \{'bandit': 1\}: expected"),
])
def test_a_malformed_state_is_refused(record: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        BanditState.from_dict(record)


def test_bad_rewards_and_arms_are_refused_and_nothing_changes() -> None:
    policy = ThompsonSampling()
    state = policy.update(policy.start(["v1", "v2"]), "v2", 1)
    before = state.to_dict()
    cases = [("v1", float("nan"), r"reward = nan: expected a finite number"),
             ("v1", float("inf"), r"reward = inf: expected a finite number"),
             ("v1", None, r"reward = None: expected a finite number"),
             ("v1", "1", r"reward = '1': expected a finite number"),
             ("v1", True, r"reward = True: expected a finite number"),
             ("v1", 2.0, r"reward = 2.0: expected a number in \[0, 1\] \(a binary policy"),
             ("v1", -0.1, r"reward = -0.1: expected a number in \[0, 1\]"),
             ("v9", 1.0, r"arm = 'v9': not an arm of this bandit; expected one of v1, v2")]
    for arm, reward, match in cases:
        with pytest.raises(RequestError, match=match) as e:
            policy.update(state, arm, reward)  # type: ignore[arg-type]
        assert e.value.errors[0]["field"] in ("arm", "reward")
    assert state.to_dict() == before
    assert EpsilonGreedy(reward="continuous").update(state, "v1", 2.0).total == (2.0, 1.0)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"epsilon = 1.5: must be in \[0, 1\]"):
        EpsilonGreedy(epsilon=1.5)
    with pytest.raises(ConfigError, match=r"reward = 'poisson': expected one of binary, "
                                          r"continuous"):
        ThompsonSampling(reward="poisson")
    with pytest.raises(ConfigError, match=r"prior = \(0, 1\): expected \(a, b\), both > 0"):
        ThompsonSampling(prior=(0, 1))
    with pytest.raises(ConfigError, match=r"arms = \['v1'\]: expected two or more distinct"):
        ThompsonSampling().start(["v1"])
    with pytest.raises(ConfigError, match=r"arms = \['v1', 'v1'\]"):
        ThompsonSampling().start(["v1", "v1"])
    with pytest.raises(ConfigError, match=r"kind = 'gaussian': gaussian rewards need a "
                                          r"policy with reward='continuous'"):
        simulate(ThompsonSampling(), MEANS, 10, 0, kind="gaussian")
    with pytest.raises(ConfigError, match=r"true_means = .*Bernoulli means must be in"):
        simulate(ThompsonSampling(), {"a": 0.5, "b": 1.5}, 10, 0)
    with pytest.raises(ConfigError, match=r"rng = 'int': expected a numpy Generator"):
        ThompsonSampling().choose(BanditState.start(["a", "b"]), 0)  # type: ignore[arg-type]
