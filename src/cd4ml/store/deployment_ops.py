"""Deployment operations of the metadata store: current states, their history, rollback.

A deployment is one row (its state as JSON and its revision) plus one event per change.
The state's meaning lives in :mod:`cd4ml.serving.deployment`; the store does not import
it and keeps what it is given (any object with ``name``, ``revision`` and ``to_dict()``).

Every write is a compare-and-set on the revision: the caller says which revision it
computed from (0: the deployment is not stored yet), and the write lands only if the
row is still there. The row is locked while checked (PostgreSQL ``FOR UPDATE``; SQLite
writes one at a time) and ``(name, revision)`` of the events is unique, so of two
admins changing a deployment at once one writes and the other gets a
:class:`~cd4ml.errors.RevisionConflictError` (HTTP 409), its refusal audited. The state,
its event and its audit entry are written in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import sqlalchemy as sa

from cd4ml.errors import ConfigError, NotFoundError, RevisionConflictError, StoreError
from cd4ml.store.mixin import StoreMixin
from cd4ml.store.tables import deployment_events, deployments

__all__ = ["DeploymentOps", "DeploymentRecord", "ChangeRecord", "deployment_object"]

Row = dict[str, Any]


class DeploymentRecord(Protocol):
    """A deployment state (``cd4ml.serving.deployment.DeploymentState``)."""

    @property
    def name(self) -> str: ...
    @property
    def revision(self) -> int: ...
    def to_dict(self) -> dict[str, Any]: ...


class ChangeRecord(Protocol):
    """What a transition did (``cd4ml.serving.deployment.Change``)."""

    @property
    def action(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def from_state(self) -> dict[str, Any] | None: ...
    @property
    def reason(self) -> str | None: ...


def deployment_object(name: str) -> str:
    """The audit log's object for a deployment: ``deployment:sales``."""
    return f"deployment:{name}"


