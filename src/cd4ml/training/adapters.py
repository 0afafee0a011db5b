"""The model-adapter registry: every model type cd4ml fits, registered once.

An adapter names, per task it supports, the function that fits it, the predictor class
that predicts, saves and loads it (``cd4ml.registry.predictors``: serving loads models
without importing training), its default parameters and, for scikit-learn, the estimator
class whose skops types ``SKOPS_TYPES`` lists. ``tests/test_model_adapters.py`` runs every
(adapter, task) through the same contract checks.

>>> adapter_for("lightgbm", "classification", where="models.m.type").defaults(
...     "classification", n_classes=3)["objective"]
'multiclass'
>>> adapter_for("seasonal_naive", "regression", where="models.b.type")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
cd4ml.errors.ConfigError: models.b.type = 'seasonal_naive': supports forecast only, not \
regression; known for regression: ['decision_tree', 'lightgbm', 'linear_regression', ...]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cd4ml.errors import ConfigError
from cd4ml.registry.predictors import (SKOPS_TYPES, STEP_TYPES, ConstantPredictor,
                                       LightGBMClassifierPredictor, LightGBMPredictor,
                                       Predictor, SeasonalNaivePredictor,
                                       SeriesMeanPredictor, SklearnClassifierPredictor,
                                       SklearnPredictor)
from cd4ml.tasks import TASKS as _TASK_TABLE
from cd4ml.tasks import task_of
from cd4ml.training import baselines, learners
from cd4ml.training.fitdata import FitData

__all__ = ["ModelAdapter", "TaskFit", "ADAPTERS", "TASKS", "adapter_for", "known_types",
           "fit_threads", "THREADS_ENV"]

#: the tasks an adapter may support (cd4ml.tasks' table, in its order)
TASKS = tuple(_TASK_TABLE)

Defaults = Callable[[int | None], dict[str, Any]]


def _fixed(params: Mapping[str, Any]) -> Defaults:
    return lambda n_classes: dict(params)


@dataclass(frozen=True, slots=True)
class TaskFit:
    """How an adapter fits one task, and what it saves."""

    fit: Callable[[FitData], Predictor]
    predictor: type[Predictor]  #: predicts, saves (``to_files``), loads (``from_files``)
    defaults: Defaults = _fixed({})  #: n_classes (classification; else None) -> params
    estimator: str | None = None  #: scikit-learn class saved with skops: a SKOPS_TYPES key
    #: preprocessing steps of its Pipeline that add types of their own: STEP_TYPES keys
    steps: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelAdapter:
    """One model type: a :class:`TaskFit` per task it supports."""

    type: str  #: the config's ``models.*.type``
    by_task: Mapping[str, TaskFit]
    baseline: bool = False  #: a reference to beat rather than a learner
    weighted: bool = True  #: its fit uses the rows' weights (params.recency_half_life)
    doc: str = field(default="", compare=False)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(t for t in TASKS if t in self.by_task)

    def task_fit(self, task: str) -> TaskFit:
        return self.by_task[task]

    def defaults(self, task: str, n_classes: int | None = None) -> dict[str, Any]:
        """Parameters used where the config gives none (the config's override them); a
        threaded model's ``n_jobs`` is :func:`fit_threads`."""
        out = self.by_task[task].defaults(n_classes)
        if "n_jobs" in out:
            out["n_jobs"] = fit_threads()
        return out

    def skops_types(self, task: str) -> tuple[str, ...]:
        """The exact types beyond skops' defaults this adapter's saved file holds."""
        fit = self.by_task[task]
        if fit.estimator is None:
            return ()
        return tuple(sorted({*SKOPS_TYPES[fit.estimator],
                             *(t for step in fit.steps for t in STEP_TYPES[step])}))


#: the environment variable that sets the threads of each fit (default 2: both cores)
THREADS_ENV = "CD4ML_FIT_THREADS"


def fit_threads() -> int:
    """Threads a LightGBM or forest fit uses unless its params say: ``CD4ML_FIT_THREADS``
    (e.g. 1 when two test processes share two cores), else 2."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return 2
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError("expected a whole number of threads >= 1", key=THREADS_ENV,
                          value=raw)
    return int(raw)


# Sizes are capped so a cold run on the full Walmart data stays fast on two cores.
_LGB = {"n_estimators": 400, "learning_rate": 0.05, "num_leaves": 63,
        "min_child_samples": 20, "subsample": 0.8, "subsample_freq": 1,
        "colsample_bytree": 0.8, "n_jobs": 2}
_FOREST_FORECAST = {"n_estimators": 10, "max_depth": 20, "min_samples_leaf": 5,
                    "max_features": 0.5, "n_jobs": 2}
_FOREST_TABULAR = {"n_estimators": 100, "max_depth": 16, "min_samples_leaf": 20, "n_jobs": 2}
_TREE = {"max_depth": 12, "min_samples_leaf": 20}


def _lgb_objective(objective: str) -> Defaults:
    return lambda n_classes: {"objective": objective, **_LGB}


def _lgb_classification(n_classes: int | None) -> dict[str, Any]:
    return {"objective": "binary" if n_classes == 2 else "multiclass", **_LGB}


def _sk(estimator: str, defaults: Mapping[str, Any], *, classifier: bool,
        fit: Callable[[FitData], Predictor] | None = None,
        steps: tuple[str, ...] = ()) -> TaskFit:
    pred = SklearnClassifierPredictor if classifier else SklearnPredictor
    fit = fit or (learners.fit_sklearn_classifier if classifier else learners.fit_sklearn)
    return TaskFit(fit, pred, _fixed(defaults), estimator, steps)


_ALL: list[ModelAdapter] = [
    ModelAdapter("lightgbm", {
        "forecast": TaskFit(learners.fit_lightgbm, LightGBMPredictor, _lgb_objective("l1")),
        "regression": TaskFit(learners.fit_lightgbm, LightGBMPredictor, _lgb_objective("l2")),
        "classification": TaskFit(learners.fit_lightgbm_classifier,
                                  LightGBMClassifierPredictor, _lgb_classification),
    }),
    ModelAdapter("random_forest", {
        "forecast": _sk("sklearn.ensemble.RandomForestRegressor", _FOREST_FORECAST,
                        classifier=False),
        "regression": _sk("sklearn.ensemble.RandomForestRegressor",
                          {**_FOREST_TABULAR, "max_features": 0.5}, classifier=False),
        "classification": _sk("sklearn.ensemble.RandomForestClassifier",
                              {**_FOREST_TABULAR, "max_features": "sqrt"}, classifier=True),
    }),
    ModelAdapter("decision_tree", {
        "forecast": _sk("sklearn.tree.DecisionTreeRegressor", _TREE, classifier=False),
        "regression": _sk("sklearn.tree.DecisionTreeRegressor", _TREE, classifier=False),
        "classification": _sk("sklearn.tree.DecisionTreeClassifier", _TREE, classifier=True),
    }),
    ModelAdapter("logistic_regression", {
        "classification": _sk("sklearn.linear_model.LogisticRegression",
                              {"C": 1.0, "max_iter": 1000}, classifier=True,
                              fit=learners.fit_linear_classifier),
    }, doc="one-hot of the categorical codes, scaled numeric inputs, then the model"),
    ModelAdapter("linear_regression", {
        "regression": _sk("sklearn.linear_model.LinearRegression", {}, classifier=False,
                          fit=learners.fit_linear),
        "forecast": _sk("sklearn.linear_model.LinearRegression", {}, classifier=False,
                        fit=learners.fit_linear_forecast,
                        steps=("sklearn.impute.SimpleImputer",)),
    }, doc="one-hot of the categorical codes, scaled numeric inputs (forecasts: a missing "
           "one is the training median, with a 0/1 column saying so), then the model"),
    ModelAdapter("prior", {"classification": TaskFit(baselines.fit_prior, ConstantPredictor)},
                 baseline=True, doc="the training rows' class shares, for every row"),
    ModelAdapter("majority", {"classification": TaskFit(baselines.fit_majority,
                                                        ConstantPredictor)},
                 baseline=True, doc="probability 1 for the most frequent training class"),
    ModelAdapter("mean", {"regression": TaskFit(baselines.fit_mean, ConstantPredictor)},
                 baseline=True, doc="the (weighted) mean of the training target"),
    ModelAdapter("median", {"regression": TaskFit(baselines.fit_median, ConstantPredictor)},
                 baseline=True, doc="the (weighted) median of the training target"),
    ModelAdapter("seasonal_naive", {"forecast": TaskFit(baselines.fit_seasonal_naive,
                                                        SeasonalNaivePredictor)},
                 baseline=True, weighted=False,
                 doc="same week last year; else series, group, overall median"),
    ModelAdapter("seasonal_naive_aligned", {"forecast": TaskFit(
        baselines.fit_seasonal_naive_aligned, SeasonalNaivePredictor)},
                 baseline=True, weighted=False,
                 doc="last year's value at the same distance from the nearest holiday "
                     "(features.holidays); else as seasonal_naive"),
    ModelAdapter("series_mean", {"forecast": TaskFit(baselines.fit_series_mean,
                                                     SeriesMeanPredictor)},
                 baseline=True, weighted=False,
                 doc="the series mean; else the group mean, the overall mean"),
]

#: model type -> adapter
ADAPTERS: dict[str, ModelAdapter] = {a.type: a for a in _ALL}


def known_types(task: str) -> list[str]:
    """The model types that support ``task``, sorted."""
    return sorted(t for t, a in ADAPTERS.items() if task in a.by_task)


def adapter_for(type_: str, task: str, *, where: str) -> ModelAdapter:
    """The adapter of ``type_`` for ``task``; else a one-line ConfigError at ``where``."""
    task_of(task)  # an unknown task: the task table's one-line error
    adapter = ADAPTERS.get(type_)
    known = f"known for {task}: {known_types(task)}"
    if adapter is None:
        raise ConfigError(f"unknown model type; {known}", key=where, value=type_)
    if task not in adapter.by_task:
        raise ConfigError(f"supports {', '.join(adapter.tasks)} only, not {task}; {known}",
                          key=where, value=type_)
    return adapter
