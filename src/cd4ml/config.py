"""The project config, ``cd4ml.yaml``, as typed pydantic models.

A wrong key or type fails with the file, the key path, the bad value and what is
allowed; ``--set key.path=value`` overrides any key before validation.

>>> raw = {"project": "p", "data": {"sources": {"s": {"path": "s.csv"}}, "main": "s",
...        "target": "y", "time": "t", "series": ["k"]}, "features": {"horizon": 0}}
>>> try:
...     validate_config(raw, file="cd4ml.yaml")
... except ConfigError as e:
...     print(e)
cd4ml.yaml: features.horizon = 0: Input should be greater than or equal to 1
"""

from __future__ import annotations

import difflib
import re
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from cd4ml.errors import ConfigError

__all__ = [
    "ProjectConfig", "load_config", "validate_config", "apply_overrides", "config_hash",
    "CONFIG_FILE",
]

CONFIG_FILE = "cd4ml.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """One input file: CSV (zipped too) or Parquet, read as declared."""

    path: str
    format: Literal["csv", "parquet"] | None = None
    dates: list[str] = Field(default_factory=list, description="columns parsed as dates")


class JoinConfig(_Strict):
    source: str
    on: list[str] = Field(min_length=1)
    columns: list[str] | None = None


Scalar = bool | int | float | str


class DataConfig(_Strict):
    sources: dict[str, SourceConfig] = Field(min_length=1)
    main: str = Field(description="the source holding the target (and time and series keys)")
    joins: list[JoinConfig] = Field(default_factory=list)
    target: str
    time: str | None = Field(None, description="forecast: the date column")
    series: list[str] | None = Field(None, min_length=1,
                                     description="forecast: the series key columns")
    id: str | None = Field(None, description="tabular: a row id column, never an input")
    classes: list[Scalar] | None = Field(None, min_length=2, description=(
        "classification: the target's classes (default: its values in the training rows)"))
    frequency_days: int = Field(7, ge=1)
    schema_dir: str = "schema"
    target_min: float | None = Field(None, description="lowest valid target (None: no bound)")

    @model_validator(mode="after")
    def _sources_exist(self) -> DataConfig:
        names = sorted(self.sources)
        if self.main not in self.sources:
            raise ValueError(f"data.main = {self.main!r} is not a source; sources: {names}")
        for j in self.joins:
            if j.source not in self.sources:
                raise ValueError(f"join source {j.source!r} is not a source; sources: {names}")
        return self


Stat = Literal["mean", "std", "min", "max", "median"]
CalendarPart = Literal["week", "month", "year", "quarter", "day_of_year", "week_of_month"]


class FeaturesConfig(_Strict):
    """What a model may see. Every target-derived value ends at or before d - horizon."""

    horizon: int = Field(39, ge=1, description="periods between the last known value and d")
    lags: list[int] = Field(default_factory=list)
    seasonal_period: int = Field(52, ge=2)
    seasonal_years: int = Field(2, ge=1, description="years averaged in the seasonal profile")
    rolling_windows: list[int] = Field(default_factory=lambda: [4, 13, 52])
    rolling_stats: list[Stat] = Field(default_factory=lambda: ["mean"])
    calendar: list[CalendarPart] = Field(default_factory=lambda: ["week", "month", "year"])
    covariates: dict[str, Literal["known_ahead", "observed"]] = Field(default_factory=dict)
    static: list[str] = Field(default_factory=list, description="per-series attributes")
    categorical: list[str] = Field(default_factory=list)
    series_keys_as_features: bool = True

    @model_validator(mode="after")
    def _lags_reach_no_future(self) -> FeaturesConfig:
        for lag in self.lags:
            if lag < self.horizon:
                raise ValueError(
                    f"lag {lag} < horizon {self.horizon}: a lag shorter than the horizon "
                    f"would use values not yet known when forecasting; use lags >= {self.horizon}")
        for w in self.rolling_windows:
            if w < 1:
                raise ValueError(f"rolling window {w} must be >= 1")
        return self


TaskKind = Literal["forecast", "classification", "regression"]
#: the baseline a project gets when it names none, per task
DEFAULT_BASELINE = {"forecast": "seasonal_naive", "classification": "prior",
                    "regression": "mean"}
#: the metric a project is judged by when it names none, per task
DEFAULT_METRIC = {"forecast": "wmae", "classification": "roc_auc", "regression": "rmse"}


class ColumnPolicy(_Strict):
    unknown: Literal["refuse", "unknown"] | None = Field(None, description=(
        "a category never seen in training: refuse (422) or map to 'unknown'"))
    missing: Literal["refuse", "impute"] | None = Field(None, description=(
        "a missing value: refuse (422) or impute (training median / most frequent)"))


class InputsConfig(_Strict):
    """Tabular tasks: which columns are the model's inputs, and how odd values are met.

    The inputs are the joined table's columns but the target, ``data.id`` and ``drop``;
    their types, ranges, categories and nullability come from the schema files.
    """

    drop: list[str] = Field(default_factory=list, description="columns that are not inputs")
    categorical: list[str] = Field(default_factory=list, description=(
        "columns treated as categories besides those the schema gives categories and "
        "string or bool columns (their categories: the training values)"))
    unknown: Literal["refuse", "unknown"] = "refuse"
    missing: Literal["refuse", "impute"] = "refuse"
    columns: dict[str, ColumnPolicy] = Field(default_factory=dict,
                                             description="per-column overrides")


class ModelSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    type: str = Field(description="a model type of cd4ml.training.adapters (checked when "
                                  "the project loads)")
    params: dict[str, Any] = Field(default_factory=dict)


class ModelsConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="registered model name")
    candidates: list[ModelSpec] = Field(default_factory=list)
    baselines: list[ModelSpec] | None = Field(None, description=(
        "default by task: seasonal_naive, prior (classification), mean (regression)"))
    seed: int = 0

    @model_validator(mode="after")
    def _unique_names(self) -> ModelsConfig:
        names = [m.name for m in [*self.candidates, *(self.baselines or [])]]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"model names must be unique; repeated: {dup}")
        if self.baselines is not None and not self.baselines:
            raise ValueError("at least one baseline is needed (e.g. seasonal_naive or prior)")
        return self


class ValidationConfig(_Strict):
    """Tabular: the share of training rows candidates are compared on (never the holdout)."""

    share: float = Field(0.2, gt=0, lt=1)
    stratify: bool = Field(True, description="classification: keep class shares")
    seed: int = 0


SplitBy = Literal["periods", "values", "time", "group", "random"]
_SPLIT_KEYS: dict[str, tuple[str, ...]] = {
    "periods": ("holdout_periods", "validation_periods"),
    "values": ("train", "holdout", "exclude"),
    "time": ("column", "holdout_from", "exclude_from"),
    "group": ("columns", "holdout_share", "seed"),
    "random": ("holdout_share", "stratify", "seed"),
}
_SPLIT_REQUIRED: dict[str, tuple[str, ...]] = {
    "values": ("holdout",), "time": ("column", "holdout_from"),
    "group": ("columns", "holdout_share"), "random": ("holdout_share",)}


class SplitConfig(_Strict):
    """How rows are split. Forecasts count periods back from the end (``periods``);
    tabular tasks split by declared column values, by time, by group or at random."""

    by: SplitBy | None = Field(None, description="periods (forecast); values, time, group "
                                                 "or random (tabular); default by task")
    holdout_periods: int = Field(39, ge=1)
    validation_periods: int = Field(39, ge=1)
    train: dict[str, list[Scalar]] | None = Field(None, description=(
        "by values: rows whose columns take these values train (default: all not held "
        "out or excluded)"))
    holdout: dict[str, list[Scalar]] | None = None
    exclude: dict[str, list[Scalar]] | None = Field(None, description=(
        "rows never used to train, select or gate (e.g. later years, kept for replay)"))
    column: str | None = Field(None, description="by time: the time column")
    holdout_from: str | None = Field(None, description="by time: rows from this time on")
    exclude_from: str | None = Field(None, description="by time: rows from this time on "
                                                       "are excluded")
    columns: list[str] | None = Field(None, min_length=1,
                                      description="by group: the group columns")
    holdout_share: float | None = Field(None, gt=0, lt=1)
    stratify: bool = True
    seed: int = 0
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    refit_on_all: bool = Field(False, description=(
        "tabular: register a model refitted on training and holdout rows (then the "
        "holdout is no longer out-of-sample, and the report says so)"))

    @field_validator("holdout_from", "exclude_from", mode="before")
    @classmethod
    def _dates_as_text(cls, v: Any) -> Any:
        """YAML reads ``2016-01-01`` as a date: keep it as the ISO text it was."""
        import datetime as dt

        return v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v

    def method(self, task: str) -> str:
        """The split method in use: ``by``, else periods (forecast) or values."""
        return self.by or ("periods" if task == "forecast" else "values")


class EvaluationConfig(_Strict):
    metric: str | None = Field(None, description=(
        "default by task: wmae (forecast), roc_auc (classification), rmse (regression)"))
    weight_column: str | None = Field(None, description="rows where it is true get weight")
    weight: float = Field(5.0, gt=0)
    slices: list[str] = Field(default_factory=list)
    protected: list[str] = Field(default_factory=list, description=(
        "columns whose groups are compared (fairness): any columns of the joined data"))
    min_group_size: int = Field(100, ge=1, description=(
        "holdout rows a protected group needs to be gated (smaller: reported only)"))
    decision_threshold: float | Literal["accuracy"] = Field(0.5, description=(
        "binary classification: the probability from which the positive class is "
        "predicted, or 'accuracy': chosen on validation to maximise accuracy"))
    calibration_bins: int = Field(10, ge=2, le=100)
    bootstrap: int = Field(1000, ge=0, le=100_000, description=(
        "resamples for the 95 % interval of each group gap (0: none)"))

    @field_validator("decision_threshold")
    @classmethod
    def _in_unit(cls, v: float | str) -> float | str:
        if not isinstance(v, str) and not 0 < v < 1:
            raise ValueError("must be in (0, 1) or 'accuracy'")
        return v


class GroupGapRule(_Strict):
    column: str = Field(description="a column of evaluation.protected")
    metric: str = Field("tpr", description=(
        "tpr, fpr, selection_rate (binary classification) or the task's metric"))
    points: float = Field(gt=0, description=(
        "largest allowed gap between gated groups, in percentage points for rates and "
        "in the metric's units times 100 otherwise"))


class GateConfig(_Strict):
    max_metric: float | None = Field(None, gt=0, description="e.g. WMAE <= this")
    min_metric: float | None = Field(None, description="e.g. ROC AUC >= this")
    baseline: str = Field("best", description="baseline name, or 'best'")
    min_improvement_pct: float = Field(0.0, ge=0, lt=100)
    max_slice_regression_pct: float | None = Field(None, ge=0)
    slice_min_weight_share: float = Field(0.01, ge=0, le=1)
    max_group_gap: list[GroupGapRule] = Field(default_factory=list)


class RegistryConfig(_Strict):
    promote_on_pass: str | None = Field("production", description="alias moved on a pass")
    serve_baseline_if_none: bool = Field(
        True, description="register and alias the best baseline when nothing passes and no "
                          "version holds the alias yet")


class StoreConfig(_Strict):
    metadata_url: str = "sqlite:///.cd4ml/metadata.db"
    artifacts_url: str = ".cd4ml/artifacts"
    lock_timeout_s: float = Field(0.0, ge=0, description="wait this long for another run")


def _log_url(url: str) -> tuple[str, str]:
    """``(scheme, path)`` of a log URL; a plain path has the scheme ``""``."""
    scheme, sep, rest = url.partition("://")
    return (scheme, rest) if sep else ("", url)


class PredictionLogConfig(_Strict):
    """Every prediction, written off the request path in batches to SQLite segments."""

    enabled: bool = True
    url: str | None = Field(None, description=(
        "where the log is kept, as a URL: a folder path or file://PATH (SQLite segments in "
        "that folder); relative paths are taken from the project folder"))
    dir: str = Field(".cd4ml/predictions", description=(
        "folder of the log's segments (what url says, kept for existing configs; give one)"))
    flush_interval_ms: int = Field(200, ge=1, le=60_000,
                                   description="the writer commits at least this often")
    max_unflushed: int = Field(1_000, ge=1, description=(
        "records held in memory (queued or being written); bounds what a kill -9 can "
        "lose; more are dropped or rejected (when_full)"))
    max_unflushed_bytes: int = Field(64 << 20, ge=1, description=(
        "bytes held in memory (bodies, outputs); more are dropped or rejected (when_full)"))
    max_block_bytes: int = Field(64 << 20, ge=1, description=(
        "a flush is stored as blocks of at most this many bytes; must be below SQLite's "
        "limit on a row (SQLITE_LIMIT_LENGTH, 1e9 by default)"))
    max_stored_body_bytes: int = Field(64 << 10, ge=1, description=(
        "a request body longer than this is stored truncated, with its length and sha256"))
    when_full: Literal["drop", "reject"] = Field("drop", description=(
        "when max_unflushed or max_unflushed_bytes is reached: drop the record (counted) "
        "or reject the request (503 with Retry-After); a request never waits for the disk"))
    rotate_hours: int = Field(24, ge=1, le=24 * 31, description="one segment per period")
    retention_days: float = Field(30, gt=0, description="segments older than this are deleted")
    store_request: bool = Field(True, description="keep each request body as received")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, v: str | None) -> str | None:
        if v is None:
            return v
        scheme, path = _log_url(v)
        if scheme not in ("", "file"):
            raise ValueError(f"unknown prediction log scheme {scheme!r}; the log is kept in "
                             f"SQLite segments in a folder: give a folder path or file://PATH")
        if not path.strip():
            raise ValueError("names no folder; give a folder path or file://PATH")
        return v

    @model_validator(mode="after")
    def _one_place(self) -> PredictionLogConfig:
        if self.url is not None and "dir" in self.model_fields_set and \
                Path(self.folder) != Path(self.dir):
            raise ValueError(f"serving.log.url ({self.url!r}) and serving.log.dir "
                             f"({self.dir!r}) name different places; give one of them")
        return self

    @property
    def folder(self) -> str:
        """The folder of the log's segments, as configured (url, else dir)."""
        return self.dir if self.url is None else _log_url(self.url)[1]

    def folder_in(self, root: str | Path) -> Path:
        """:attr:`folder`, a relative one taken from the project folder ``root``."""
        d = Path(self.folder)
        return d if d.is_absolute() else Path(root) / d

    @field_validator("max_block_bytes")
    @classmethod
    def _below_sqlite_limit(cls, v: int) -> int:
        import sqlite3

        probe = sqlite3.connect(":memory:")
        try:
            limit = probe.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
        finally:
            probe.close()
        if v >= limit:
            raise ValueError(f"must be below SQLite's limit on a row, {limit} bytes "
                             f"(SQLITE_LIMIT_LENGTH of this build)")
        return v

    @field_validator("max_stored_body_bytes")
    @classmethod
    def _fits_a_block(cls, v: int, info: ValidationInfo) -> int:
        block = info.data.get("max_block_bytes")
        if block is not None and 2 * v > block:
            raise ValueError(f"must be at most half of serving.log.max_block_bytes ({block}), "
                             f"so that any record fits in a block")
        return v


class ServingConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(5005, ge=1, le=65535)
    alias: str = "production"
    workers: int = Field(1, ge=1, le=64)
    max_batch_rows: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(10_000_000, ge=1024)
    max_concurrency: int = Field(256, ge=1, description=(
        "requests in flight per worker; more get 503 with Retry-After"))
    request_timeout_s: float = Field(30, gt=0, description="then 504")
    poll_interval_s: float = Field(2, ge=0, description=(
        "how often a server checks whether the alias moved (0: never; hot swap)"))
    drain_s: float = Field(1, ge=0, description=(
        "on SIGTERM, readiness is false this long before the server stops accepting"))
    access_log: bool = True
    forecast_table: bool = Field(True, description=(
        "answer from the forecast table the model computed at registration (used once a "
        "sample of it matches the live model at load); false: run the model per request"))
    log: PredictionLogConfig = Field(default_factory=PredictionLogConfig)
    allowed_origins: list[str] = Field(default_factory=list, description=(
        "web origins (scheme://host[:port]) besides the server's own whose pages may POST "
        "to it; a POST with any other Origin header gets 403"))

    @model_validator(mode="after")
    def _origins_are_origins(self) -> ServingConfig:
        for i, o in enumerate(self.allowed_origins):
            if not _ORIGIN.fullmatch(o.strip()):
                raise ValueError(
                    f"allowed_origins.{i} = {o!r} is not an origin; give scheme://host"
                    f"[:port] with no path, e.g. 'https://dashboard.example.com'")
        return self


