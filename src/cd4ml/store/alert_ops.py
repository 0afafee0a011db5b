"""Alert operations of the metadata store: alert states, their transitions, deliveries.

An alert is one row per episode of a rule on a subject (``model@version``); the state
machine that moves it lives in :mod:`cd4ml.monitoring.alerts` (the store only keeps
what it decides, and does not import it: any object with the state's attributes will
do). States are rows, so they survive a restart: a new store object on the same URL
reads them back.

Writing a step is a compare-and-set: the caller says which state it computed from
(``previous``, as read from the store, or None for a rule never evaluated on the
subject), and the write happens only if the subject's newest row for that rule is still
that state. The newest row is locked while checked (PostgreSQL ``FOR UPDATE``; SQLite
writes one at a time), and ``(rule, subject, episode)`` is unique, so of two evaluators
starting the same episode at once one writes and the other is told what it found. A
written transition is an audited event (actor ``cd4ml monitor``) in the same
transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa

from cd4ml.errors import NotFoundError, StoreError
from cd4ml.store.mixin import StoreMixin
from cd4ml.store.tables import ALERT_STATES, DELIVERY_STATUSES, alert_deliveries, alerts

__all__ = ["AlertOps", "AlertWrite", "AlertRecord", "TransitionRecord", "ALERT_ACTOR",
           "alert_object"]

Row = dict[str, Any]
#: who the audit log says moved an alert
ALERT_ACTOR = "cd4ml monitor"
#: the state columns written from an alert state's attributes of the same names
_STATE_COLUMNS = ("rule", "subject", "episode", "state", "severity", "metric", "value",
                  "threshold", "resolve", "rows", "insufficient", "pending_since",
                  "fired_at", "resolved_at", "updated_at", "message", "detail")


class AlertRecord(Protocol):
    """An alert state (``cd4ml.monitoring.alerts.AlertState``): the store writes its
    attributes named as the ``alerts`` columns; those the compare-and-set reads are typed
    here."""

    @property
    def rule(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def episode(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def updated_at(self) -> dt.datetime: ...


class TransitionRecord(Protocol):
    """What the store reads from a transition (``cd4ml.monitoring.alerts.Transition``)."""

    @property
    def from_state(self) -> str: ...
    @property
    def to_state(self) -> str: ...
    @property
    def message(self) -> str: ...


@dataclass(frozen=True, slots=True)
class AlertWrite:
    """What :meth:`AlertOps.write_alert_step` did."""

    written: bool  #: False: the stored state was not ``previous`` (someone else moved it)
    alert_id: int | None  #: the episode's row (written), or the row found (refused)
    found: Row | None = None  #: refused: the newest row found instead of ``previous``
    audit_id: int | None = None  #: the transition's audit event


def alert_object(rule: str, subject: str) -> str:
    """The audit log's object for an alert: ``alert RULE on SUBJECT``."""
    return f"alert {rule} on {subject}"


def _state_rank() -> sa.Case[Any]:
    return sa.case({s: i for i, s in enumerate(ALERT_STATES)}, value=alerts.c.state,
                   else_=len(ALERT_STATES))


def _newest_episodes() -> Any:
    """A condition keeping only the newest episode of each (rule, subject)."""
    newer = alerts.alias("newer")
    return ~sa.exists().where(newer.c.rule == alerts.c.rule,
                              newer.c.subject == alerts.c.subject,
                              newer.c.episode > alerts.c.episode)


def _same(found: Row | None, previous: AlertRecord | None) -> bool:
    if found is None or previous is None:
        return found is None and previous is None
    return (found["episode"], found["state"], found["updated_at"]) == \
        (previous.episode, previous.state, previous.updated_at)


