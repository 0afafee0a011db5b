"""Model registry operations of the metadata store: versions, aliases, resolution.

Version numbers are allocated per model from a counter row in ``models``; the row is
locked by the ``UPDATE`` that increments it (PostgreSQL row lock, SQLite write lock), so
concurrent registrations of one model get 1, 2, 3... and never collide. Registering a
version, moving its aliases and writing the audit events is one transaction.

Every alias move is a compare-and-set: the caller says which version it expects the
alias to hold (``None``: unset; :data:`ANY_VERSION`: whatever it holds), and the check
runs inside the transaction that moves it, with the model's row locked, so a move made
by someone else in between is never silently overwritten. A refused move is audited
(``set_alias_refused``) like a made one (``set_alias``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

import sqlalchemy as sa

from cd4ml.errors import AliasConflictError, NotFoundError, StoreError
from cd4ml.store.tables import VERSION_KINDS, aliases, model_versions, models

__all__ = ["RegistryOps", "Registration", "AliasConflict", "ANY_VERSION", "Expected"]

Row = dict[str, Any]

#: ``expected=ANY_VERSION``: move the alias whatever version it holds (still audited)
ANY_VERSION: Final = "any"
#: the version an alias is expected to hold before a move: a number, None (unset) or any
Expected = int | None | Literal["any"]


def _version_text(v: int | None) -> str:
    return "unset" if v is None else f"v{v}"


@dataclass(frozen=True, slots=True)
class AliasConflict:
    """An alias move refused because the alias no longer held the expected version."""

    model: str
    alias: str
    version: int  #: where the move would have pointed it
    expected: int | None
    found: int | None

    def __str__(self) -> str:
        return (f"{self.model}@{self.alias} not moved to v{self.version}: expected it at "
                f"{_version_text(self.expected)}, found {_version_text(self.found)} "
                f"(moved by someone else meanwhile; check `cd4ml models` and retry)")


@dataclass(frozen=True, slots=True)
class Registration:
    """What :meth:`RegistryOps.register_version` did."""

    version: int
    moved: dict[str, int | None] = field(default_factory=dict)  #: alias -> previous
    refused: list[AliasConflict] = field(default_factory=list)


def _check_expected(alias: str, expected: Any) -> None:
    ok = expected is None or expected == ANY_VERSION or (
        isinstance(expected, int) and not isinstance(expected, bool) and expected >= 1)
    if not ok:
        raise StoreError(f"expected == {expected!r} for alias {alias!r}: must be a version "
                         f"number >= 1, None (the alias is unset) or {ANY_VERSION!r}")


def _spans(versions: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``'1..3, 5'``."""
    out: list[str] = []
    for v in versions:
        if out and out[-1].split("..")[-1] == str(v - 1):
            out[-1] = f"{out[-1].split('..')[0]}..{v}"
        else:
            out.append(str(v))
    return ", ".join(out) or "none"


def _check_alias(alias: str) -> None:
    if not alias or alias.isdigit() or not alias.replace("-", "").replace("_", "") \
            .replace(".", "").isalnum():
        raise StoreError(f"alias {alias!r} is not valid: use letters, digits, '-', '_' or "
                         f"'.', not only digits (those name versions)")


