"""A candidate's hyperparameter search (``models.candidates.*.search``).

::

    search:
      method: tpe            # grid | random | tpe
      trials: 20             # and/or time_budget_s: 600
      space:
        num_leaves: {low: 15, high: 127, int: true, log: true}
        learning_rate: {low: 0.02, high: 0.2, log: true}
        min_child_samples: [20, 50, 100]

An entry of ``space`` is a list of values (a choice among them) or a range ``{low, high,
log?, int?, step?}``. Which parameters a model type takes is checked when the project
loads (``cd4ml.pipeline.checks``: this package imports nothing of ours).

>>> s = SearchConfig(method="grid", trials=4, space={"depth": {"low": 2, "high": 8,
...                  "int": True, "step": 2}, "lr": [0.1, 0.2]})
>>> s.space["depth"].integer, s.space["lr"].choices
(True, [0.1, 0.2])
>>> SearchConfig(method="random", trials=3, space={"lr": {"low": 0.2, "high": 0.1}})
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for SearchConfig
space.lr
  Value error, low 0.2 > high 0.1: low must be <= high [type=value_error, ...
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from cd4ml.config._strict import _Strict

__all__ = ["SearchDimension", "SearchConfig", "SearchMethod"]

Scalar = bool | int | float | str
SearchMethod = Literal["grid", "random", "tpe"]


class SearchDimension(_Strict):
    """One searched parameter: ``choices`` (written as a plain list), or a range."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    choices: list[Scalar] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = Field(False, description="sample the range on a log scale (low > 0)")
    integer: bool = Field(False, alias="int", description="integers only")
    step: float | None = Field(None, description="the range's spacing (grid: required "
                                                 "for a range that is not int)")

    @model_validator(mode="before")
    @classmethod
    def _list_is_choices(cls, v: Any) -> Any:
        return {"choices": v} if isinstance(v, list) else v

    @model_validator(mode="after")
    def _consistent(self) -> SearchDimension:
        if self.choices is not None:
            if any(x is not None for x in (self.low, self.high, self.step)):
                raise ValueError("give a list of values or a range {low, high}, not both")
            if not self.choices:
                raise ValueError("no values to choose from: list at least one")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs low and high (or give a list of values)")
        if self.low > self.high:
            raise ValueError(f"low {self.low:g} > high {self.high:g}: low must be <= high")
        if self.log and self.low <= 0:
            raise ValueError(f"log with low {self.low:g}: a log range needs low > 0")
        if self.step is not None:
            if self.step <= 0:
                raise ValueError(f"step {self.step:g}: must be > 0")
            if self.log:
                raise ValueError("step with log: a log range has no fixed step")
        if self.integer:
            bad = [f"{k} {v:g}" for k, v in (("low", self.low), ("high", self.high),
                                              ("step", self.step))
                   if v is not None and v != round(v)]
            if bad:
                raise ValueError(f"int with {bad[0]}: an int range needs whole numbers")
        return self

    def grid_size(self) -> int:
        """How many values :meth:`grid` gives (counted, not listed)."""
        if self.choices is not None:
            return len(self.choices)
        assert self.low is not None and self.high is not None  # checked above
        step = self.step if self.step is not None else 1.0
        return int((self.high - self.low) / step + 1e-9) + 1

    def grid(self) -> list[Scalar]:
        """Every value a grid takes: the choices, or the range's steps (int: step 1)."""
        if self.choices is not None:
            return list(self.choices)
        assert self.low is not None and self.high is not None  # checked above
        step = self.step if self.step is not None else 1.0
        values = [self.low + i * step for i in range(self.grid_size())]
        return [round(v) for v in values] if self.integer else \
            [round(v, 12) for v in values]


class SearchConfig(_Strict):
    """How a candidate's parameters are searched; the best trial on validation is the
    candidate's recipe for select, holdout, gate and bundle."""

    method: SearchMethod = Field(description="grid (seeded sample of its points without "
                                             "replacement), random or tpe (optuna)")
    trials: int | None = Field(None, ge=1, description="how many trials (grid: at most "
                                                       "its number of points)")
    time_budget_s: float | None = Field(None, gt=0, description=(
        "stop asking for trials after this many seconds (with trials: whichever first)"))
    workers: int = Field(2, ge=1, le=64, description=(
        "trials fitted at once, each in its own process with one thread; tpe asks and "
        "tells in batches of this size, so it is part of what makes a search reproducible"))
    space: dict[str, SearchDimension]

    @field_validator("space")
    @classmethod
    def _not_empty(cls, v: dict[str, SearchDimension]) -> dict[str, SearchDimension]:
        if not v:
            raise ValueError("empty space: name at least one parameter to search")
        return v

    @model_validator(mode="after")
    def _has_budget(self) -> SearchConfig:
        if self.trials is None and self.time_budget_s is None:
            raise ValueError("no budget: give trials (a number >= 1) or time_budget_s")
        return self

    def grid_problem(self, name: str) -> str | None:
        """Why ``space[name]`` cannot be gridded (None: it can); checked with the
        project, where the message can name the entry's key."""
        dim = self.space[name]
        if self.method != "grid" or dim.choices is not None:
            return None
        if dim.log:
            return "grid takes a list of values or a range with step, not a log range"
        if dim.step is None and not dim.integer:
            return "grid needs a step for a range that is not int (or a list of values)"
        return None

    def finite(self) -> bool:
        """Whether the space has a finite number of points (no continuous range)."""
        return all(d.choices is not None or d.integer or d.step is not None
                   for d in self.space.values())

    def grid_size(self) -> int:
        """The number of points of the full grid."""
        n = 1
        for dim in self.space.values():
            n *= dim.grid_size()
        return n
