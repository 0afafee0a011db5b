"""Checks of a project that need more than its config: the model types (and their
``recency_half_life``) against the adapter registry, the metric and the gate rules
against the task, ``evaluation.leakage.allow`` against the inputs as far as the config
knows them.

``cd4ml.config`` imports nothing of ours, so it takes a model type or a metric as a
string; these checks run when a project loads (``open_project``), before any stage, with
the config's one-line errors.
"""

from __future__ import annotations

from cd4ml.config import ModelSpec, ProjectConfig
from cd4ml.errors import ConfigError, MissingExtraError
from cd4ml.tasks import task_of

__all__ = ["check_project", "age_column", "check_allowed", "RATE_METRICS"]

#: the most points a grid search may enumerate
MAX_GRID_POINTS = 1_000_000
#: group-gap metrics that are rates of a binary classifier's decisions
RATE_METRICS = ("tpr", "fpr", "selection_rate")


def check_project(cfg: ProjectConfig, *, file: str | None = None) -> None:
    """Raise :class:`ConfigError` (naming ``file``) for the first thing the task or the
    adapter registry refuses."""
    try:
        _check(cfg)
    except ConfigError as exc:
        if file is None or exc.file is not None:
            raise
        raise ConfigError(exc.problem, key=exc.key, value=exc.value, file=file) from None


def age_column(cfg: ProjectConfig) -> str | None:
    """The column a tabular task's rows are aged by for ``params.recency_half_life``:
    ``split.column`` (``split.by: time``), else ``monitoring.event_time``; a forecast's
    rows are aged by ``data.time``."""
    if cfg.task == "forecast":
        return cfg.data.time
    if cfg.split.method(cfg.task) == "time":
        return cfg.split.column
    return cfg.monitoring.event_time


def _check_leakage(cfg: ProjectConfig) -> None:
    """``evaluation.leakage.allow`` names inputs: a forecast's covariates and static
    columns; for a tabular task, no target, id or dropped column (its other inputs are
    the table's columns, known once the data is read: the leakage stage checks those)."""
    allow = cfg.evaluation.leakage.allow
    if cfg.task == "forecast":
        check_allowed(allow, [*cfg.features.covariates, *cfg.features.static])
        return
    data = cfg.data
    role = {data.target: "the target", **({data.id: "the id"} if data.id else {}),
            **{d: "dropped (inputs.drop)" for d in cfg.inputs.drop}}
    for i, name in enumerate(allow):
        if name in role:
            raise ConfigError(f"not an input: it is {role[name]}",
                              key=f"evaluation.leakage.allow.{i}", value=name)


def check_allowed(allow: list[str], known: list[str]) -> None:
    """A :class:`ConfigError` for the first name of ``evaluation.leakage.allow`` that is
    not one of ``known``, the inputs the leakage check looks at."""
    for i, name in enumerate(allow):
        if name not in known:
            raise ConfigError(f"not an input the leakage check looks at; inputs: "
                              f"{', '.join(known) or '(none)'}",
                              key=f"evaluation.leakage.allow.{i}", value=name)


def _check_weights(cfg: ProjectConfig, spec: ModelSpec, weighted: bool, where: str) -> None:
    """A spec's ``metric_weights`` and ``recency_half_life``, as the fit would refuse them."""
    from cd4ml.errors import ModelError
    from cd4ml.training.fitdata import check_metric_weights
    from cd4ml.training.recency import HALF_LIFE, check_half_life

    mw = spec.params.get("metric_weights", True)
    try:
        check_metric_weights(mw, where=f"{where}.params.metric_weights")
    except ModelError:
        raise ConfigError("expected true (fit with the metric's row weights) or false "
                          "(every row once)", key=f"{where}.params.metric_weights",
                          value=mw) from None
    value = spec.params.get(HALF_LIFE)
    if value is None:
        return

    key = f"{where}.params.{HALF_LIFE}"
    try:
        check_half_life(value, where=key)
    except ModelError:
        raise ConfigError("must be a number of weeks > 0 (the age at which a row counts "
                          "half)", key=key, value=value) from None
    if not weighted:
        raise ConfigError(f"{spec.type} does not take sample weights; recency weighting "
                          f"is for models that do", key=key, value=value)
    if age_column(cfg) is None:
        raise ConfigError(f"task {cfg.task} has no time to age rows by: split by time "
                          f"(split.by: time, split.column) or name a time input in "
                          f"monitoring.event_time", key=key, value=value)