class AlertOps(StoreMixin):
    """Mixin of :class:`~cd4ml.store.metadata.MetadataStore` for alerts."""

    # -- states --------------------------------------------------------------------

    def alert_states(self, subject: str) -> dict[str, Row]:
        """The current state of each rule evaluated on ``subject``: rule -> its newest
        episode's row (``cd4ml.monitoring.alerts.AlertState.from_row`` reads one)."""
        query = sa.select(alerts).where(alerts.c.subject == subject, _newest_episodes())
        with self._read() as conn:
            return {r["rule"]: dict(r) for r in conn.execute(query).mappings()}

    def write_alert_step(self, state: AlertRecord, transition: TransitionRecord | None,
                         *, previous: AlertRecord | None, actor: str = ALERT_ACTOR,
                         ) -> AlertWrite:
        """Store ``state`` (the result of one step from ``previous``), if the subject's
        newest row for the rule is still ``previous`` (None: there is none yet).

        ``state`` updates the previous row when it is the same episode and becomes a new
        row otherwise. The transition, if any, is audited in the same transaction
        (action ``alert_<to_state>``, object :func:`alert_object`, the message as the
        reason). Returns ``AlertWrite(written=False, found=...)`` when someone else
        moved the alert meanwhile: nothing is written then; evaluate again from
        ``found``.
        """
        values = {c: getattr(state, c) for c in _STATE_COLUMNS}
        values["detail"] = dict(values["detail"] or {})
        if values["state"] not in ALERT_STATES:
            raise StoreError(f"alert state == {values['state']!r}, must be one of "
                             f"{list(ALERT_STATES)}")
        newest = (sa.select(alerts).where(alerts.c.rule == state.rule,
                                          alerts.c.subject == state.subject)
                  .order_by(alerts.c.episode.desc()).limit(1))
        try:
            with self._write() as conn:
                found = conn.execute(newest.with_for_update()).mappings().first()
                found = dict(found) if found is not None else None
                if not _same(found, previous):
                    return AlertWrite(written=False, found=found,
                                      alert_id=found["id"] if found else None)
                alert_id = self._put_episode(conn, found, values)
                audit_id = None
                if transition is not None:
                    audit_id = self._audit(
                        conn, at=self._now(), actor=actor,
                        action=f"alert_{transition.to_state}",
                        object=alert_object(state.rule, state.subject),
                        detail={"alert_id": alert_id, "from": transition.from_state,
                                "to": transition.to_state, "episode": state.episode,
                                **{k: values[k] for k in ("metric", "value", "threshold",
                                                          "resolve", "rows", "severity")}},
                        reason=transition.message)
                return AlertWrite(written=True, alert_id=alert_id, audit_id=audit_id)
        except sa.exc.IntegrityError:
            # another evaluator inserted this episode after our read: theirs stands
            with self._read() as conn:
                row = conn.execute(newest).mappings().first()
            return AlertWrite(written=False, found=dict(row) if row else None,
                              alert_id=row["id"] if row else None)

    @staticmethod
    def _put_episode(conn: sa.Connection, found: Row | None, values: Row) -> int:
        if found is not None and found["episode"] == values["episode"]:
            conn.execute(sa.update(alerts).where(alerts.c.id == found["id"]).values(**values))
            return int(found["id"])
        want = found["episode"] + 1 if found is not None else 1
        if values["episode"] != want:
            raise StoreError(f"alert {values['rule']} on {values['subject']}: episode "
                             f"{values['episode']} after {found and found['episode']}; "
                             f"a new episode must be {want}")
        result = conn.execute(sa.insert(alerts).values(**values))
        return int(result.inserted_primary_key[0])

    def get_alert(self, alert_id: int) -> Row:
        """The alert row with this id."""
        with self._read() as conn:
            row = conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)
                               ).mappings().first()
        if row is None:
            raise NotFoundError(f"no alert with id {alert_id}")
        return dict(row)

    def list_alerts(self, *, subject: str | None = None, states: Iterable[str] | None = None,
                    current: bool = False, limit: int | None = None) -> list[Row]:
        """Alert rows, firing first, then pending, resolved, inactive; newest first
        within a state. ``current``: only each rule and subject's newest episode."""
        query = sa.select(alerts).order_by(_state_rank(), alerts.c.updated_at.desc(),
                                           alerts.c.id.desc())
        if subject is not None:
            query = query.where(alerts.c.subject == subject)
        if states is not None:
            query = query.where(alerts.c.state.in_(list(states)))
        if current:
            query = query.where(_newest_episodes())
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # -- deliveries ----------------------------------------------------------------

    def record_delivery(self, alert_id: int, transition: str, *, attempts: int, status: str,
                        last_error: str | None = None) -> int:
        """Record what became of sending a transition (``firing``, ``resolved``) of an
        alert: ``delivered``, or ``dead`` (every attempt failed: a dead letter)."""
        if status not in DELIVERY_STATUSES:
            raise StoreError(f"delivery status == {status!r}, must be one of "
                             f"{list(DELIVERY_STATUSES)}")
        with self._write() as conn:
            if conn.execute(sa.select(alerts.c.id).where(alerts.c.id == alert_id)
                            ).first() is None:
                raise NotFoundError(f"no alert with id {alert_id}: record the alert first")
            result = conn.execute(sa.insert(alert_deliveries).values(
                alert_id=alert_id, transition=transition, attempts=attempts, status=status,
                last_error=last_error, at=self._now()))
            return int(result.inserted_primary_key[0])

    def list_deliveries(self, *, alert_id: int | None = None, status: str | None = None,
                        ) -> list[Row]:
        """Delivery records, newest first."""
        query = sa.select(alert_deliveries).order_by(alert_deliveries.c.id.desc())
        if alert_id is not None:
            query = query.where(alert_deliveries.c.alert_id == alert_id)
        if status is not None:
            query = query.where(alert_deliveries.c.status == status)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def count_dead_letters(self, *, since: dt.datetime | None = None) -> int:
        """How many transitions could not be delivered (``since``: recorded from then)."""
        query = sa.select(sa.func.count()).select_from(alert_deliveries).where(
            alert_deliveries.c.status == "dead")
        if since is not None:
            query = query.where(alert_deliveries.c.at >= since)
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())
