"""What differs by kind of task, in one table: each task's metrics, the code that builds
its pipeline and the class that serves its bundles.

A layer never asks ``if task == ...``: it looks the task up here (or holds an object made
for it, such as a servable) and calls what the entry names. Entries name code by dotted
path, so this module imports nothing but the config.

>>> TASKS["classification"].default_metric, TASKS["classification"].higher_is_better("roc_auc")
('roc_auc', True)
>>> task_of("ranking")
Traceback (most recent call last):
...
cd4ml.errors.ConfigError: task = 'ranking': unknown task; known: forecast, classification, regression
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from cd4ml.config import DEFAULT_BASELINE, DEFAULT_METRIC
from cd4ml.errors import ConfigError

__all__ = ["Task", "TASKS", "task_of", "resolve"]


@dataclass(frozen=True)
class Task:
    """One kind of task: what a request carries, how it is judged, where its code is."""

    name: str
    request: str  #: what a request carries, for messages and docs
    metrics: tuple[str, ...]  #: metrics a project may select and gate by
    higher: frozenset[str]  #: of those, the ones where higher is better
    stages: str  #: "module:function" building a run's stages from the config
    servable: str  #: "module:Class" serving a bundle of this task

    @property
    def default_metric(self) -> str:
        return DEFAULT_METRIC[self.name]

    @property
    def default_baseline(self) -> str:
        return DEFAULT_BASELINE[self.name]

    def higher_is_better(self, metric: str) -> bool:
        return metric in self.higher

    def check_metric(self, metric: str, *, key: str = "evaluation.metric") -> None:
        if metric not in self.metrics:
            raise ConfigError(f"not a metric of task {self.name}; known: "
                              f"{', '.join(self.metrics)}", key=key, value=metric)


TASKS: dict[str, Task] = {t.name: t for t in [
    Task("forecast", "series keys and a date; features come from the bundled history",
         ("wmae", "mae", "rmse", "nwrmsle"), frozenset(),
         "cd4ml.pipeline.forecast:build_stages", "cd4ml.registry.servable:ServableModel"),
    Task("classification", "the input columns; answered with a label and probabilities",
         ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1"),
         frozenset({"roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1"}),
         "cd4ml.pipeline.tabular:build_stages", "cd4ml.registry.tabular:TabularServable"),
    Task("regression", "the input columns; answered with a number",
         ("mae", "rmse", "r2", "mape"), frozenset({"r2"}),
         "cd4ml.pipeline.tabular:build_stages", "cd4ml.registry.tabular:TabularServable"),
]}


def task_of(name: str) -> Task:
    """The task called ``name``; a one-line error listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task; known: {', '.join(TASKS)}", key="task",
                          value=name) from None


def resolve(path: str) -> Any:
    """The object a ``module:name`` path names (imported on first use)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
