"""Multi-armed bandits over two or more versions: Thompson sampling and ε-greedy.

The state is a small record, per arm the pulls, the reward sum and the sum of squares
(:class:`BanditState`, ``to_dict``/``from_dict`` JSON-safe), that the server's workers
share through the metadata store: sums add, so updates from several workers merge by
addition. A policy holds only its parameters (keyword-only, as scikit-learn's
estimators do) and is a pure function of the state:

- ``policy.choose(state, rng)`` — the arm for the next request;
- ``policy.update(state, arm, reward)`` — a new state (the old one is unchanged); a
  reward that is not a finite number, an arm that is not the state's, or a binary
  policy's reward outside [0, 1] is refused with a RequestError naming it;
- ``policy.shares(state)`` — the traffic split the policy now implies, for display.

:class:`ThompsonSampling` draws each arm's mean from its posterior and picks the
largest. For ``reward="binary"`` (rewards in [0, 1], e.g. 0/1) the posterior is
Beta(a + Σr, b + n − Σr) from the prior Beta(a, b) (default 1, 1; fractional rewards
count as fractional successes). For ``reward="continuous"`` the rewards are taken as
normal with unknown mean and variance under the prior flat in (μ, σ²), which Honda and
Takemura (AISTATS 2014) show asymptotically optimal where the Jeffreys and reference
priors are not: μ | rewards = x̄ + sqrt(S / (n ν)) · t_ν, with S = Σ(x − x̄)² and
ν = n − 3; so each arm is first tried until it has ``MIN_PULLS`` rewards.

:class:`EpsilonGreedy` picks an arm uniformly at random with probability ε, else the
arm with the highest mean reward (ties at random); an arm never pulled counts as best,
so each is tried once first.

Every draw is made from uniform numbers by inverse distribution functions (K + 2 per
decision for K arms), so one decision code serves a single request and
:func:`simulate`'s many runs at once, and a run depends on its own seed only.

>>> policy = ThompsonSampling()
>>> state = policy.start(["v1", "v2"])
>>> state = policy.update(state, "v1", 1.0)
>>> state.to_dict()["arms"]
{'v1': {'pulls': 1, 'sum': 1.0, 'sum_sq': 1.0}, 'v2': {'pulls': 0, 'sum': 0.0, 'sum_sq': 0.0}}
>>> policy.choose(state, np.random.default_rng(0))
'v1'
>>> EpsilonGreedy(epsilon=0.1).shares(state)
{'v1': 0.05, 'v2': 0.95}
>>> sim = simulate(ThompsonSampling(), {"a": 0.10, "b": 0.12}, steps=1000, seed=[0, 1])
>>> sim.chosen.shape, round(float(sim.cumulative_regret[:, -1].mean()), 2)
((2, 1000), 3.66)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cd4ml.errors import ConfigError, DataError, RequestError, short_repr

__all__ = ["BanditState", "ThompsonSampling", "EpsilonGreedy", "Simulation", "simulate",
           "MIN_PULLS", "REWARDS"]

#: Rewards a continuous Thompson sampler needs from an arm before it samples it (ν ≥ 2).
MIN_PULLS = 5
REWARDS = ("binary", "continuous")


def _refuse(field: str, value: Any, problem: str) -> RequestError:
    return RequestError(f"{field} = {short_repr(value)}: {problem}",
                        [{"field": field, "value": short_repr(value), "problem": problem}])


@dataclass(frozen=True)
class BanditState:
    """Per arm, in order: pulls, Σ reward, Σ reward²."""

    arms: tuple[str, ...]
    pulls: tuple[int, ...]
    total: tuple[float, ...]
    total_sq: tuple[float, ...]

    @classmethod
    def start(cls, arms: Sequence[str]) -> BanditState:
        arms = tuple(arms)
        if len(arms) < 2 or len(set(arms)) != len(arms) or \
                not all(isinstance(a, str) and a for a in arms):
            raise ConfigError("expected two or more distinct, non-empty arm names",
                              key="arms", value=list(arms))
        k = len(arms)
        return cls(arms, (0,) * k, (0.0,) * k, (0.0,) * k)

    def to_dict(self) -> dict[str, Any]:
        return {"arms": {a: {"pulls": n, "sum": s, "sum_sq": q} for a, n, s, q in
                         zip(self.arms, self.pulls, self.total, self.total_sq)}}

    @classmethod
    def from_dict(cls, d: Any) -> BanditState:
        """The state ``to_dict`` wrote; a malformed record is a DataError naming the field."""
        arms = d.get("arms") if isinstance(d, Mapping) else None
        if not isinstance(arms, Mapping):
            raise DataError(f"bandit state = {short_repr(d)}: expected {{'arms': {{name: "
                            "{'pulls', 'sum', 'sum_sq'}}}}")
        rows = []
        for name, rec in arms.items():
            where = f"bandit state arms.{name}"
            if not isinstance(rec, Mapping) or set(rec) != {"pulls", "sum", "sum_sq"}:
                raise DataError(f"{where} = {short_repr(rec)}: expected pulls, sum, sum_sq")
            n, s, q = rec["pulls"], rec["sum"], rec["sum_sq"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise DataError(f"{where}.pulls = {short_repr(n)}: expected an integer >= 0")
            for key, v in (("sum", s), ("sum_sq", q)):
                if isinstance(v, bool) or not isinstance(v, (int, float)) \
                        or not math.isfinite(v):
                    raise DataError(f"{where}.{key} = {short_repr(v)}: expected a finite "
                                    "number")
            if q < 0:
                raise DataError(f"{where}.sum_sq = {q!r}: expected >= 0")
            rows.append((name, n, float(s), float(q)))
        state = cls.start([r[0] for r in rows])
        return cls(state.arms, *(tuple(r[i] for r in rows) for i in (1, 2, 3)))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """pulls, Σ reward, Σ reward² as rows of shape (1, K)."""
        return tuple(np.asarray([v], dtype=float)  # type: ignore[return-value]
                     for v in (self.pulls, self.total, self.total_sq))

    def with_reward(self, i: int, reward: float) -> BanditState:
        def put(t: tuple[Any, ...], v: Any) -> tuple[Any, ...]:
            return t[:i] + (v,) + t[i + 1:]
        return BanditState(self.arms, put(self.pulls, self.pulls[i] + 1),
                           put(self.total, self.total[i] + reward),
                           put(self.total_sq, self.total_sq[i] + reward * reward))


class _Policy(ABC):
    reward: str

    def _check_reward_kind(self) -> None:
        if self.reward not in REWARDS:
            raise ConfigError(f"expected one of {', '.join(REWARDS)}", key="reward",
                              value=self.reward)

    def start(self, arms: Sequence[str]) -> BanditState:
        return BanditState.start(arms)

    def choose(self, state: BanditState, rng: np.random.Generator) -> str:
        if not isinstance(rng, np.random.Generator):
            raise ConfigError("expected a numpy Generator (np.random.default_rng(seed))",
                              key="rng", value=type(rng).__name__)
        u = rng.random((1, len(state.arms) + 2))
        return state.arms[int(self._pick(*state.arrays(), u)[0])]

    def update(self, state: BanditState, arm: str, reward: float) -> BanditState:
        if arm not in state.arms:
            raise _refuse("arm", arm, f"not an arm of this bandit; expected one of "
                          f"{', '.join(state.arms)}")
        if isinstance(reward, bool) or not isinstance(reward, (int, float, np.number)) \
                or not math.isfinite(reward):
            raise _refuse("reward", reward, "expected a finite number")
        if self.reward == "binary" and not 0.0 <= reward <= 1.0:
            raise _refuse("reward", reward, "expected a number in [0, 1] (a binary "
                          "policy; use reward='continuous' for other rewards)")
        return state.with_reward(state.arms.index(arm), float(reward))

    def shares(self, state: BanditState, *, draws: int = 10_000,
               seed: int = 0) -> dict[str, float]:
        """Each arm's probability of being chosen next, by ``draws`` seeded decisions."""
        if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
            raise ConfigError("must be an integer >= 1", key="draws", value=draws)
        k = len(state.arms)
        rows = [np.repeat(a, draws, axis=0) for a in state.arrays()]
        u = np.random.default_rng(seed).random((draws, k + 2))
        counts = np.bincount(self._pick(*rows, u), minlength=k)
        return {a: float(c) / draws for a, c in zip(state.arms, counts)}

    @abstractmethod
    def _pick(self, pulls: np.ndarray, total: np.ndarray, total_sq: np.ndarray,
              u: np.ndarray) -> np.ndarray:
        """The arm index chosen in each row; arrays of shape (R, K), u (R, K + 2)."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class ThompsonSampling(_Policy):
    def __init__(self, *, reward: str = "binary", prior: tuple[float, float] = (1.0, 1.0)):
        self.reward, self.prior = reward, tuple(prior)
        self._check_reward_kind()
        if len(self.prior) != 2 or not all(isinstance(p, (int, float)) and 0 < p < math.inf
                                           for p in self.prior):
            raise ConfigError("expected (a, b), both > 0: the Beta prior of a binary reward",
                              key="prior", value=prior)

    def _pick(self, pulls: np.ndarray, total: np.ndarray, total_sq: np.ndarray,
              u: np.ndarray) -> np.ndarray:
        from scipy import special

        k = pulls.shape[1]
        if self.reward == "binary":
            a, b = self.prior
            return np.argmax(special.betaincinv(a + total, b + pulls - total, u[:, :k]),
                             axis=1)
        young = pulls < MIN_PULLS
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / pulls
            s = np.maximum(total_sq - total * mean, 0.0)
            nu = np.maximum(pulls - 3, 1.0)
            draw = mean + np.sqrt(s / (pulls * nu)) * special.stdtrit(nu, u[:, :k])
        first = np.where(young, -pulls + 0.5 * u[:, :k], -np.inf)  # fewest pulls first
        return np.where(young.any(axis=1), np.argmax(first, axis=1),
                        np.argmax(np.where(young, -np.inf, draw), axis=1))


class EpsilonGreedy(_Policy):
    def __init__(self, *, epsilon: float = 0.1, reward: str = "binary"):
        self.epsilon, self.reward = epsilon, reward
        self._check_reward_kind()
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) \
                or not 0 <= epsilon <= 1:
            raise ConfigError("must be in [0, 1]", key="epsilon", value=epsilon)

    @staticmethod
    def _greedy(pulls: np.ndarray, total: np.ndarray) -> np.ndarray:
        """True where an arm has the best mean of its row (never pulled: best)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(pulls > 0, total / np.maximum(pulls, 1), np.inf)
        return mean == mean.max(axis=1, keepdims=True)

    def _pick(self, pulls: np.ndarray, total: np.ndarray, total_sq: np.ndarray,
              u: np.ndarray) -> np.ndarray:
        k = pulls.shape[1]
        greedy = np.argmax(np.where(self._greedy(pulls, total), u[:, :k], -1.0), axis=1)
        explore = u[:, k] < self.epsilon
        return np.where(explore, np.minimum((u[:, k + 1] * k).astype(int), k - 1), greedy)

    def shares(self, state: BanditState, *, draws: int = 10_000,
               seed: int = 0) -> dict[str, float]:
        """Exact: ε/K each, and 1 − ε split among the arms with the best mean."""
        best = self._greedy(*state.arrays()[:2])[0]
        k = len(state.arms)
        return {a: round(self.epsilon / k + (1 - self.epsilon) * float(g) / int(best.sum()),
                         12) for a, g in zip(state.arms, best)}


