"""What the rollout controller records without changing a deployment: its analyses, A/B
comparisons and bandit shares, as audit events of the deployment's revision, and the
latest of each kind read back (``cd4ml rollout status`` shows them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cd4ml.serving.deployment import DeploymentState
    from cd4ml.store import Stores

__all__ = ["record", "latest", "WHO", "EVENTS"]

#: who the audit log says made the controller's changes
WHO = "controller"
#: the audit actions of what the controller records without a state change
EVENTS = ("deployment_analysis", "deployment_ab", "deployment_bandit")


def _object(name: str) -> str:
    from cd4ml.store.deployment_ops import deployment_object

    return deployment_object(name)


def record(stores: Stores, state: DeploymentState, kind: str, detail: dict[str, Any],
           reason: str, who: str = WHO) -> int:
    """Audit ``deployment_<kind>`` (analysis, ab, bandit) of ``state``'s revision."""
    return stores.metadata.audit(f"deployment_{kind}", _object(state.name), actor=who,
                                 detail={"revision": state.revision, **detail},
                                 reason=reason)


def latest(stores: Stores, name: str, kind: str | None = None,
           limit: int = 200) -> dict[str, dict[str, Any]]:
    """The latest recorded event of each kind (``analysis``, ``ab``, ``bandit``) of
    deployment ``name`` among its last ``limit`` audit entries: ``{kind: entry}``."""
    out: dict[str, dict[str, Any]] = {}
    for e in stores.metadata.list_audit(limit, object=_object(name)):
        k = str(e["action"]).removeprefix("deployment_")
        if e["action"] in EVENTS and k not in out and kind in (None, k):
            out[k] = e
    return out