def _brief(state: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {k: state.get(k) for k in ("strategy", "status", "arms", "revision")}


class DeploymentOps(StoreMixin):
    """Mixin of :class:`~cd4ml.store.metadata.MetadataStore` for deployments."""

    # -- reads ---------------------------------------------------------------------

    def get_deployment(self, name: str) -> Row | None:
        """The stored state of deployment ``name`` (a dict with its ``revision``), or None."""
        with self._read() as conn:
            row = conn.execute(sa.select(deployments).where(deployments.c.name == name)
                               ).mappings().first()
        return None if row is None else {**row["state"], "revision": int(row["revision"])}

    def list_deployments(self) -> list[Row]:
        """Every stored deployment's state, by name."""
        with self._read() as conn:
            rows = conn.execute(sa.select(deployments).order_by(deployments.c.name)).mappings()
            return [{**r["state"], "revision": int(r["revision"])} for r in rows]

    def deployment_history(self, name: str) -> list[Row]:
        """Every change of deployment ``name``, oldest first: ``{id, name, revision, at,
        actor, action, reason, from_state, to_state}``."""
        with self._read() as conn:
            return [dict(r) for r in conn.execute(
                sa.select(deployment_events).where(deployment_events.c.name == name)
                .order_by(deployment_events.c.revision)).mappings()]

    # -- writes --------------------------------------------------------------------

    def write_deployment(self, new_state: DeploymentRecord, change: ChangeRecord, *,
                         expected_revision: int, actor: str) -> int:
        """Store ``new_state`` if the deployment is still at ``expected_revision`` (0: not
        stored yet); returns the new revision, ``expected_revision + 1``.

        Raises :class:`~cd4ml.errors.RevisionConflictError` (after auditing the
        refusal) when someone changed it meanwhile: nothing is written then.
        """
        state = new_state.to_dict()
        if new_state.revision != expected_revision + 1:
            raise StoreError(f"deployment {new_state.name!r}: revision {new_state.revision} "
                             f"written over {expected_revision}; expected "
                             f"{expected_revision + 1}")
        return self._cas(new_state.name, state, expected_revision, actor=actor,
                         action=change.action, summary=change.summary,
                         reason=change.reason, from_state=change.from_state)

    def rollback_deployment(self, name: str, to_revision: int | None = None, *, actor: str,
                            reason: str | None = None,
                            expected_revision: int | None = None) -> Row:
        """Restore the state deployment ``name`` had at ``to_revision`` (default: the
        revision before the current one) as a new revision; returns the new state.

        ``expected_revision`` (default: the current one) makes it a compare-and-set like
        any write. No stored deployment, or no earlier state: a NotFoundError, nothing
        changed.
        """
        current = self.get_deployment(name)
        if current is None:
            raise NotFoundError(f"deployment {name!r} has no history to roll back: it was "
                                f"never changed (see `cd4ml rollout status`)")
        now = int(current["revision"])
        states: dict[int, Row] = {}
        for e in self.deployment_history(name):
            states[int(e["revision"])] = e["to_state"]
            if e["from_state"] is not None:
                states.setdefault(int(e["revision"]) - 1, e["from_state"])
        target = now - 1 if to_revision is None else to_revision
        if target == now:
            raise ConfigError(f"is deployment {name!r}'s current revision; expected an "
                              f"earlier one", key="to", value=to_revision)
        if target not in states:
            earlier = [r for r in sorted(states) if r != now]
            if not earlier:
                raise NotFoundError(f"deployment {name!r} has no earlier revision to roll "
                                    f"back to: revision {now} is its first")
            raise NotFoundError(f"deployment {name!r} has no revision {target}; revisions "
                                f"to roll back to: {', '.join(map(str, earlier))}")
        restored = {**states[target], "revision": now + 1}
        self._cas(name, restored, now if expected_revision is None else expected_revision,
                  actor=actor, action="rollback",
                  summary=f"rolled back to revision {target}",
                  reason=reason or f"rollback to revision {target}", from_state=current,
                  detail={"restored_revision": target})
        return restored

    def _cas(self, name: str, state: Row, expected: int, *, actor: str, action: str,
             summary: str, reason: str | None, from_state: Row | None,
             detail: Mapping[str, Any] | None = None) -> int:
        revision = expected + 1
        obj = deployment_object(name)
        try:
            with self._write() as conn:
                row = conn.execute(sa.select(deployments).where(deployments.c.name == name)
                                   .with_for_update()).mappings().first()
                found = 0 if row is None else int(row["revision"])
                if found != expected:
                    self._audit(conn, at=self._now(), actor=actor, action="deployment_refused",
                                object=obj, detail={"action": action, "expected": expected,
                                                    "found": found}, reason=reason)
                else:
                    before = {**row["state"], "revision": found} if row is not None \
                        else from_state
                    self._put(conn, name, state, revision, found_row=row is not None)
                    at = self._now()
                    event = conn.execute(sa.insert(deployment_events).values(
                        name=name, revision=revision, at=at, actor=actor, action=action,
                        reason=reason or summary, from_state=before, to_state=state))
                    self._audit(conn, at=at, actor=actor, action=f"deployment_{action}",
                                object=obj, reason=reason or summary, detail={
                                    "revision": revision, "summary": summary,
                                    "event_id": int(event.inserted_primary_key[0]),
                                    "from": _brief(before), "to": _brief(state),
                                    **(detail or {})})
                    return revision
        except sa.exc.IntegrityError:  # another writer created it after our read
            found = (self.get_deployment(name) or {}).get("revision")
        raise RevisionConflictError(
            f"deployment {name!r} not changed ({action}): expected it at revision {expected}, "
            f"found {found} (changed by someone else meanwhile; check `cd4ml rollout status "
            f"{name}` and retry)", expected=expected, found=found)

    @staticmethod
    def _put(conn: sa.Connection, name: str, state: Row, revision: int, *,
             found_row: bool) -> None:
        stored = {k: v for k, v in state.items() if k != "revision"}
        if not found_row:
            conn.execute(sa.insert(deployments).values(name=name, state=stored,
                                                       revision=revision))
            return
        done = conn.execute(sa.update(deployments).where(
            deployments.c.name == name, deployments.c.revision == revision - 1,
        ).values(state=stored, revision=revision))
        if done.rowcount != 1:  # the lock above makes this unreachable; never overwrite
            raise RevisionConflictError(f"deployment {name!r} changed during the write",
                                        expected=revision - 1)
