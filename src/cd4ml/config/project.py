"""The whole project config, ``cd4ml.yaml``: every section, checked together."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from cd4ml.config._strict import _Strict
from cd4ml.config.sections import (DEFAULT_BASELINE, DEFAULT_METRIC, DataConfig, EvaluationConfig,
                                   FeaturesConfig, GateConfig, InputsConfig, ModelsConfig,
                                   RegistryConfig, SplitConfig, TaskKind,
                                   SPLIT_KEYS, SPLIT_REQUIRED)
from cd4ml.config.monitoring import MonitoringConfig
from cd4ml.config.rollout import RolloutConfig
from cd4ml.config.serving import ServingConfig, StoreConfig


class ProjectConfig(_Strict):
    project: str
    task: TaskKind = Field("forecast", description=(
        "forecast (series x date), classification or regression (the request carries "
        "its features)"))
    data: DataConfig
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    inputs: InputsConfig = Field(default_factory=InputsConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    models: ModelsConfig = Field(
        default_factory=lambda: ModelsConfig(name="model"))
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, raw: Any) -> Any:
        """The baseline a task gets when none is named (config imports nothing of ours:
        the model types themselves are checked when the project loads)."""
        if isinstance(raw, dict):
            task = raw.get("task", "forecast")
            ev = raw.get("evaluation")
            if task in DEFAULT_METRIC and (ev is None or (isinstance(ev, dict) and
                                                          ev.get("metric") is None)):
                raw = {**raw, "evaluation": {**(ev or {}), "metric": DEFAULT_METRIC[task]}}
            models = raw.get("models")
            if isinstance(models, dict) and models.get("baselines") is None \
                    and task in DEFAULT_BASELINE:
                b = DEFAULT_BASELINE[task]
                raw = {**raw, "models": {**models, "baselines": [{"name": b, "type": b}]}}
            elif models is None and task in DEFAULT_BASELINE:
                b = DEFAULT_BASELINE[task]
                raw = {**raw, "models": {"name": "model",
                                         "baselines": [{"name": b, "type": b}]}}
        return raw

    @model_validator(mode="after")
    def _task_keys(self) -> ProjectConfig:
        """Keys that belong to one kind of task, given to another, are refused."""
        forecast = self.task == "forecast"
        if forecast:
            for key in ("time", "series"):
                if getattr(self.data, key) is None:
                    raise ValueError(f"data.{key} is required for task forecast")
            for key in ("id", "classes"):
                if getattr(self.data, key) is not None:
                    raise ValueError(f"data.{key} is for tabular tasks; task is forecast")
            if "inputs" in self.model_fields_set:
                raise ValueError("inputs: is for tabular tasks (classification, "
                                 "regression); a forecast's features are under features:")
        else:
            if "features" in self.model_fields_set:
                raise ValueError(f"features: is for forecasts; task {self.task} takes its "
                                 f"inputs from the schema (see inputs:)")
            if self.data.classes is not None and self.task != "classification":
                raise ValueError("data.classes is for task classification")
        method = self.split.method(self.task)
        if forecast != (method == "periods"):
            raise ValueError(f"split.by = {method!r} does not fit task {self.task}: "
                             + ("forecasts split by periods" if forecast else
                                "use values, time, group or random"))
        given = self.split.model_fields_set - {"by", "validation", "refit_on_all"}
        if forecast and given - set(SPLIT_KEYS["periods"]):
            raise ValueError(f"split: {sorted(given - set(SPLIT_KEYS['periods']))} are "
                             f"for tabular tasks; a forecast takes holdout_periods and "
                             f"validation_periods")
        if not forecast:
            stray = sorted(given - set(SPLIT_KEYS[method]))
            if stray:
                raise ValueError(f"split: {stray} do not go with split.by = {method!r}, "
                                 f"which takes {list(SPLIT_KEYS[method])}")
            missing = [k for k in SPLIT_REQUIRED[method] if getattr(self.split, k) is None]
            if missing:
                raise ValueError(f"split.by = {method!r} needs split.{missing[0]}")
            if self.split.refit_on_all and forecast:
                raise ValueError("split.refit_on_all is for tabular tasks")
        ev = self.monitoring.event_time
        if ev is not None and (forecast or ev in {self.data.target, self.data.id,
                                                  *self.inputs.drop}):
            raise ValueError(f"monitoring.event_time = {ev!r}: " + (
                "a forecast's event time is the date its request names (data.time)"
                if forecast else "not a request field (the target, data.id or in "
                "inputs.drop); name an input of the model"))
        tabular_only = [r.column for r in self.gate.max_group_gap]
        if forecast and (self.evaluation.protected or tabular_only):
            raise ValueError("evaluation.protected and gate.max_group_gap are for tabular "
                             "tasks")
        for i, rule in enumerate(self.gate.max_group_gap):
            if rule.column not in self.evaluation.protected:
                raise ValueError(f"gate.max_group_gap.{i}.column = {rule.column!r} is not "
                                 f"in evaluation.protected {self.evaluation.protected}")
        return self

    @model_validator(mode="after")
    def _columns_declared(self) -> ProjectConfig:
        if self.gate.baseline != "best":
            names = [b.name for b in self.models.baselines or []]
            if self.gate.baseline not in names:
                raise ValueError(f"gate.baseline = {self.gate.baseline!r} is not a baseline; "
                                 f"baselines: {names} or 'best'")
        return self
