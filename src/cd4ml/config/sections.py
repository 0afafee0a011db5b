"""Config sections of the training side: data, features, inputs, split, models,
evaluation, gate, registry."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from cd4ml.config._strict import _Strict
from cd4ml.config.search import SearchConfig


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
    holidays: list[str] = Field(default_factory=list, description=(
        "holidays whose placement relative to each target period is a feature: built-in "
        "super_bowl, easter, labor_day, thanksgiving, christmas, or a name of "
        "holiday_dates"))
    holiday_dates: dict[str, list[dt.date]] = Field(default_factory=dict, description=(
        "any other calendar: holiday name -> its dates (every year the data and the "
        "forecasts span)"))
    holiday_window: int = Field(4, ge=1, description=(
        "periods before and after a holiday that get a position; farther is missing"))
    holiday_align: list[str] | None = Field(None, description=(
        "the holidays the seasonal lag aligns on (seasonal_naive_aligned); default: all "
        "of holidays"))
    holiday_align_window: int = Field(2, ge=0, description=(
        "periods before and after a holiday whose seasonal_naive_aligned reads last year "
        "at the same distance in days from the holiday (0: the holiday's period only)"))
    period_label: Literal["end", "start"] = Field("end", description=(
        "the date names the last day of its period (Walmart's weeks end on Friday) or "
        "its first"))

    @field_validator("holiday_dates")
    @classmethod
    def _dates_given(cls, v: dict[str, list[dt.date]]) -> dict[str, list[dt.date]]:
        for name, days in v.items():
            if not days:
                raise ValueError(f"holiday {name!r} has no dates")
        return v

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


class FallbackSpec(_Strict):
    """Forecasts: per slice, give way to a baseline where the model lost on validation."""

    by: list[str] = Field(min_length=1, description=(
        "slice columns: series keys or static columns (e.g. [Dept])"))
    to: str | None = Field(None, description=(
        "the baseline given way to (a models.baselines name; default: gate.baseline, "
        "else the first baseline)"))
    blend: bool = Field(True, description=(
        "per slice the model's weight among 0, 0.25, 0.5, 0.75, 1; false: the model or "
        "the baseline"))
    margin_pct: float = Field(0.0, ge=0, description=(
        "a slice gives way only where the model alone is more than this much worse than "
        "the baseline on validation (e.g. the gate's max_slice_regression_pct)"))

    @field_validator("by", mode="before")
    @classmethod
    def _one_column(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class ModelSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    type: str = Field(description="a model type of cd4ml.training.adapters (checked when "
                                  "the project loads)")
    params: dict[str, Any] = Field(default_factory=dict)
    fallback: FallbackSpec | None = Field(None, description=(
        "forecast candidates: blend with or fall back to a baseline per slice, chosen on "
        "validation"))
    search: SearchConfig | None = Field(None, description=(
        "candidates: search these params on validation (cd4ml.config.search); the best "
        "trial's params, over ``params``, are the recipe that is judged and bundled"))

    @model_serializer(mode="wrap")
    def _without_no_search(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A spec without a search dumps as it did before searches existed (its stages'
        cache keys and its bundles' bytes stay the same)."""
        out: dict[str, Any] = handler(self)
        for optional in ("search", "fallback"):  # likewise a spec without a fallback
            if optional in out and out[optional] is None:
                del out[optional]
        return out

    def tuned(self, params: dict[str, Any]) -> ModelSpec:
        """This spec with ``params`` over its own and no search: one trial's recipe."""
        return ModelSpec(name=self.name, type=self.type, params={**self.params, **params},
                         fallback=self.fallback)


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
SPLIT_KEYS: dict[str, tuple[str, ...]] = {
    "periods": ("holdout_periods", "validation_periods"),
    "values": ("train", "holdout", "exclude"),
    "time": ("column", "holdout_from", "exclude_from"),
    "group": ("columns", "holdout_share", "seed"),
    "random": ("holdout_share", "stratify", "seed"),
}
SPLIT_REQUIRED: dict[str, tuple[str, ...]] = {
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


class LeakageConfig(_Strict):
    """Leakage warnings in every run's report (``cd4ml.evaluation.leakage``): a model
    input that alone predicts the target on validation, or one that names each row. A
    finding is a warning, never a failure."""

    enabled: bool = Field(True, description="check the model's inputs on every run")
    max_auc: float = Field(0.98, gt=0.5, le=1, description=(
        "classification: flag an input whose one-feature model's validation ROC AUC is "
        "above this"))
    max_r2: float = Field(0.95, gt=0, le=1, description=(
        "regression and forecasts: flag an input whose one-feature model's validation R² "
        "is above this"))
    allow: list[str] = Field(default_factory=list, description=(
        "inputs kept on purpose: never flagged (each must be an input the check looks "
        "at: a tabular input, or a forecast's covariate or static column)"))


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
    leakage: LeakageConfig = Field(default_factory=LeakageConfig, description=(
        "warnings of inputs that give the answer away (not part of the models' stage "
        "keys: changing it refits nothing)"))

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
    compile: bool = Field(True, description=(
        "tabular LightGBM models: build the compiled predictor (lleaves) at registration; "
        "false: the booster itself answers (registration about 30 s faster for 100-300 "
        "trees; one row about 4x slower)"))
