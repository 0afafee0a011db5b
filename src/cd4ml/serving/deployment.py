"""A deployment as state: which model versions serve a name, in which roles and shares.

A named deployment (``sales``) tracks one registry alias of a model. Its ``arms`` say
which versions serve it: the ``stable`` one (``blue`` under blue-green), a ``canary``,
A/B or bandit ``arm`` s, a ``green`` waiting for the switch, and ``shadow`` s that see
the traffic but never answer it. The live roles' shares sum to 1; a shadow has none.

Everything here is pure: a state is a frozen dataclass, and each transition returns a
new state (``revision + 1``) and a :class:`Change` saying what moved and why. Where it is
stored (compare-and-set on the revision, the history, rollback) is
:mod:`cd4ml.store.deployment_ops`; this module imports nothing of the store.

Gate rule: a version whose gate failed may only take the ``shadow`` role, except the
best baseline cd4ml registers when nothing passed and nothing served yet
(``registry.serve_baseline_if_none``; registered with kind ``baseline``).

>>> s = DeploymentState(name="sales", model="sales", alias="production",
...                     strategy="canary", steps=(0.05, 0.5, 1.0),
...                     arms=(Arm(1, "stable", 1.0, "passed"),)).validate()
>>> s, change = start_candidate(s, Candidate(2, "passed"))
>>> [(a.version, a.role, a.share) for a in s.arms], s.status, s.revision
([(1, 'stable', 0.95), (2, 'canary', 0.05)], 'progressing', 1)
>>> change.summary
'canary v2 at 5 % (v1 stable)'
>>> s, _ = promote(promote(s)[0])
>>> [(a.version, a.role, a.share) for a in s.arms], s.status
([(2, 'stable', 1.0)], 'stable')
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cd4ml.errors import ConfigError
from cd4ml.serving.sticky import check_shares

__all__ = ["DeploymentState", "Arm", "Candidate", "Change", "start_candidate", "promote",
           "pause", "abort", "configure", "reweight", "gate_of", "STRATEGIES", "AUTOMATIONS",
           "ROLES", "LIVE_ROLES", "STATUSES", "GATES", "SERVABLE_GATES"]

STRATEGIES = ("single", "shadow", "canary", "ab", "bandit", "bluegreen")
AUTOMATIONS = ("manual", "assisted", "automatic")
ROLES = ("stable", "canary", "shadow", "arm", "blue", "green")
#: roles that answer requests (and so carry a share)
LIVE_ROLES = ("stable", "canary", "arm", "blue", "green")
STATUSES = ("stable", "progressing", "paused", "aborted")
#: a version's gate as the registry recorded it (:func:`gate_of`)
GATES = ("passed", "failed", "baseline", "missing")
#: gates that may take live traffic; any other only the shadow role
SERVABLE_GATES = ("passed", "baseline")
#: the roles each strategy's arms may take (its incumbent is the first)
_ROLES_OF = {"single": ("stable",), "shadow": ("stable", "shadow"),
             "canary": ("stable", "canary", "shadow"), "ab": ("stable", "arm", "shadow"),
             "bandit": ("stable", "arm", "shadow"), "bluegreen": ("blue", "green", "shadow")}


def gate_of(row: Mapping[str, Any]) -> str:
    """A registry version row's gate: ``passed``; ``baseline`` (the best baseline
    registered because nothing passed and nothing served); ``failed``; ``missing``.

    >>> gate_of({"kind": "candidate", "gate": {"passed": True}})
    'passed'
    >>> gate_of({"kind": "baseline", "gate": {"passed": False}})
    'baseline'
    """
    gate = row.get("gate")
    if isinstance(gate, Mapping) and gate.get("passed") is True:
        return "passed"
    if row.get("kind") == "baseline":
        return "baseline"
    return "missing" if gate is None else "failed"


@dataclass(frozen=True, slots=True)
class Arm:
    """One version of a deployment in one role; ``share`` is None for a shadow."""

    version: int
    role: str
    share: float | None
    gate: str = "passed"

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "role": self.role, "share": self.share,
                "gate": self.gate}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A version offered to a deployment, with its gate (:func:`gate_of`)."""

    version: int
    gate: str


