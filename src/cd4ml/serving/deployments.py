"""Deployments as a project's store holds them, read: the one a server serves
(:func:`effective_deployment`), every one (:func:`deployments`), and a version as a
candidate with its gate.

A project with no stored deployment is served as before deployments existed: the
deployment named after the model, strategy ``single``, ``serving.alias``'s version
stable at share 1 (revision 0, ``extra["default"]``). Servers read deployments here and
never write them; the writes are :mod:`cd4ml.rollout.manage`'s.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cd4ml.errors import ConfigError, NotFoundError
from cd4ml.serving import deployment as dep
from cd4ml.serving.deployment import Arm, Candidate, DeploymentState

if TYPE_CHECKING:
    from cd4ml.config import ProjectConfig
    from cd4ml.store import Stores

__all__ = ["effective_deployment", "default_deployment", "deployments", "candidate",
           "from_alias", "from_row", "stored_deployment"]


def candidate(stores: Stores, model: str, version: int) -> Candidate:
    """Version ``version`` of ``model`` with its gate; NotFoundError when there is none."""
    row = stores.metadata.resolve(model, int(version))
    return Candidate(int(row["version"]), dep.gate_of(row))


def from_alias(stores: Stores, name: str, model: str, alias: str) -> DeploymentState:
    version = stores.metadata.alias_version(model, alias)
    arms: tuple[Arm, ...] = ()
    if version is not None:
        c = candidate(stores, model, version)
        arms = (Arm(c.version, "stable", 1.0, c.gate),)
    return DeploymentState(name=name, model=model, alias=alias, arms=arms)


def default_deployment(stores: Stores, cfg: ProjectConfig) -> DeploymentState:
    """``serving.alias`` as a deployment named after the model (not stored)."""
    base = from_alias(stores, cfg.models.name, cfg.models.name, cfg.serving.alias)
    return replace(base, extra={"default": True})


def from_row(row: dict[str, Any]) -> DeploymentState:
    """A stored state (a rollback to revision 0 restores the default's dict: once stored,
    it is not the default any more)."""
    state = DeploymentState.from_dict(row)
    return replace(state, extra={k: v for k, v in state.extra.items() if k != "default"})


def stored_deployment(stores: Stores, name: str) -> DeploymentState | None:
    row = stores.metadata.get_deployment(name)
    return None if row is None else from_row(row)


def effective_deployment(stores: Stores, cfg: ProjectConfig,
                         name: str | None = None) -> DeploymentState:
    """The deployment ``name`` (default: the one serving ``serving.alias``): stored, or
    the default one read from the alias. NotFoundError names the known ones."""
    if name is not None:
        found = stored_deployment(stores, name)
        if found is not None:
            return found
        if name == cfg.models.name:
            return default_deployment(stores, cfg)
        known = [d.name for d in deployments(stores, cfg)]
        raise NotFoundError(f"no deployment {name!r}; deployments: {', '.join(known)}")
    found = stored_deployment(stores, cfg.models.name)
    if found is not None:
        return found
    tracking = [d for d in map(from_row, stores.metadata.list_deployments())
                if d.model == cfg.models.name and d.alias == cfg.serving.alias]
    if len(tracking) > 1:
        raise ConfigError(f"several deployments track it ({', '.join(d.name for d in tracking)}); "
                          f"name one", key="serving.alias", value=cfg.serving.alias)
    return tracking[0] if tracking else default_deployment(stores, cfg)


def deployments(stores: Stores, cfg: ProjectConfig) -> list[DeploymentState]:
    """Every stored deployment, and the default one while it is not stored."""
    out = [from_row(d) for d in stores.metadata.list_deployments()]
    if not any(d.name == cfg.models.name for d in out):
        out.append(default_deployment(stores, cfg))
    return sorted(out, key=lambda d: d.name)
