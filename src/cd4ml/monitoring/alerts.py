"""Alert rules as a pure state machine: an observation of a rule's metric in, the new
state (and the transition, if there is one) out. No clock, no store, no I/O.

::

    inactive ──condition──▶ pending ──held for `for`──▶ firing ──crosses resolve──▶ resolved
       ▲                       │                                                     │
       └──condition stops──────┘               condition again: a new episode ◀──────┘

The condition is ``value > threshold`` (``direction: above``) or ``value < threshold``
(``below``). A firing alert resolves once ``value <= resolve`` (``above``) or
``value >= resolve`` (``below``), so a value between the two thresholds keeps a firing
alert firing and starts none (hysteresis). With ``for: 0s`` a true condition fires at
once (pending and firing at the same instant). An observation without a value (the
metric is undefined in the window) or with fewer than ``min_rows`` rows is
"insufficient data": the state is kept as it was and the observation recorded.

Each rule and subject (``model@version``) has a run of *episodes*, numbered from 1; a
resolved alert that fires again starts the next episode. The store keeps one row per
episode and uses the episode number for its compare-and-set.

>>> import datetime as dt
>>> from cd4ml.config.monitoring import AlertRuleConfig
>>> rule = AlertRuleConfig(name="drift", metric="drift.share", threshold=0.5, resolve=0.3,
...                        **{"for": "10m"}, min_rows=10)
>>> t0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
>>> state = None
>>> for minutes, value in [(0, 0.6), (5, 0.7), (10, 0.55), (15, 0.4), (20, 0.2)]:
...     obs = Observation(rule="drift", subject="m@3", value=value, rows=100,
...                       at=t0 + dt.timedelta(minutes=minutes))
...     state, change = step(rule, state, obs)
...     print(minutes, state.state, change and f"{change.from_state} -> {change.to_state}")
0 pending inactive -> pending
5 pending None
10 firing pending -> firing
15 firing None
20 resolved firing -> resolved
>>> state.episode, state.message
(1, 'drift.share = 0.2 <= 0.3 over the last 1d (100 rows)')
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cd4ml.config.monitoring import AlertRuleConfig

__all__ = ["Observation", "AlertState", "Transition", "step", "STATES", "NOTIFIED"]

Status = Literal["inactive", "pending", "firing", "resolved"]
#: every state, in the order alerts are listed (the most urgent first)
STATES: tuple[Status, ...] = ("firing", "pending", "resolved", "inactive")
#: transitions into these states are sent to the webhook
NOTIFIED: frozenset[str] = frozenset({"firing", "resolved"})


@dataclass(frozen=True, slots=True)
class Observation:
    """One evaluation of a rule's metric over its window, for one subject."""

    rule: str  #: the rule's name
    subject: str  #: what is watched, e.g. ``sales@3`` (model@version)
    value: float | None  #: None: the metric is undefined in the window
    rows: int  #: rows in the window
    at: dt.datetime  #: when it was evaluated (timezone-aware)
    detail: dict[str, Any] = field(default_factory=dict)  #: e.g. the drifted columns