@dataclass(frozen=True, slots=True)
class Change:
    """What a transition did: ``action``, a one-line ``summary``, the user's ``reason``
    (None: the summary stands for it) and the states before and after (as dicts;
    ``from_state`` None when the deployment is new)."""

    action: str
    summary: str
    from_state: dict[str, Any] | None
    to_state: dict[str, Any]
    reason: str | None = None


def _bad(key: str, value: Any, problem: str) -> ConfigError:
    return ConfigError(problem, key=key, value=value)


@dataclass(frozen=True)
class DeploymentState:
    """The state of one named deployment (see the module's docstring).

    ``steps`` is the canary schedule (candidate shares, strictly increasing, ending at
    1.0), ``step`` the index of the current one while a canary progresses; ``split`` is
    the share an A/B or bandit candidate starts with.
    """

    name: str
    model: str
    alias: str
    strategy: str = "single"
    automation: str = "manual"
    arms: tuple[Arm, ...] = ()
    steps: tuple[float, ...] = (0.05, 0.25, 0.5, 1.0)
    step: int | None = None
    split: float = 0.5
    status: str = "stable"
    revision: int = 0
    #: the request field the split is sticky by (A/B, canary); None: by request id
    key: str | None = None
    #: what a request without ``key`` gets (:data:`cd4ml.serving.sticky.FALLBACKS`)
    fallback: str = "request_id"
    extra: dict[str, Any] = field(default_factory=dict)  #: e.g. ``{"default": True}``

    # -- reading -------------------------------------------------------------------

    @property
    def incumbent(self) -> Arm | None:
        """The arm in the strategy's incumbent role (``stable``, or ``blue``)."""
        return next((a for a in self.arms if a.role in ("stable", "blue")), None)

    @property
    def candidate(self) -> Arm | None:
        """The arm being rolled out (canary, arm, green, or the shadow while progressing)."""
        live = [a for a in self.arms if a.role in ("canary", "arm", "green")]
        if live:
            return live[0]
        if self.status in ("progressing", "paused"):
            return next((a for a in self.arms if a.role == "shadow"), None)
        return None

    @property
    def salt(self) -> str:
        """The sticky split's salt: the deployment and its rollout's candidate, so a unit
        keeps its arm while the canary's share grows, and each new rollout draws anew."""
        cand = self.candidate
        return f"{self.name}:v{cand.version if cand else 0}"

    def shares(self) -> dict[str, float]:
        """``{"v3": 0.95, "v4": 0.05}``: the live arms' shares."""
        return {f"v{a.version}": float(a.share or 0.0) for a in self.arms
                if a.role in LIVE_ROLES}

    def describe(self) -> str:
        """One line: ``canary v2 at 5 % (v1 stable)``."""
        parts = [f"v{a.version} {a.role}" + (f" {a.share * 100:g} %" if a.share is not None
                                              else "") for a in self.arms]
        return f"{self.strategy} {self.status}: {', '.join(parts) or 'nothing serves'}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe dict the store keeps."""
        return {"name": self.name, "model": self.model, "alias": self.alias,
                "strategy": self.strategy, "automation": self.automation,
                "arms": [a.to_dict() for a in self.arms], "steps": list(self.steps),
                "step": self.step, "split": self.split, "status": self.status,
                "revision": self.revision, "key": self.key, "fallback": self.fallback,
                "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeploymentState:
        """The state of a dict from :meth:`to_dict` (not validated: call ``validate()``)."""
        return cls(
            name=d["name"], model=d["model"], alias=d["alias"], strategy=d["strategy"],
            automation=d["automation"],
            arms=tuple(Arm(int(a["version"]), a["role"],
                           None if a["share"] is None else float(a["share"]),
                           a.get("gate", "passed")) for a in d["arms"]),
            steps=tuple(float(x) for x in d["steps"]), step=d.get("step"),
            split=float(d.get("split", 0.5)), status=d["status"],
            revision=int(d["revision"]), key=d.get("key"),
            fallback=d.get("fallback") or "request_id", extra=dict(d.get("extra") or {}))

    # -- checking ------------------------------------------------------------------

    def validate(self) -> DeploymentState:
        """``self`` if it is a state cd4ml can serve, else a ConfigError naming the field,
        the value and what was expected."""
        for key, value, allowed in (("strategy", self.strategy, STRATEGIES),
                                    ("automation", self.automation, AUTOMATIONS),
                                    ("status", self.status, STATUSES)):
            if value not in allowed:
                raise _bad(key, value, f"expected one of {', '.join(allowed)}")
        if not self.name or not isinstance(self.name, str):
            raise _bad("name", self.name, "expected a non-empty name")
        _check_steps(self.steps)
        if self.key is not None and (not isinstance(self.key, str) or not self.key.strip()):
            raise _bad("key", self.key, "expected the name of a request field, or none")
        if not (self.fallback in ("request_id", "refuse") or (
                isinstance(self.fallback, str) and self.fallback.startswith("arm:")
                and self.fallback[4:] in ROLES)):
            raise _bad("fallback", self.fallback, "expected request_id, refuse or arm:ROLE "
                                                  "(e.g. arm:stable)")
        if not (isinstance(self.split, (int, float)) and 0.0 < self.split < 1.0):
            raise _bad("split", self.split, "expected the candidate's share, in (0, 1)")
        versions = [a.version for a in self.arms]
        if len(set(versions)) != len(versions):
            raise _bad("arms", versions, "each version may take one role only")
        allowed_roles = _ROLES_OF[self.strategy]
        for i, a in enumerate(self.arms):
            where = f"arms.{i}"
            if not isinstance(a.version, int) or isinstance(a.version, bool) or a.version < 1:
                raise _bad(f"{where}.version", a.version, "expected a version number >= 1")
            if a.role not in allowed_roles:
                raise _bad(f"{where}.role", a.role, f"expected one of "
                           f"{', '.join(allowed_roles)} under strategy {self.strategy}")
            if a.role == "shadow" and a.share is not None:
                raise _bad(f"{where}.share", a.share, "a shadow takes no share (None)")
            if a.gate not in GATES:
                raise _bad(f"{where}.gate", a.gate, f"expected one of {', '.join(GATES)}")
            if a.role in LIVE_ROLES and a.gate not in SERVABLE_GATES:
                raise _bad(f"{where}.version", a.version,
                           f"v{a.version}'s gate is {a.gate}: it may only be a shadow "
                           f"(live roles need a passed gate, or the baseline served when "
                           f"nothing passed)")
        if self.arms:
            self._check_roles()
        if self.step is not None and not 0 <= self.step < len(self.steps):
            raise _bad("step", self.step, f"expected an index of steps (0..{len(self.steps) - 1})")
        return self

    def _check_roles(self) -> None:
        roles = [a.role for a in self.arms]
        first = _ROLES_OF[self.strategy][0]
        if roles.count(first) != 1:
            raise _bad("arms", [a.to_dict() for a in self.arms],
                       f"expected exactly one {first} version under strategy {self.strategy}")
        for one in ("canary", "green"):
            if roles.count(one) > 1:
                raise _bad("arms", roles, f"expected at most one {one}")
        live = self.shares()
        check_shares(live, field="arms.share")  # sums to 1 within 1e-9, each in [0, 1]


def _check_steps(steps: Sequence[float]) -> None:
    values = list(steps)
    if not values or any(isinstance(s, bool) or not isinstance(s, (int, float))
                         or not math.isfinite(s) for s in values):
        raise _bad("steps", values, "expected candidate shares, e.g. 0.05,0.25,0.5,1")
    if any(not 0.0 < s <= 1.0 for s in values):
        raise _bad("steps", values, "each step is a share in (0, 1]; 5 % is 0.05")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise _bad("steps", values, "expected strictly increasing shares")
    if values[-1] != 1.0:
        raise _bad("steps", values, f"ends at {values[-1]:g}: the schedule must reach 1 "
                                    f"(100 %) to finish")


# -- transitions ---------------------------------------------------------------------

def _next(state: DeploymentState, action: str, summary: str, reason: str | None,
          **changes: Any) -> tuple[DeploymentState, Change]:
    extra = {k: v for k, v in changes.pop("extra", state.extra).items() if k != "default"}
    new = replace(state, revision=state.revision + 1, extra=extra, **changes).validate()
    before = state.to_dict() if state.revision or state.extra.get("default") else None
    return new, Change(action, summary, before, new.to_dict(), reason)


def _stable_arm(state: DeploymentState, version: int, gate: str) -> Arm:
    return Arm(version, "blue" if state.strategy == "bluegreen" else "stable", 1.0, gate)


def _pct(share: float) -> str:
    return f"{share * 100:g} %"


def configure(state: DeploymentState, *, strategy: str, automation: str | None = None,
              steps: Sequence[float] | None = None, split: float | None = None,
              key: str | None = None, fallback: str | None = None,
              reason: str | None = None) -> tuple[DeploymentState, Change]:
    """The deployment under a new strategy (or new steps, split, automation); its stable
    version stays. Refused while a rollout is in progress: promote or abort it first."""
    if state.status in ("progressing", "paused"):
        raise _bad("status", state.status, "a rollout is in progress: promote or abort it "
                                           "before changing the strategy")
    if strategy not in STRATEGIES:
        raise _bad("strategy", strategy, f"expected one of {', '.join(STRATEGIES)}")
    inc = state.incumbent
    arms = () if inc is None else (Arm(inc.version, "blue" if strategy == "bluegreen"
                                       else "stable", 1.0, inc.gate),)
    new_steps = tuple(steps) if steps is not None else state.steps
    _check_steps(new_steps)
    summary = f"strategy {strategy}" + (f", steps {','.join(f'{s:g}' for s in new_steps)}"
                                        if strategy == "canary" else "")
    return _next(state, "configure", summary, reason, strategy=strategy, arms=arms,
                 automation=automation or state.automation, steps=new_steps,
                 split=state.split if split is None else split, step=None, status="stable",
                 key=state.key if key is None else (key or None),
                 fallback=fallback or state.fallback)


def start_candidate(state: DeploymentState, candidate: Candidate, *,
                    reason: str | None = None) -> tuple[DeploymentState, Change]:
    """The tracked alias moved to ``candidate``: start the strategy with it.

    ``single`` swaps it in at once (today's hot swap); ``canary`` gives it the first
    step's share; ``shadow`` makes it a shadow; ``ab``/``bandit`` give it ``split``;
    ``bluegreen`` loads it as green at share 0, the switch pending. With nothing serving
    yet it becomes stable at once. A candidate already in progress is replaced.
    """
    v, gate = candidate.version, candidate.gate
    inc = state.incumbent
    if inc is not None and inc.version == v:
        raise _bad("version", v, f"v{v} already serves deployment {state.name!r} as "
                                 f"{inc.role}; expected another version")
    if gate not in GATES:
        raise _bad("gate", gate, f"expected one of {', '.join(GATES)}")
    if inc is None or state.strategy == "single":
        if gate not in SERVABLE_GATES:
            raise _bad("version", v, f"v{v}'s gate is {gate}: it may only be a shadow, "
                                     f"and strategy {state.strategy} has no shadow role")
        return _next(state, "candidate", f"v{v} {'stable' if inc is None else 'swapped in'}"
                     + (f" (was v{inc.version})" if inc else ""), reason,
                     arms=(_stable_arm(state, v, gate),), status="stable", step=None)
    s = state.strategy
    if s != "shadow" and gate not in SERVABLE_GATES:
        raise _bad("version", v, f"v{v}'s gate is {gate}: it may only be a shadow "
                                 f"(strategy shadow), not a {s} candidate")
    stable = replace(inc, share=1.0)
    step = None
    if s == "shadow":
        arms, summary = (stable, Arm(v, "shadow", None, gate)), f"shadow v{v}"
    elif s == "canary":
        first = state.steps[0]
        arms = (replace(inc, share=1.0 - first), Arm(v, "canary", first, gate))
        step, summary = 0, f"canary v{v} at {_pct(first)}"
    elif s in ("ab", "bandit"):
        arms = (replace(inc, share=1.0 - state.split), Arm(v, "arm", state.split, gate))
        summary = f"{s} v{v} at {_pct(state.split)}"
    else:  # bluegreen
        arms, summary = (stable, Arm(v, "green", 0.0, gate)), f"green v{v} loaded, switch pending"
    return _next(state, "candidate", f"{summary} (v{inc.version} {inc.role})", reason,
                 arms=arms, status="progressing", step=step)


def _finish(state: DeploymentState, cand: Arm, reason: str | None,
            ) -> tuple[DeploymentState, Change]:
    if cand.gate not in SERVABLE_GATES:
        raise _bad("version", cand.version, f"v{cand.version}'s gate is {cand.gate}: it may "
                                            f"only be a shadow, it cannot be promoted")
    was = state.incumbent
    return _next(state, "promote", f"v{cand.version} stable (was v{was.version if was else '-'})",
                 reason, arms=(_stable_arm(state, cand.version, cand.gate),),
                 status="stable", step=None)


def _in_progress(state: DeploymentState, what: str) -> Arm:
    cand = state.candidate
    if state.status not in ("progressing", "paused") or cand is None:
        raise _bad("status", state.status, f"no rollout of deployment {state.name!r} is in "
                                           f"progress to {what}; expected progressing or paused")
    return cand


def promote(state: DeploymentState, *, reason: str | None = None,
            ) -> tuple[DeploymentState, Change]:
    """One step forward: the next canary step, the blue-green switch, or the finish
    (the candidate becomes the stable version). A paused rollout resumes."""
    cand = _in_progress(state, "promote")
    inc = state.incumbent
    assert inc is not None
    if state.strategy == "canary" and state.step is not None \
            and state.step + 1 < len(state.steps) and state.steps[state.step + 1] < 1.0:
        nxt = state.steps[state.step + 1]
        arms = (replace(inc, share=1.0 - nxt), replace(cand, share=nxt))
        return _next(state, "promote", f"canary v{cand.version} at {_pct(nxt)}", reason,
                     arms=arms, step=state.step + 1, status="progressing")
    if state.strategy == "bluegreen" and cand.share == 0.0:
        return _next(state, "promote", f"switched to green v{cand.version} (blue "
                                       f"v{inc.version} kept loaded)", reason,
                     arms=(replace(inc, share=0.0), replace(cand, share=1.0)),
                     status="progressing")
    return _finish(state, cand, reason)


def pause(state: DeploymentState, *, reason: str | None = None,
          ) -> tuple[DeploymentState, Change]:
    """Hold the rollout where it is (traffic unchanged) until promoted or aborted."""
    cand = _in_progress(state, "pause")
    if state.status == "paused":
        raise _bad("status", state.status, "already paused; expected progressing")
    return _next(state, "pause", f"paused with v{cand.version} {cand.role}", reason,
                 status="paused")


def abort(state: DeploymentState, *, reason: str | None = None,
          ) -> tuple[DeploymentState, Change]:
    """Stop the rollout: the stable version alone takes every request again."""
    cand = _in_progress(state, "abort")
    inc = state.incumbent
    assert inc is not None
    return _next(state, "abort", f"aborted v{cand.version}; v{inc.version} serves alone",
                 reason, arms=(_stable_arm(state, inc.version, inc.gate),),
                 status="aborted", step=None)


def reweight(state: DeploymentState, shares: Mapping[str, float], *,
             reason: str | None = None) -> tuple[DeploymentState, Change]:
    """A bandit's (or an A/B test's) live arms at new ``shares`` (``{"v1": 0.3, "v2":
    0.7}``, by :meth:`DeploymentState.shares`' names; summing to 1), the roles unchanged:
    what the rollout controller writes as the policy's split adapts."""
    _in_progress(state, "reweight")
    if state.strategy not in ("ab", "bandit"):
        raise _bad("strategy", state.strategy, "only an ab or bandit deployment's shares "
                                               "are set by weight")
    live = state.shares()
    if set(shares) != set(live):
        raise _bad("shares", dict(shares), f"expected a share for each live arm: "
                                           f"{', '.join(sorted(live))}")
    arms = tuple(replace(a, share=float(shares[f"v{a.version}"])) if a.role in LIVE_ROLES
                 else a for a in state.arms)
    summary = "shares " + ", ".join(f"v{a.version} {_pct(a.share or 0.0)}" for a in arms
                                     if a.role in LIVE_ROLES)
    return _next(state, "reweight", summary, reason, arms=arms)
