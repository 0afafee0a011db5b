"""Which parameters a hyperparameter search tries next: grid, random or TPE, all seeded.

A sampler hands out numbered :class:`Proposal` s in batches (``ask(n)``) and is told each
trial's validation metric (``tell``), or None for a trial that failed. The same seed
gives the same proposals in the same order, and a larger budget only appends to them
(the first N trials of a budget of 2N are the trials of a budget of N), which is what
lets a re-run with a raised budget reuse the trials it already has:

- **grid** enumerates every point of the space and visits them in a seeded random order
  (a sample without replacement: a budget of N tries N distinct points, or all of them);
- **random** and **tpe** are optuna's ``RandomSampler`` and ``TPESampler`` through its
  ask-and-tell interface. TPE is asked for a batch (one trial per worker), told the
  batch's results in trial order, then asked for the next batch; with its "constant
  liar" a batch's trials do not all land on the same point. Its first
  :data:`TPE_STARTUP` trials are random.

optuna is imported only when a random or TPE search runs (``pip install 'cd4ml[ml]'``).

>>> from cd4ml.config import SearchConfig
>>> s = SearchConfig(method="grid", trials=3, space={"a": [1, 2], "b": [0.1, 0.2]})
>>> g = make_sampler(s, seed=0, higher=False)
>>> [p.params for p in g.ask(2)], [p.number for p in g.ask(5)]
([{'a': 2, 'b': 0.1}, {'a': 1, 'b': 0.1}], [2, 3])
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from cd4ml.config import SearchConfig, SearchDimension
from cd4ml.registry.predictor_base import import_extra

__all__ = ["Proposal", "TrialSampler", "GridSampler", "OptunaSampler", "make_sampler",
           "TPE_STARTUP"]

#: TPE's random trials before it models the results (fixed, so that a larger budget
#: only appends trials)
TPE_STARTUP = 5


@dataclass(frozen=True, slots=True)
class Proposal:
    number: int  #: 0, 1, 2, ... in the order asked
    params: dict[str, Any]


class TrialSampler(Protocol):
    def ask(self, n: int) -> list[Proposal]:
        """Up to ``n`` new proposals (fewer, or none, when the space is exhausted)."""

    def tell(self, number: int, value: float | None) -> None:
        """The validation metric of trial ``number`` (None: the trial failed)."""


@dataclass
class GridSampler:
    """Every point of the space, in a seeded random order, each once."""

    space: dict[str, SearchDimension]
    seed: int
    _values: list[list[Any]] = field(init=False)
    _order: np.ndarray = field(init=False)
    _next: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._values = [dim.grid() for dim in self.space.values()]
        total = int(np.prod([len(v) for v in self._values]))
        self._order = np.random.default_rng(self.seed).permutation(total)

    def point(self, index: int) -> dict[str, Any]:
        """The grid point at ``index`` of the product of the dimensions (last fastest)."""
        out: dict[str, Any] = {}
        for name, values in reversed(list(zip(self.space, self._values, strict=True))):
            index, i = divmod(index, len(values))
            out[name] = values[i]
        return {name: out[name] for name in self.space}

    def ask(self, n: int) -> list[Proposal]:
        picked = self._order[self._next:self._next + n]
        start, self._next = self._next, self._next + len(picked)
        return [Proposal(start + k, self.point(int(i))) for k, i in enumerate(picked)]

    def tell(self, number: int, value: float | None) -> None:
        """A grid does not learn from results."""


@contextlib.contextmanager
def _quiet_optuna(optuna: Any) -> Iterator[None]:
    """optuna logs every study and told trial at INFO on its own handler, and warns
    that the constant liar is experimental: quiet while we call it, as it was after."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(before)


def _distribution(optuna: Any, dim: SearchDimension) -> Any:
    d = optuna.distributions
    if dim.choices is not None:
        return d.CategoricalDistribution(dim.choices)
    assert dim.low is not None and dim.high is not None
    if dim.integer:
        return d.IntDistribution(int(dim.low), int(dim.high), log=dim.log,
                                 step=int(dim.step or 1))
    return d.FloatDistribution(dim.low, dim.high, log=dim.log, step=dim.step)


class OptunaSampler:
    """optuna's random or TPE sampler, seeded, through ask and tell (in memory)."""

    def __init__(self, search: SearchConfig, *, seed: int, higher: bool) -> None:
        self._optuna = optuna = import_extra("optuna", "hyperparameter search")
        with _quiet_optuna(optuna):
            sampler = (optuna.samplers.RandomSampler(seed=seed) if search.method == "random"
                       else optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP,
                                                       constant_liar=True))
            self._study = optuna.create_study(
                sampler=sampler, direction="maximize" if higher else "minimize")
        self._dists = {name: _distribution(optuna, dim) for name, dim in search.space.items()}
        self._asked: dict[int, Any] = {}

    def ask(self, n: int) -> list[Proposal]:
        out = []
        with _quiet_optuna(self._optuna):
            for _ in range(n):
                trial = self._study.ask(self._dists)
                self._asked[trial.number] = trial
                out.append(Proposal(trial.number, dict(trial.params)))
        return out

    def tell(self, number: int, value: float | None) -> None:
        state = self._optuna.trial.TrialState
        with _quiet_optuna(self._optuna):
            if value is None or not np.isfinite(value):
                self._study.tell(self._asked.pop(number), state=state.FAIL)
            else:
                self._study.tell(self._asked.pop(number), float(value))


def make_sampler(search: SearchConfig, *, seed: int, higher: bool) -> TrialSampler:
    """The sampler of ``search.method``, seeded with ``seed``; ``higher``: the metric is
    higher-is-better."""
    if search.method == "grid":
        return GridSampler(search.space, seed)
    return OptunaSampler(search, seed=seed, higher=higher)