@dataclass(frozen=True, slots=True)
class AlertState:
    """Where one rule stands for one subject after an observation (one store row)."""

    rule: str
    subject: str
    episode: int  #: 1 for the first episode; +1 each time a resolved alert starts again
    state: Status
    severity: str
    metric: str
    value: float | None  #: the last observed value
    threshold: float
    resolve: float
    rows: int
    pending_since: dt.datetime | None  #: since when the condition holds (this episode)
    fired_at: dt.datetime | None
    resolved_at: dt.datetime | None
    updated_at: dt.datetime  #: the last observation's time
    message: str
    insufficient: bool = False  #: the last observation was insufficient data
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AlertState:
        """The state held by a store row (``MetadataStore.alert_states``)."""
        return cls(**{f: row.get(f) for f in cls.__dataclass_fields__ if f != "detail"},
                   detail=dict(row.get("detail") or {}))


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of state, to audit and (into firing or resolved) to send."""

    rule: str
    subject: str
    episode: int
    severity: str
    metric: str
    from_state: Status
    to_state: Status
    value: float | None
    threshold: float
    resolve: float
    rows: int
    at: dt.datetime
    started_at: dt.datetime | None  #: when the alert fired (pending: since when pending)
    ended_at: dt.datetime | None  #: when it resolved
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def notified(self) -> bool:
        """Whether the webhook is told (into firing or resolved)."""
        return self.to_state in NOTIFIED


def _condition(rule: AlertRuleConfig, value: float) -> bool:
    return value > rule.threshold if rule.direction == "above" else value < rule.threshold


def _cleared(rule: AlertRuleConfig, value: float) -> bool:
    return value <= rule.resolve if rule.direction == "above" else value >= rule.resolve


def _window(rule: AlertRuleConfig) -> str:
    w = rule.window
    return f"the last {w.size} rows" if w.by == "count" else \
        f"the last {w.size}" + (" of event time" if w.by == "event" else "")


def _describe(rule: AlertRuleConfig, value: float, rows: int, how: str) -> str:
    """``how``: ``over`` (the condition holds), ``under`` (it does not), ``resolved`` (the
    value crossed resolve) or ``band`` (between resolve and threshold: still firing)."""
    above = rule.direction == "above"
    cmp, bound = {"over": (">" if above else "<", rule.threshold),
                  "under": ("<=" if above else ">=", rule.threshold),
                  "resolved": ("<=" if above else ">=", rule.resolve),
                  "band": (">" if above else "<", rule.resolve)}[how]
    tail = "; still firing until it crosses resolve" if how == "band" else ""
    return (f"{rule.metric} = {value:.4g} {cmp} {bound:g} over {_window(rule)} "
            f"({rows:,} rows){tail}")


def _fresh(rule: AlertRuleConfig, obs: Observation, episode: int) -> AlertState:
    return AlertState(rule=rule.name, subject=obs.subject, episode=episode,
                      state="inactive", severity=rule.severity, metric=rule.metric,
                      value=None, threshold=rule.threshold, resolve=rule.resolve, rows=0,
                      pending_since=None, fired_at=None, resolved_at=None,
                      updated_at=obs.at, message="")


def _check(rule: AlertRuleConfig, previous: AlertState | None, obs: Observation) -> None:
    if obs.rule != rule.name:
        raise ValueError(f"observation of rule {obs.rule!r} given to rule {rule.name!r}")
    if obs.at.tzinfo is None:
        raise ValueError(f"observation at {obs.at!r} is naive; give a timezone-aware time")
    if previous is not None and (previous.rule, previous.subject) != (rule.name, obs.subject):
        raise ValueError(f"previous state of {previous.rule!r} on {previous.subject!r} "
                         f"given for {rule.name!r} on {obs.subject!r}")


def step(rule: AlertRuleConfig, previous: AlertState | None, obs: Observation,
         ) -> tuple[AlertState, Transition | None]:
    """The state after ``obs``, and the transition that led there (None: no change).

    ``previous`` is the subject's current state for this rule (None: never evaluated).
    The rule's current threshold, resolve, severity and ``for`` apply, so an edited rule
    takes effect on a running alert at its next observation.
    """
    _check(rule, previous, obs)
    prev = previous or _fresh(rule, obs, episode=1)
    base = replace(prev, severity=rule.severity, metric=rule.metric,
                   threshold=rule.threshold, resolve=rule.resolve, rows=obs.rows,
                   updated_at=obs.at, detail=dict(obs.detail), insufficient=False)
    value = obs.value
    if value is None or not math.isfinite(value) or obs.rows < rule.min_rows:
        why = (f"{obs.rows:,} rows < min_rows {rule.min_rows:,}" if obs.rows < rule.min_rows
               else f"{rule.metric} is undefined in the window")
        return replace(base, value=None if value is None or not math.isfinite(value)
                       else float(value), insufficient=True,
                       message=f"insufficient data: {why}; still {prev.state}"), None
    value = float(value)
    new = _next(rule, replace(base, value=value), value, obs.at)
    if new.state == prev.state and new.episode == prev.episode:
        return new, None
    return new, Transition(
        rule=rule.name, subject=obs.subject, episode=new.episode, severity=rule.severity,
        metric=rule.metric, from_state=prev.state, to_state=new.state, value=value,
        threshold=rule.threshold, resolve=rule.resolve, rows=obs.rows, at=obs.at,
        started_at=new.fired_at or new.pending_since, ended_at=new.resolved_at,
        message=new.message, detail=dict(obs.detail))


def _next(rule: AlertRuleConfig, s: AlertState, value: float, at: dt.datetime,
          ) -> AlertState:
    """The state after a sufficient observation ``value`` (``s``: the previous state
    with this observation's value, rows and time)."""
    holds = _condition(rule, value)
    if s.state in ("inactive", "resolved"):
        if not holds:
            return replace(s, message=_describe(rule, value, s.rows, "under"))
        episode = s.episode + 1 if s.state == "resolved" else s.episode
        s = replace(s, episode=episode, state="pending", pending_since=at, fired_at=None,
                    resolved_at=None)
        return _promote(rule, s, value, at)
    if s.state == "pending":
        if not holds:
            return replace(s, state="inactive", pending_since=None,
                           message=_describe(rule, value, s.rows, "under") +
                           " before 'for' elapsed")
        return _promote(rule, s, value, at)
    if _cleared(rule, value):  # firing
        return replace(s, state="resolved", resolved_at=at,
                       message=_describe(rule, value, s.rows, "resolved"))
    return replace(s, message=_describe(rule, value, s.rows, "over" if holds else "band"))


def _promote(rule: AlertRuleConfig, s: AlertState, value: float, at: dt.datetime,
             ) -> AlertState:
    """A pending state fires once its condition has held for ``rule.for_s``."""
    assert s.pending_since is not None
    held = (at - s.pending_since).total_seconds()
    if held >= rule.for_s:
        return replace(s, state="firing", fired_at=at,
                       message=_describe(rule, value, s.rows, "over"))
    return replace(s, message=_describe(rule, value, s.rows, "over") +
                   f" for {held:g}s of {rule.for_s:g}s")