def _check(cfg: ProjectConfig) -> None:
    from cd4ml.training.adapters import adapter_for

    task = task_of(cfg.task)
    metric = cfg.evaluation.metric or task.default_metric
    task.check_metric(metric)
    for group in ("candidates", "baselines"):
        for i, spec in enumerate(getattr(cfg.models, group) or []):
            adapter = adapter_for(spec.type, cfg.task, where=f"models.{group}.{i}.type")
            _check_weights(cfg, spec, adapter.weighted, f"models.{group}.{i}")
            if spec.search is not None:
                _check_search(cfg.task, spec, where=f"models.{group}.{i}")
    _check_holidays(cfg)
    _check_fallbacks(cfg)
    _check_leakage(cfg)
    higher = task.higher_is_better(metric)
    if higher and cfg.gate.max_metric is not None:
        raise ConfigError(f"{metric} is higher-is-better: use gate.min_metric",
                          key="gate.max_metric", value=cfg.gate.max_metric)
    if not higher and cfg.gate.min_metric is not None:
        raise ConfigError(f"{metric} is lower-is-better: use gate.max_metric",
                          key="gate.min_metric", value=cfg.gate.min_metric)
    allowed = [*(RATE_METRICS if cfg.task == "classification" else ()), *task.metrics]
    for i, rule in enumerate(cfg.gate.max_group_gap):
        if rule.metric not in allowed:
            raise ConfigError(f"not a group metric of task {cfg.task}; known: "
                              f"{', '.join(allowed)}", key=f"gate.max_group_gap.{i}.metric",
                              value=rule.metric)


def _check_holidays(cfg: ProjectConfig) -> None:
    from cd4ml.features.holidays import BUILT_IN

    feats = cfg.features
    known = [*BUILT_IN, *(n for n in feats.holiday_dates if n not in BUILT_IN)]
    _each_once_of(feats.holidays, known, "features.holidays",
                  f"not a known holiday; known: {', '.join(known)} (or give its dates in "
                  f"features.holiday_dates)")
    _each_once_of(feats.holiday_align or [], feats.holidays, "features.holiday_align",
                  f"not one of features.holidays {feats.holidays}")


def _each_once_of(names: list[str], allowed: list[str], key: str, why: str) -> None:
    """Each of ``names`` is in ``allowed`` (else ``why``) and listed once."""
    for i, h in enumerate(names):
        if h not in allowed:
            raise ConfigError(why, key=f"{key}.{i}", value=h)
        if names.index(h) != i:
            raise ConfigError("listed twice", key=f"{key}.{i}", value=h)


def _check_fallbacks(cfg: ProjectConfig) -> None:
    """A fallback's slice columns must reach the model as features; its baseline must be
    one of the project's."""
    baselines = [b.name for b in cfg.models.baselines or []]
    for i, spec in enumerate(cfg.models.candidates):
        fb = spec.fallback
        if fb is None:
            continue
        where = f"models.candidates.{i}.fallback"
        if cfg.task != "forecast":
            raise ConfigError("a fallback to a baseline per slice is for forecasts only",
                              key=where, value=spec.name)
        feats = [*(cfg.data.series or [] if cfg.features.series_keys_as_features else []),
                 *cfg.features.static]
        for j, col in enumerate(fb.by):
            if col not in feats:
                raise ConfigError(f"not a slice the model sees; slice columns: series keys "
                                  f"or static columns {feats}", key=f"{where}.by.{j}",
                                  value=col)
        if fb.to is not None and fb.to not in baselines:
            raise ConfigError(f"not a baseline of models.baselines {baselines}",
                              key=f"{where}.to", value=fb.to)


def _check_search(task: str, spec: ModelSpec, *, where: str) -> None:
    """A search on a candidate, over parameters its model type takes, gridded only where
    the grid has points."""
    from cd4ml.training.param_names import allowed_params

    assert spec.search is not None
    if where.startswith("models.baselines"):
        raise ConfigError("baselines are not searched: search is for candidates",
                          key=f"{where}.search", value=spec.search.method)
    if spec.search.method != "grid" and not _installed("optuna"):
        raise MissingExtraError(f"a {spec.search.method} search ({where}.search)", "ml",
                                "optuna")
    allowed = allowed_params(spec.type, task)
    for name in spec.search.space:
        key = f"{where}.search.space"
        if name not in allowed:
            takes = f"allowed: {', '.join(allowed)}" if allowed else "it takes none"
            raise ConfigError(f"{spec.type} takes no parameter {name!r}; {takes}", key=key,
                              value=name)
        problem = spec.search.grid_problem(name)
        if problem:
            raise ConfigError(problem, key=f"{key}.{name}",
                              value=spec.search.space[name].model_dump(exclude_defaults=True,
                                                                      by_alias=True))
    if spec.search.method == "grid" and spec.search.grid_size() > MAX_GRID_POINTS:
        raise ConfigError(f"a grid of {spec.search.grid_size():,} points: at most "
                          f"{MAX_GRID_POINTS:,} (use larger steps, or random or tpe)",
                          key=f"{where}.search.space", value=sorted(spec.search.space))


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: blocked (sys.modules[module] = None)
        return False