#: scheme://host[:port], what a browser sends in an Origin header
_ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:[0-9]{1,5})?/?")


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
        if forecast and given - set(_SPLIT_KEYS["periods"]):
            raise ValueError(f"split: {sorted(given - set(_SPLIT_KEYS['periods']))} are "
                             f"for tabular tasks; a forecast takes holdout_periods and "
                             f"validation_periods")
        if not forecast:
            stray = sorted(given - set(_SPLIT_KEYS[method]))
            if stray:
                raise ValueError(f"split: {stray} do not go with split.by = {method!r}, "
                                 f"which takes {list(_SPLIT_KEYS[method])}")
            missing = [k for k in _SPLIT_REQUIRED[method] if getattr(self.split, k) is None]
            if missing:
                raise ValueError(f"split.by = {method!r} needs split.{missing[0]}")
            if self.split.refit_on_all and forecast:
                raise ValueError("split.refit_on_all is for tabular tasks")
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


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false are booleans (``on:`` stays a key, ``no`` a string)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def parse_yaml(text: str) -> Any:
    r"""Parse YAML with 1.2 booleans.

    >>> parse_yaml("on: [a]\nx: yes\ny: true")
    {'on': ['a'], 'x': 'yes', 'y': True}
    """
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The keys allowed at ``loc`` (the parent of an unknown key), for the error message."""
    cur: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(cur, "model_fields", {}).get(part)
        if field is None:
            if isinstance(cur, type) and issubclass(cur, BaseModel):
                return None
            continue
        ann = field.annotation
        cur = _unwrap(ann)
        if cur is None:
            return None
    return sorted(cur.model_fields) if isinstance(cur, type) and issubclass(cur, BaseModel) \
        else None


def _unwrap(ann: Any) -> Any:
    for arg in (getattr(ann, "__args__", None) or (ann,))[::-1]:
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        inner = _unwrap(arg) if getattr(arg, "__args__", None) else None
        if inner is not None:
            return inner
    return None


def validate_config(raw: Any, *, file: str = CONFIG_FILE) -> ProjectConfig:
    """Validate a parsed YAML document; raise :class:`ConfigError` for the first problem."""
    if not isinstance(raw, dict):
        raise ConfigError("the file must hold a mapping of keys", key="(top level)",
                          value=type(raw).__name__, file=file)
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(ProjectConfig, loc[:-1]) or []
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            msg += f"; allowed here: {', '.join(allowed)}" if allowed else ""
            raise ConfigError(msg, key=key, value=err.get("input"), file=file) from None
        if err["type"] == "missing":
            raise ConfigError("required key is missing", key=key, value=None,
                              file=file) from None
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(msg, key=key, value=err.get("input") if loc else None,
                          file=file) from None


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None,
                    *, file: str = CONFIG_FILE) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a copy of ``raw``.

    >>> apply_overrides({"a": {"b": 1}, "l": [{"x": 1}]}, ["a.b=2", "l.0.x=[1, 2]"])
    {'a': {'b': 2}, 'l': [{'x': [1, 2]}]}
    """
    out = json.loads(json.dumps(raw))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError("--set takes key.path=value", key="--set", value=item, file=file)
        path, _, text = item.partition("=")
        parts = [p for p in path.strip().split(".") if p]
        if not parts:
            raise ConfigError("empty key path", key="--set", value=item, file=file)
        try:
            value = parse_yaml(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"value is not valid YAML: {exc}", key=path, value=text,
                              file=file) from None
        cur: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(cur, list):
                if not part.isdigit() or int(part) >= len(cur):
                    raise ConfigError(f"list index out of range (length {len(cur)})",
                                      key=".".join(parts[:i + 1]), value=part, file=file)
                if last:
                    cur[int(part)] = value
                else:
                    cur = cur[int(part)]
            elif isinstance(cur, dict):
                if last:
                    cur[part] = value
                else:
                    cur = cur.setdefault(part, {})
            else:
                raise ConfigError("cannot set a key inside a scalar",
                                  key=".".join(parts[:i]), value=cur, file=file)
    return out


def read_raw(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"no {CONFIG_FILE} here; pass -p DIR of a project", key="(file)",
                          value=str(path))
    text = path.read_text(encoding="utf-8")
    try:
        raw = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(parse)"
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", key=where,
                          value=None, file=str(path)) from None
    if raw is None:
        raise ConfigError("the file is empty", key="(top level)", value="", file=str(path))
    return raw


def load_config(project_dir: str | Path = ".", overrides: list[str] | None = None,
                ) -> tuple[ProjectConfig, dict[str, Any]]:
    """Read ``cd4ml.yaml`` in ``project_dir``, apply overrides, validate. Returns (config, raw)."""
    path = Path(project_dir) / CONFIG_FILE
    raw = apply_overrides(read_raw(path), overrides, file=str(path))
    return validate_config(raw, file=str(path)), raw


def config_hash(cfg: ProjectConfig) -> str:
    """A stable sha256 of the validated config (defaults included)."""
    blob = json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()