class RegistryOps:
    """Mixin of :class:`~cd4ml.store.metadata.MetadataStore` for the model registry."""

    if TYPE_CHECKING:  # provided by MetadataStore
        def _read(self) -> AbstractContextManager[sa.Connection]: ...
        def _write(self) -> AbstractContextManager[sa.Connection]: ...
        def _now(self) -> dt.datetime: ...
        def _insert(self, table: sa.Table) -> Any: ...
        def _require_run(self, conn: sa.Connection, run_id: str) -> None: ...
        def _audit(self, conn: sa.Connection, *, at: dt.datetime, actor: str, action: str,
                   object: str, detail: Mapping[str, Any] | None,
                   reason: str | None) -> int: ...

    # -- writes --------------------------------------------------------------------

    def register_version(self, model_name: str, *, digest: str, kind: str,
                         model_type: str, run_id: str | None = None,
                         metrics: Mapping[str, Any] | None = None,
                         gate: Mapping[str, Any] | None = None,
                         lineage: Mapping[str, Any] | None = None,
                         set_aliases: Mapping[str, Expected] | None = None, actor: str,
                         reason: str | None = None) -> Registration:
        """Register a new version of ``model_name``; its number (1, 2, ...) is ``.version``.

        In one transaction: allocate the next number, insert the version, move each alias
        of ``set_aliases`` (alias -> the version it is expected to hold) to it where it
        still holds that version, and audit all of it. An alias found elsewhere is left
        where it is; the refusal is audited and listed in ``.refused``.
        """
        if kind not in VERSION_KINDS:
            raise StoreError(f"kind == {kind!r}, must be one of {list(VERSION_KINDS)}")
        if set_aliases is not None and not isinstance(set_aliases, Mapping):
            raise StoreError(f"set_aliases == {set_aliases!r}: must map each alias to the "
                             f"version it is expected to hold (None: unset, "
                             f"{ANY_VERSION!r}: any), e.g. {{'production': 3}}")
        expect = dict(set_aliases or {})
        for alias, expected in expect.items():
            _check_alias(alias)
            _check_expected(alias, expected)
        alias_list = list(expect)
        with self._write() as conn:
            if run_id is not None:
                self._require_run(conn, run_id)
            now = self._now()
            conn.execute(self._insert(models).values(
                name=model_name, last_version=0, created_at=now,
            ).on_conflict_do_nothing(index_elements=["name"]))
            # The UPDATE locks the model's row until commit: concurrent registrations of
            # the same model wait here and then see the incremented counter.
            conn.execute(sa.update(models).where(models.c.name == model_name)
                         .values(last_version=models.c.last_version + 1))
            version = conn.execute(sa.select(models.c.last_version)
                                   .where(models.c.name == model_name)).scalar_one()
            conn.execute(sa.insert(model_versions).values(
                model_name=model_name, version=version, run_id=run_id, digest=digest,
                kind=kind, model_type=model_type, metrics=dict(metrics or {}),
                gate=dict(gate) if gate is not None else None,
                lineage=dict(lineage or {}), created_at=now))
            self._audit(conn, at=now, actor=actor, action="register_version",
                        object=f"{model_name}/{version}",
                        detail={"kind": kind, "model_type": model_type, "digest": digest,
                                "run_id": run_id, "aliases": alias_list}, reason=reason)
            moved: dict[str, int | None] = {}
            refused: list[AliasConflict] = []
            for alias in alias_list:
                done = self._move_alias(conn, model_name, alias, int(version),
                                        expected=expect[alias], now=now, actor=actor,
                                        reason=reason)
                if isinstance(done, AliasConflict):
                    refused.append(done)
                else:
                    moved[alias] = done
        return Registration(int(version), moved, refused)

    def set_alias(self, model_name: str, alias: str, version: int, *, expected: Expected,
                  actor: str, reason: str | None = None) -> int | None:
        """Point ``model_name@alias`` at ``version`` if it holds ``expected`` now.

        Returns the version it pointed at. Raises :class:`AliasConflictError` (after
        auditing the refusal) when the alias holds another version than ``expected``.
        """
        _check_alias(alias)
        _check_expected(alias, expected)
        with self._write() as conn:
            # Lock the model's row so alias changes of one model happen one at a time.
            found = conn.execute(sa.select(models.c.name).where(models.c.name == model_name)
                                 .with_for_update()).first()
            if found is None:
                raise NotFoundError(self._no_model(conn, model_name))
            exists = conn.execute(sa.select(model_versions.c.version).where(
                model_versions.c.model_name == model_name,
                model_versions.c.version == int(version))).first()
            if exists is None:
                raise NotFoundError(f"model {model_name!r} has no version {version}; "
                                    f"versions: {_spans(self._versions(conn, model_name))}")
            done = self._move_alias(conn, model_name, alias, int(version), expected=expected,
                                    now=self._now(), actor=actor, reason=reason)
        if isinstance(done, AliasConflict):  # raised after the refusal's audit committed
            raise AliasConflictError(str(done), conflict=done)
        return done

    def alias_version(self, model_name: str, alias: str) -> int | None:
        """The version ``model_name@alias`` holds now; None if unset (or no such model)."""
        with self._read() as conn:
            return self._alias_version(conn, model_name, alias)

    def _move_alias(self, conn: sa.Connection, model_name: str, alias: str, version: int,
                    *, expected: Expected, now: dt.datetime, actor: str,
                    reason: str | None) -> int | None | AliasConflict:
        """Move the alias if it holds ``expected``; the caller holds the model's row lock,
        so the read below sees every committed move and none can land before ours."""
        key = (aliases.c.model_name == model_name, aliases.c.alias == alias)
        previous = self._alias_version(conn, model_name, alias)
        if expected != ANY_VERSION and previous != expected:
            conflict = AliasConflict(model_name, alias, version, expected, previous)
            self._audit(conn, at=now, actor=actor, action="set_alias_refused",
                        object=f"{model_name}@{alias}",
                        detail={"version": version, "expected": expected, "found": previous},
                        reason=reason)
            return conflict
        if previous is None:
            conn.execute(sa.insert(aliases).values(model_name=model_name, alias=alias,
                                                   version=version, updated_at=now))
        else:
            conn.execute(sa.update(aliases).where(*key).values(version=version,
                                                               updated_at=now))
        self._audit(conn, at=now, actor=actor, action="set_alias",
                    object=f"{model_name}@{alias}",
                    detail={"version": version, "previous": previous, "expected": expected},
                    reason=reason)
        return previous

    # -- reads ---------------------------------------------------------------------

    def resolve(self, model_name: str, alias_or_version: str | int) -> Row:
        """The version row (with its ``aliases``) named by an alias or a version number.

        ``'latest'``, unless it is a defined alias, means the highest version.
        """
        ref = str(alias_or_version).strip()
        with self._read() as conn:
            if not conn.execute(sa.select(models.c.name)
                                .where(models.c.name == model_name)).first():
                raise NotFoundError(self._no_model(conn, model_name))
            if ref.isdigit():
                version: int | None = int(ref)
            else:
                version = self._alias_version(conn, model_name, ref)
                if version is None and ref == "latest":
                    version = conn.execute(sa.select(sa.func.max(model_versions.c.version))
                                           .where(model_versions.c.model_name == model_name)
                                           ).scalar()
            rows = list(self._version_rows(conn, model_name, version)) \
                if version is not None else []
            if rows:
                return rows[0]
            known = self._aliases(conn, model_name)
            have = ", ".join(f"{a} -> {v}" for a, v in sorted(known.items())) or "none"
            what = f"version {ref}" if ref.isdigit() else f"alias {ref!r}"
            raise NotFoundError(f"model {model_name!r} has no {what}; aliases: {have}; "
                                f"versions: {_spans(self._versions(conn, model_name))}")

    def list_versions(self, model_name: str | None = None) -> list[Row]:
        """Versions (each with its sorted ``aliases``), by model name then version."""
        with self._read() as conn:
            return list(self._version_rows(conn, model_name, None))

    def list_models(self) -> list[Row]:
        """``{name, last_version, created_at, aliases: {alias: version}}`` per model."""
        with self._read() as conn:
            rows = [dict(r) for r in conn.execute(
                sa.select(models).order_by(models.c.name)).mappings()]
            for row in rows:
                row["aliases"] = self._aliases(conn, row["name"])
            return rows

    # -- helpers -------------------------------------------------------------------

    def _version_rows(self, conn: sa.Connection, model_name: str | None,
                      version: int | None) -> Iterator[Row]:
        query = sa.select(model_versions).order_by(model_versions.c.model_name,
                                                   model_versions.c.version)
        alias_query = sa.select(aliases).order_by(aliases.c.alias)
        if model_name is not None:
            query = query.where(model_versions.c.model_name == model_name)
            alias_query = alias_query.where(aliases.c.model_name == model_name)
        if version is not None:
            query = query.where(model_versions.c.version == version)
        by_version: dict[tuple[str, int], list[str]] = {}
        for a in conn.execute(alias_query).mappings():
            by_version.setdefault((a["model_name"], a["version"]), []).append(a["alias"])
        for row in conn.execute(query).mappings():
            out = dict(row)
            out["aliases"] = by_version.get((row["model_name"], row["version"]), [])
            yield out

    @staticmethod
    def _versions(conn: sa.Connection, model_name: str) -> list[int]:
        return [v for (v,) in conn.execute(
            sa.select(model_versions.c.version).where(
                model_versions.c.model_name == model_name).order_by(model_versions.c.version))]

    @staticmethod
    def _alias_version(conn: sa.Connection, model_name: str, alias: str) -> int | None:
        v = conn.execute(sa.select(aliases.c.version).where(
            aliases.c.model_name == model_name, aliases.c.alias == alias)).scalar()
        return None if v is None else int(v)

    @staticmethod
    def _aliases(conn: sa.Connection, model_name: str) -> dict[str, int]:
        return {a: v for a, v in conn.execute(
            sa.select(aliases.c.alias, aliases.c.version).where(
                aliases.c.model_name == model_name))}

    @staticmethod
    def _no_model(conn: sa.Connection, model_name: str) -> str:
        names = [n for (n,) in conn.execute(sa.select(models.c.name).order_by(models.c.name))]
        return f"no model {model_name!r}; models: {', '.join(names) or 'none registered yet'}"
