"""Deployments as the project stores them: the default one, and each change written by
compare-and-set (what ``cd4ml deploy``, ``cd4ml rollout …`` and ``cd4ml rollback`` do).

A project with no stored deployment is served as today: :func:`effective_deployment`
reads ``serving.alias`` as the deployment named after the model, strategy ``single``,
the alias's version stable at share 1 (revision 0, ``extra["default"]``). Its first
change stores it. The transitions themselves are the pure ones of
:mod:`cd4ml.serving.deployment`; here they meet the registry (which versions exist,
what their gates said) and the store. Reading is :mod:`cd4ml.serving.deployments`'s
(the servers read deployments too, and import nothing of ``rollout``).

Every change is a compare-and-set on the revision it was computed from. A caller that
read the deployment earlier (an admin's form, ``If-Match``) passes that revision as
``expected_revision``: if the deployment is at another one now, the change is refused
with :class:`~cd4ml.errors.RevisionConflictError` (HTTP 409), the refusal audited, and
nothing is written.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cd4ml.errors import ConfigError, RevisionConflictError
from cd4ml.serving import deployment as dep
from cd4ml.serving.deployment import Change, DeploymentState
from cd4ml.serving.deployments import (candidate, default_deployment, deployments,
                                       effective_deployment, from_alias, from_row,
                                       stored_deployment)

if TYPE_CHECKING:
    from cd4ml.config import ProjectConfig
    from cd4ml.store import Stores

__all__ = ["on_alias_moved", "effective_deployment", "default_deployment", "deployments", "candidate",
           "deploy", "offer_candidate", "step", "rollback", "actor", "ACTOR_ENV", "ACTIONS"]

#: who the audit log says changed a deployment, if set (else the OS user)
ACTOR_ENV = "CD4ML_ACTOR"
#: the transitions :func:`step` applies
ACTIONS = {"promote": dep.promote, "pause": dep.pause, "abort": dep.abort}


def actor() -> str:
    """``$CD4ML_ACTOR``, or the OS user."""
    return os.environ.get(ACTOR_ENV) or getpass.getuser()


def _expect(stores: Stores, state: DeploymentState, expected: int | None, action: str,
            who: str | None) -> None:
    """Refuse (audited, as the store refuses a stale write) when the caller computed its
    change from another revision than the one ``state`` is at."""
    if expected is None or expected == state.revision:
        return
    stores.metadata.audit("deployment_refused", f"deployment:{state.name}",
                          actor=who or actor(), detail={"action": action,
                                                        "expected": expected,
                                                        "found": state.revision})
    raise RevisionConflictError(
        f"deployment {state.name!r} not changed ({action}): expected it at revision "
        f"{expected}, found {state.revision} (changed by someone else meanwhile; read it "
        f"again and retry)", expected=expected, found=state.revision)


def _write(stores: Stores, state: DeploymentState, new: DeploymentState, change: Change,
           who: str | None) -> DeploymentState:
    stores.metadata.write_deployment(new, change, expected_revision=state.revision,
                                     actor=who or actor())
    return new


def deploy(stores: Stores, cfg: ProjectConfig, name: str, *, alias: str | None = None,
           strategy: str = "single", automation: str | None = None,
           steps: Sequence[float] | None = None, split: float | None = None,
           key: str | None = None, fallback: str | None = None,
           reason: str | None = None, who: str | None = None,
           expected_revision: int | None = None) -> DeploymentState:
    """Create deployment ``name`` tracking ``alias`` (its version stable), or change its
    strategy; refused while a rollout is in progress, or for another alias."""
    state = stored_deployment(stores, name)
    if state is None and name == cfg.models.name:
        state = default_deployment(stores, cfg)
    if state is None:
        state = from_alias(stores, name, cfg.models.name, alias or cfg.serving.alias)
        if not state.arms:  # a new deployment that would serve nothing: say what exists
            stores.metadata.resolve(cfg.models.name, state.alias)
    elif alias is not None and alias != state.alias:
        raise ConfigError(f"deployment {name!r} tracks alias {state.alias!r}; a deployment "
                          f"tracks one alias: deploy another name for {alias!r}",
                          key="alias", value=alias)
    _expect(stores, state, expected_revision, "configure", who)
    new, change = dep.configure(state, strategy=strategy, automation=automation, steps=steps,
                                split=split, key=key, fallback=fallback, reason=reason)
    return _write(stores, state, new, change, who)


def offer_candidate(stores: Stores, cfg: ProjectConfig, name: str, version: int, *,
                    reason: str | None = None, who: str | None = None,
                    expected_revision: int | None = None) -> DeploymentState:
    """The tracked alias moved to ``version``: start the deployment's strategy with it."""
    state = effective_deployment(stores, cfg, name)
    _expect(stores, state, expected_revision, "candidate", who)
    new, change = dep.start_candidate(state, candidate(stores, state.model, version),
                                      reason=reason)
    return _write(stores, state, new, change, who)


def step(stores: Stores, cfg: ProjectConfig, name: str, action: str, *,
         reason: str | None = None, who: str | None = None,
         expected_revision: int | None = None) -> DeploymentState:
    """``promote``, ``pause`` or ``abort`` the rollout of deployment ``name``."""
    if action not in ACTIONS:
        raise ConfigError(f"expected one of {', '.join(ACTIONS)}", key="action", value=action)
    state = effective_deployment(stores, cfg, name)
    _expect(stores, state, expected_revision, action, who)
    new, change = ACTIONS[action](state, reason=reason)
    return _write(stores, state, new, change, who)


def rollback(stores: Stores, name: str, to_revision: int | None = None, *,
             reason: str | None = None, who: str | None = None,
             expected_revision: int | None = None) -> DeploymentState:
    """Restore deployment ``name``'s previous revision (or ``to_revision``) as a new one."""
    restored: dict[str, Any] = stores.metadata.rollback_deployment(
        name, to_revision, actor=who or actor(), reason=reason,
        expected_revision=expected_revision)
    return from_row(restored)


def on_alias_moved(stores: Stores, model: str, alias: str, version: int, *,
                   reason: str | None = None, who: str | None = None) -> list[str]:
    """The alias ``model@alias`` now names ``version``: each stored deployment tracking
    it starts its strategy with that version as candidate (``single`` swaps it in at
    once). A deployment with no stored state follows the alias as today's hot swap does,
    with nothing to do here. Returns one line per deployment: what it did, or why it
    refused (a version that failed its gate offered to a canary, say); a refusal leaves
    that deployment unchanged and never undoes the alias move."""
    out = []
    for row in stores.metadata.list_deployments():
        state = from_row(row)
        if state.model != model or state.alias != alias:
            continue
        if any(a.version == int(version) for a in state.arms
               if a.role in ("stable", "blue") or a is state.candidate):
            out.append(f"{state.name}: v{version} already serves it ({state.describe()})")
            continue
        for attempt in range(3):  # an admin's change in between: read it again
            try:
                new, change = dep.start_candidate(state, candidate(stores, model, version),
                                                  reason=reason)
                _write(stores, state, new, change, who)
                out.append(f"{state.name}: {change.summary}")
                break
            except RevisionConflictError:
                state = stored_deployment(stores, state.name) or state
                if attempt == 2:
                    out.append(f"{state.name}: not started: changed by someone else "
                               f"three times; start it with cd4ml rollout candidate")
            except ConfigError as exc:
                out.append(f"{state.name}: unchanged: {exc}")
                break
    return out