@dataclass(frozen=True)
class Simulation:
    arms: tuple[str, ...]
    chosen: np.ndarray  #: (runs, steps): the index into ``arms`` chosen at each step
    regret: np.ndarray  #: (runs, steps): best true mean − the chosen arm's true mean

    @property
    def cumulative_regret(self) -> np.ndarray:
        return np.cumsum(self.regret, axis=1)


def simulate(policy: _Policy, true_means: Mapping[str, float], steps: int,
             seed: int | Sequence[int], *, kind: str = "bernoulli",
             sd: float = 1.0) -> Simulation:
    """``steps`` decisions of ``policy`` against arms with ``true_means``, rewards drawn
    Bernoulli(mean) or (``kind="gaussian"``) Normal(mean, sd): one run per seed, all
    runs stepped together. A run's choices depend only on its seed: its decisions draw
    from the first child of ``SeedSequence(seed)``, its rewards from the second."""
    arms = tuple(true_means)
    means = np.asarray([true_means[a] for a in arms], dtype=float)
    policy.start(arms)  # checks the names
    if kind not in ("bernoulli", "gaussian"):
        raise ConfigError("expected 'bernoulli' or 'gaussian'", key="kind", value=kind)
    if kind == "bernoulli" and not ((means >= 0) & (means <= 1)).all():
        raise ConfigError("Bernoulli means must be in [0, 1]", key="true_means",
                          value=dict(true_means))
    if kind == "gaussian" and policy.reward == "binary":
        raise ConfigError("gaussian rewards need a policy with reward='continuous'",
                          key="kind", value=kind)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError("must be an integer >= 1", key="steps", value=steps)
    seeds = [seed] if isinstance(seed, int) else list(seed)
    k, runs = len(arms), len(seeds)
    u = np.empty((runs, steps, k + 2))
    noise = np.empty((runs, steps))
    for i, s in enumerate(seeds):
        decide, reward = (np.random.default_rng(c) for c in np.random.SeedSequence(s).spawn(2))
        u[i] = decide.random((steps, k + 2))
        noise[i] = reward.random(steps) if kind == "bernoulli" \
            else reward.standard_normal(steps)
    pulls, total, total_sq = (np.zeros((runs, k)) for _ in range(3))
    chosen = np.empty((runs, steps), dtype=np.int64)
    rows = np.arange(runs)
    for t in range(steps):
        c = policy._pick(pulls, total, total_sq, u[:, t])
        r = (noise[:, t] < means[c]).astype(float) if kind == "bernoulli" \
            else means[c] + sd * noise[:, t]
        pulls[rows, c] += 1
        total[rows, c] += r
        total_sq[rows, c] += r * r
        chosen[:, t] = c
    return Simulation(arms, chosen, means.max() - means[chosen])
