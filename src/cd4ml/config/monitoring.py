"""Config of monitoring: how drift is judged (``monitoring.drift``), the alert rules and
where alerts are sent (``monitoring.alerts``), how often they run (``interval_s``), and
where a tabular model's rows take their event time from (``event_time``).

The method and metric names here must match ``cd4ml.monitoring`` (config imports nothing
of ours, so the names are listed, and tests check the lists).

>>> from cd4ml.errors import ConfigError
>>> from cd4ml.config import validate_config
>>> raw = {"project": "p", "task": "classification", "data": {"sources": {"s": {
...        "path": "s.csv"}}, "main": "s", "target": "y"}, "monitoring": {"alerts": {
...        "rules": [{"name": "r", "metric": "drift.shar", "threshold": 0.5}]}}}
>>> try:
...     validate_config(raw)
... except ConfigError as e:
...     print(str(e).split('; ')[0])
cd4ml.yaml: monitoring.alerts.rules.0.metric = 'drift.shar': unknown metric (did you mean 'drift.share'?)
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from cd4ml.config._strict import _Strict

#: The drift methods (``cd4ml.monitoring.methods.METHODS``).
DRIFT_METHODS: tuple[str, ...] = ("ks", "chisquare", "z", "wasserstein", "jensenshannon",
                                  "psi")


class DriftColumnConfig(_Strict):
    method: str | None = Field(None, description=(
        f"the column's drift method, one of {', '.join(DRIFT_METHODS)} (default: by the "
        "column's kind and the reference's size)"))
    threshold: float | None = Field(None, gt=0, description=(
        "p-value below which a test says drift, or distance from which a distance does"))

    @field_validator("method")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        if v is not None and v not in DRIFT_METHODS:
            raise ValueError(f"method = {v!r} is not a drift method; expected one of "
                             f"{', '.join(DRIFT_METHODS)}")
        return v


class DriftConfig(_Strict):
    alpha: float = Field(0.05, gt=0, le=1, description="significance level of the tests")
    min_effect: float = Field(0.1, gt=0, description=(
        "the normed Wasserstein or Jensen-Shannon distance a significant test must also show"))
    require_both: bool = Field(True, description=(
        "a verdict needs significance and a practical effect (false: the method alone)"))
    min_rows: int = Field(30, ge=1, description=(
        "fewer non-missing rows on a side: 'insufficient data', no verdict"))
    missing_rate_change: float = Field(0.1, gt=0, le=1, description=(
        "a change of the missing-value share this large (and significant) is drift"))
    new_category_rate: float = Field(0.05, gt=0, le=1, description=(
        "this share of values never seen in training is drift"))
    drift_share: float = Field(0.5, gt=0, le=1, description=(
        "the dataset drifts when this share of its columns does"))
    multivariate: bool = Field(False, description=(
        "also judge the inputs together by PCA reconstruction error (drift.multivariate; "
        "tabular models registered with a reference profile)"))
    columns: dict[str, DriftColumnConfig] = Field(default_factory=dict)


# -- alert rules (monitoring.alerts) ---------------------------------------------------

#: Metrics an alert rule may watch (``cd4ml.monitoring`` computes them; config imports
#: nothing of ours, so the names are listed here).
ALERT_METRICS: tuple[str, ...] = (
    "drift.share", "drift.columns", "drift.multivariate", "prediction.score", "skew.share",
    "quality.degradation", "concept.drift",
    "estimated.degradation", "errors.rate", "refused.rate", "latency.p99_ms", "log.dropped")
#: ``quality.<m>`` (realized, on feedback) and ``estimated.<m>`` (without labels) exist
#: for each of these task metrics.
QUALITY_METRICS: tuple[str, ...] = (
    "roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "log_loss", "brier",
    "wmae", "mae", "rmse", "mape", "r2")


def alert_metric_names() -> list[str]:
    """Every metric name an alert rule may use, in the order the error message lists."""
    return [*ALERT_METRICS, *(f"{p}.{m}" for p in ("quality", "estimated")
                              for m in QUALITY_METRICS)]


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(v: Any) -> float:
    """Seconds in a duration: ``"10m"``, ``"1h30m"``, ``"7d"``, ``"0s"`` or a number of
    seconds. Raises ValueError naming the accepted form.

    >>> parse_duration("1h30m"), parse_duration("7d"), parse_duration(90)
    (5400.0, 604800.0, 90.0)
    """
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        seconds = float(v)
    elif isinstance(v, str) and v.strip() and \
            "".join(m.group(0) for m in _DURATION_PART.finditer(v.strip())) == v.strip():
        seconds = sum(float(n) * _UNIT_S[u] for n, u in _DURATION_PART.findall(v.strip()))
    else:
        raise ValueError(f"{v!r} is not a duration; give e.g. '30s', '10m', '1h30m', '7d' "
                         f"(units ms, s, m, h, d, w) or a number of seconds")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{v!r}: a duration must be finite and >= 0")
    return seconds


class AlertWindowConfig(_Strict):
    """The rows a rule's metric is computed on: the last ``size`` of log time before the
    evaluation (``time``), the last ``size`` logged rows (``count``) or the last ``size``
    of event time (``event``: a forecast's date; a tabular model's declared column,
    ``monitoring.event_time``, else the request's ``X-Event-Time``).

    An event window ends at the event-time watermark, not at the wall clock: the latest
    event time in the version's log that is not after the evaluation's ``now``, the
    window being ``(watermark - size, watermark]``. So a replay of 2017 data is judged on
    its latest 2017 rows. Rows without an event time are left out; with none at all the
    window is empty, "insufficient data", never an alarm."""

    by: Literal["time", "count", "event"] = "time"
    size: str | int = Field("1d", description=(
        "time and event: a duration such as '1h', '1d' or '7d'; count: a number of rows"))

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        """``window: 1d`` means ``{by: time, size: 1d}``."""
        return {"by": "time", "size": v} if isinstance(v, (str, int)) else v

    @model_validator(mode="after")
    def _size_fits_by(self) -> AlertWindowConfig:
        if self.by == "count":
            if isinstance(self.size, str) or isinstance(self.size, bool) or self.size < 1:
                raise ValueError(f"size {self.size!r}: a count window takes a number of rows "
                                 f">= 1, e.g. 10000")
        elif parse_duration(self.size) <= 0:
            raise ValueError(f"size {self.size!r}: a {self.by} window needs a duration > 0, "
                             f"e.g. '1d'")
        return self

    @property
    def seconds(self) -> float | None:
        """The window's length in seconds (None for a count window)."""
        return None if self.by == "count" else parse_duration(self.size)

    @property
    def rows(self) -> int | None:
        """The window's length in rows (None for a time or event window)."""
        return int(self.size) if self.by == "count" else None


class AlertRuleConfig(_Strict):
    """One alert rule: ``metric`` over ``window`` compared with ``threshold``.

    The condition holds when the value is above (``direction: above``) or below the
    threshold; it must hold for ``for`` before a pending alert fires, and a firing alert
    resolves only once the value crosses ``resolve`` (hysteresis: between ``resolve`` and
    ``threshold`` a firing alert keeps firing and none starts). A window of fewer than
    ``min_rows`` rows is "insufficient data" and never changes the state.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="unique among the rules")
    metric: str = Field(description=(
        "what is watched: drift.share, prediction.score, quality.degradation, ... "
        "(cd4ml.config.alert_metric_names())"))
    direction: Literal["above", "below"] = Field("above", description=(
        "fire when the value is above (or below) the threshold"))
    threshold: float = Field(allow_inf_nan=False)
    resolve: float = Field(allow_inf_nan=False, description=(
        "the value from which a firing alert resolves (default: the threshold); for "
        "'above' at most the threshold, for 'below' at least it"))
    for_: str | float = Field("0s", alias="for", description=(
        "how long the condition must hold before pending becomes firing, e.g. '5m'"))
    min_rows: int = Field(100, ge=1, description="fewer rows: insufficient data, no change")
    window: AlertWindowConfig = Field(default_factory=AlertWindowConfig)
    severity: Literal["warning", "critical"] = "warning"

    @model_validator(mode="before")
    @classmethod
    def _resolve_defaults_to_threshold(cls, v: Any) -> Any:
        if isinstance(v, dict) and v.get("resolve") is None and "threshold" in v:
            return {**v, "resolve": v["threshold"]}
        return v

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        names = alert_metric_names()
        if v in names:
            return v
        hint = difflib.get_close_matches(v, names, n=1)
        raise ValueError(
            "unknown metric" + (f" (did you mean {hint[0]!r}?)" if hint else "") +
            f"; allowed: {', '.join(ALERT_METRICS)}, and quality.<m> or estimated.<m> for "
            f"m in {', '.join(QUALITY_METRICS)}")

    @field_validator("for_")
    @classmethod
    def _duration(cls, v: str | float) -> str | float:
        parse_duration(v)
        return v

    @field_validator("resolve")
    @classmethod
    def _hysteresis(cls, v: float, info: ValidationInfo) -> float:
        t, d = info.data.get("threshold"), info.data.get("direction")
        if t is None or d is None:
            return v
        if d == "above" and v > t:
            raise ValueError(f"must be <= threshold ({t}) for direction 'above': the alert "
                             f"resolves once the value falls to resolve")
        if d == "below" and v < t:
            raise ValueError(f"must be >= threshold ({t}) for direction 'below': the alert "
                             f"resolves once the value rises to resolve")
        return v

    @property
    def for_s(self) -> float:
        """``for`` in seconds."""
        return parse_duration(self.for_)


def _rule(name: str, metric: str, threshold: float, resolve: float, window: str,
          min_rows: int, **kw: Any) -> AlertRuleConfig:
    return AlertRuleConfig.model_validate({
        "name": name, "metric": metric, "threshold": threshold, "resolve": resolve,
        "window": {"by": "time", "size": window}, "min_rows": min_rows, **kw})


def default_alert_rules() -> list[AlertRuleConfig]:
    """The rules a project gets when ``monitoring.alerts.rules`` is absent."""
    return [
        # input drift: any input column drifts over a day of traffic (a column's verdict
        # already needs significance and a practical effect, monitoring.drift); resolves
        # when none does
        _rule("input_drift", "drift.columns", 0.0, 0.0, "1d", 1000),
        # prediction drift: the score's distance to the holdout outputs over a day
        _rule("prediction_drift", "prediction.score", 0.1, 0.05, "1d", 1000),
        # quality on feedback: the project's metric 10 % worse than on the reference
        # holdout (relative worsening), over a week of labelled rows
        _rule("quality", "quality.degradation", 0.1, 0.05, "7d", 200),
        # estimated quality (no labels yet): the same 10 % worsening, estimated
        _rule("estimated_quality", "estimated.degradation", 0.1, 0.05, "1d", 1000),
        # training-serving skew: any recomputed feature differing is a bug
        _rule("skew", "skew.share", 0.0, 0.0, "1d", 1, severity="critical"),
        # errors: more than 5 % of requests fail for 5 minutes; resolves under 1 %
        _rule("errors", "errors.rate", 0.05, 0.01, "1h", 100, **{"for": "5m"}),
    ]


class WebhookConfig(_Strict):
    """Where transitions (firing, resolved) are POSTed as JSON (Alertmanager-like)."""

    url: str = Field(description="http:// or https:// URL of the receiver")
    timeout_s: float = Field(5, gt=0, description="per attempt")
    retries: int = Field(3, ge=0, le=20, description=(
        "attempts after the first; then a dead letter is recorded and counted"))
    backoff_s: float = Field(1, ge=0, description=(
        "wait before the first retry, doubled before each next one"))
    headers: dict[str, str] = Field(default_factory=dict, description=(
        "sent with every POST, e.g. Authorization"))

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", v.strip()):
            raise ValueError("must be an http:// or https:// URL, e.g. "
                             "'http://127.0.0.1:9093/api/v2/alerts'")
        return v.strip()


class AlertsConfig(_Strict):
    rules: list[AlertRuleConfig] = Field(default_factory=default_alert_rules, description=(
        "absent: the shipped defaults: input_drift (drift.columns above 0: any drifted "
        "input column, 1d, 1000 rows), prediction_drift (prediction.score above 0.1, resolve 0.05, 1d, "
        "1000 rows), quality (quality.degradation above 0.1, resolve 0.05, 7d, 200 rows), "
        "estimated_quality (estimated.degradation above 0.1, resolve 0.05, 1d, 1000 rows), "
        "skew (skew.share above 0, 1d, 1 row, critical), errors (errors.rate above 0.05, "
        "resolve 0.01, for 5m, 1h, 100 rows); a list replaces them ([] for none)"))
    webhook: WebhookConfig | None = Field(None, description="no webhook: nothing is sent")

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, v: list[AlertRuleConfig]) -> list[AlertRuleConfig]:
        names = [r.name for r in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(dup)}")
        return v


class MonitoringConfig(_Strict):
    event_time: str | None = Field(None, min_length=1, description=(
        "tabular tasks: the request field that holds each row's event time (its logged "
        "input: a number is epoch seconds, text an ISO 8601 date or date-time, UTC unless "
        "it gives an offset; other values give the row no event time); default: the "
        "request's X-Event-Time header. A forecast's event time is the date its request "
        "names"))
    interval_s: float = Field(60, ge=0, description=(
        "cd4ml serve evaluates the alert rules this often, in a process of its own, one "
        "evaluator at a time per project (0: not inside cd4ml serve; run cd4ml monitor)"))
    drift: DriftConfig = Field(default_factory=DriftConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
