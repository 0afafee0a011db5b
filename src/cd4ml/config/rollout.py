"""Config of the rollout controller (``rollout:``): how long a canary step lasts, what
its analysis checks and with which thresholds, how a bandit adapts its split and how an
A/B test decides.

Durations take what the rest of the config takes (``30s``, ``10m``, ``1h30m`` or a
number of seconds) and are kept in seconds. Every check has ``min_samples``: with fewer
(requests, rows, labelled rows) its result is Inconclusive, never a pass.

>>> from cd4ml.errors import ConfigError
>>> from cd4ml.config import validate_config
>>> raw = {"project": "p", "task": "classification", "data": {"sources": {"s": {
...        "path": "s.csv"}}, "main": "s", "target": "y"},
...        "rollout": {"step_s": "5m", "analysis": {"error_rate": {"max_increase": 2}}}}
>>> try:
...     validate_config(raw)
... except ConfigError as e:
...     print(str(e))
cd4ml.yaml: rollout.analysis.error_rate.max_increase = 2: Input should be less than or equal to 1
>>> from cd4ml.config.rollout import RolloutConfig
>>> RolloutConfig.model_validate({"step_s": "5m", "bandit": {"update_s": 90}}).step_s
300.0
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from cd4ml.config._strict import _Strict
from cd4ml.config.monitoring import parse_duration

__all__ = ["RolloutConfig", "AnalysisConfig", "BanditConfig", "ABConfig", "ErrorRateCheck",
           "LatencyCheck", "DriftCheck", "QualityCheck", "EstimatedCheck"]


def _seconds(v: Any) -> float:
    """A duration in seconds (``parse_duration``'s ValueError names the accepted form)."""
    return parse_duration(v)


class _Check(_Strict):
    enabled: bool = Field(True, description="false: the check is left out of the analysis")
    min_samples: int = Field(100, ge=1, description=(
        "fewer (requests, rows or labelled rows, per arm) make the check Inconclusive"))


class ErrorRateCheck(_Check):
    """The canary's share of requests that raised (``cd4ml_routed_requests_total``,
    outcome error over ok + error, since the step began) against the stable's."""

    max_increase: float = Field(0.01, ge=0, le=1, description=(
        "Failed when the canary's error rate exceeds the stable's by more than this "
        "(absolute: 0.01 is one point)"))


class LatencyCheck(_Check):
    """The canary's latency quantile (``cd4ml_routed_latency_seconds``, interpolated in
    its buckets as Prometheus' histogram_quantile does) against the stable's."""

    quantile: float = Field(0.99, gt=0, lt=1, description="which quantile, e.g. 0.99")
    max_ratio: float = Field(1.5, ge=1, description=(
        "Failed when the canary's quantile is above the stable's times this ..."))
    min_increase_ms: float = Field(5.0, ge=0, description=(
        "... and above it by more than this many milliseconds (bucket noise is not a "
        "regression)"))


class DriftCheck(_Check):
    """The share of the canary's inputs that drift from its reference profile over the
    step's window (monitoring's judgement of the window, ``monitoring.drift``)."""

    min_samples: int = Field(200, ge=1, description="fewer canary rows: Inconclusive")
    max_share: float | None = Field(None, gt=0, le=1, description=(
        "Failed when this share of the canary's inputs drift and more than of the "
        "stable's (default: monitoring.drift.drift_share)"))


class QualityCheck(_Check):
    """The task metric (``evaluation.metric``) on the step's labelled rows (feedback),
    canary against stable."""

    min_samples: int = Field(200, ge=1, description="fewer labelled rows in an arm: "
                                                    "Inconclusive")
    max_degradation: float = Field(0.05, ge=0, description=(
        "Failed when the canary's metric is worse than the stable's by more than this, "
        "relative (0.05: 5 % worse)"))


class EstimatedCheck(_Check):
    """Estimated performance without labels (CBPE, binary classifiers), canary
    against stable, on every row of the step."""

    min_samples: int = Field(500, ge=1, description="fewer rows in an arm: Inconclusive")
    max_degradation: float = Field(0.05, ge=0, description=(
        "Failed when the canary's estimate is worse than the stable's by more than this, "
        "relative"))


class AnalysisConfig(_Strict):
    error_rate: ErrorRateCheck = Field(default_factory=ErrorRateCheck)
    latency: LatencyCheck = Field(default_factory=LatencyCheck)
    drift: DriftCheck = Field(default_factory=DriftCheck)
    quality: QualityCheck = Field(default_factory=QualityCheck)
    estimated: EstimatedCheck = Field(default_factory=EstimatedCheck)


Outcome = Literal["auto", "reward", "actual"]
_OUTCOME = ("what an arm is judged on: reward (feedback's reward), actual (derived from "
            "the label: 1 when a classifier was right, else the absolute error), auto "
            "(reward where given, else actual)")


class BanditConfig(_Strict):
    """How a bandit deployment's split adapts to the rewards its arms earn."""

    policy: Literal["thompson", "epsilon_greedy"] = "thompson"
    epsilon: float = Field(0.1, ge=0, le=1, description="epsilon_greedy: explore share")
    reward: Literal["binary", "continuous"] = Field("binary", description=(
        "binary: rewards in [0, 1] (Beta posterior); continuous: any finite number"))
    outcome: Outcome = Field("auto", description=_OUTCOME)
    update_s: float = Field(300.0, gt=0, description=(
        "the shares are computed again this often (a duration)"))
    min_share: float = Field(0.01, ge=0, lt=0.5, description=(
        "each arm keeps at least this share, so it can still earn rewards"))
    min_change: float = Field(0.01, ge=0, lt=1, description=(
        "the shares are written only when one moves by more than this (0.01: a point)"))
    seed: int = Field(0, ge=0, description="the seed of the policy's share estimate")

    @field_validator("update_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return _seconds(v)


class ABConfig(_Strict):
    """How an A/B deployment's arms are compared: the always-valid test (mSPRT), so a
    look every ``look_s`` keeps its error rates."""

    alpha: float = Field(0.05, gt=0, lt=1, description="the test's false-positive rate")
    min_effect: float = Field(0.0, ge=0, description=(
        "a confidence sequence inside +-min_effect (outcome units) is no difference "
        "(0: only max_n ends a test without a winner)"))
    tau: float = Field(0.1, gt=0, description=(
        "the effect size, in standard deviations of the outcome, the test is most "
        "sensitive to"))
    min_n: int = Field(100, ge=2, description="outcomes per arm before anything is decided")
    max_n: int = Field(50_000, ge=3, description=(
        "outcomes per arm after which no evidence means no detectable difference"))
    outcome: Outcome = Field("auto", description=_OUTCOME)
    look_s: float = Field(600.0, gt=0, description="the arms are compared this often")

    @field_validator("look_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return _seconds(v)

    @model_validator(mode="after")
    def _n(self) -> ABConfig:
        if self.max_n <= self.min_n:
            raise ValueError(f"max_n = {self.max_n} must be > min_n = {self.min_n}")
        return self


class RolloutConfig(_Strict):
    """The rollout controller: it decides a canary's steps (by ``automation``: manual
    runs nothing, assisted proposes, automatic promotes or aborts), a bandit's split and
    an A/B test's outcome. ``cd4ml serve`` runs it every ``interval_s`` in a process of
    its own, one per project; ``cd4ml rollout controller`` runs it alone."""

    interval_s: float = Field(30.0, ge=0, description=(
        "how often the controller looks (a duration; 0: cd4ml serve does not start it)"))
    step_s: float = Field(600.0, gt=0, description=(
        "how long a canary step runs before its analysis decides it (a duration)"))
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    bandit: BanditConfig = Field(default_factory=BanditConfig)
    ab: ABConfig = Field(default_factory=ABConfig)

    @field_validator("interval_s", "step_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return _seconds(v)
