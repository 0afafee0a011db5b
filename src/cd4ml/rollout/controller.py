"""The rollout controller: each deployment in progress looked at, and decided by its
``automation`` (manual: nothing runs; assisted: it proposes, a person decides; automatic:
it decides). Servers only read what it writes.

One :meth:`Controller.tick` visits every stored deployment that is ``progressing``:

- **canary** — a step's clock starts when the controller first sees its revision (and
  takes the server's router counters then, the step's baseline); once ``rollout.step_s``
  has passed, the step's analysis (:mod:`cd4ml.rollout.analysis`) judges the canary
  against the stable on the router's counts and latency since the baseline and on
  monitoring's judgement of each one's window of the log since the step's revision was
  written. Failed aborts at once (assisted and automatic: the stable serves alone);
  automatic promotes on Successful (the next step, or the finish) and pauses for a
  person on Inconclusive; assisted records the analysis, proposing the step, and waits
  for ``cd4ml rollout promote``. Without metrics (the server unreachable) the step
  waits; with no metrics source at all the server's checks are left out (``skipped``);
- **bandit** (:mod:`cd4ml.rollout.experiments`, as A/B) — every
  ``rollout.bandit.update_s`` the arms' rewards since the candidate started
  (:func:`cd4ml.rollout.signals.outcomes`) give a :class:`~cd4ml.rollout.bandit.
  BanditState` and the policy's shares, floored at ``min_share``; written as the arms'
  shares (automatic) when one moves by more than ``min_change``, so every worker routes
  by them through the store; assisted records them as a proposal;
- **ab** — every ``rollout.ab.look_s`` the arms are compared on their outcomes by
  :func:`~cd4ml.rollout.abtest.compare` and :func:`~cd4ml.rollout.abtest.recommend`
  (the always-valid mSPRT, its running p-value carried from the previous look), the
  result recorded; automatic promotes "B better", aborts "A better" and pauses on "no
  detectable difference".

Every decision goes through :func:`cd4ml.rollout.manage.step` (or the store's
compare-and-set for shares) as ``who="controller"`` with the analysis's one-line
reason; analyses and proposals that change nothing are audited as
``deployment_analysis``, ``deployment_ab`` and ``deployment_bandit`` events
(:func:`record`, read back by :func:`latest`). A deployment changed by someone else
meanwhile (RevisionConflictError) is left for the next tick. Clocks and the metrics
source are injected (``clock``, ``metrics_source``) so a tick is testable alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import RevisionConflictError
from cd4ml.rollout import analysis as an
from cd4ml.rollout.events import WHO, record
from cd4ml.rollout.routed import Routed

if TYPE_CHECKING:
    from cd4ml.config import ProjectConfig
    from cd4ml.serving.deployment import DeploymentState
    from cd4ml.store import Stores

__all__ = ["Controller"]

log = logging.getLogger("cd4ml.rollout")
@dataclass
class _Step:
    """A canary step as this controller saw it begin."""

    began: float  #: the clock when first seen
    metrics: Routed | None  #: the router's counters then (None: no metrics source)
    analysed: float | None = None  #: the clock at its last analysis
    recorded: str | None = None  #: the result last recorded (assisted)


class Controller:
    """Decides the rollouts of one project (see the module's docstring).

    ``metrics_source``: a callable returning the server's Prometheus text (``""`` when
    it cannot be read); None: no server metrics (the error-rate and latency checks are
    skipped). ``clock``: epoch seconds.
    """

    def __init__(self, cfg: ProjectConfig, root: str | Path, stores: Stores, *,
                 metrics_source: Callable[[], str] | None = None,
                 clock: Callable[[], float] = time.time, who: str = WHO) -> None:
        self.cfg, self.root, self.stores = cfg, Path(root), stores
        self.metrics_source, self.clock, self.who = metrics_source, clock, who
        self._steps: dict[tuple[str, int], _Step] = {}
        self._looked: dict[tuple[str, str], float] = {}  # (deployment, kind) -> clock

    # -- the round -------------------------------------------------------------------

    def tick(self) -> list[dict[str, Any]]:
        """One look at every deployment in progress; what was done, one dict each."""
        from cd4ml.rollout import manage

        out = []
        for state in manage.deployments(self.stores, self.cfg):
            if state.status != "progressing" or state.extra.get("default"):
                continue
            entry = {"deployment": state.name, "strategy": state.strategy,
                     "automation": state.automation, "revision": state.revision}
            try:
                entry.update(self._visit(state))
            except RevisionConflictError as exc:
                entry.update(action="conflict", reason=f"{exc}; retried on the next tick")
            except Exception as exc:  # noqa: BLE001 - one deployment must not stop the rest
                log.exception("rollout controller: deployment %s", state.name)
                entry.update(action="error", reason=f"{type(exc).__name__}: {exc}")
            out.append(entry)
        live = {(e["deployment"], e["revision"]) for e in out}
        self._steps = {k: v for k, v in self._steps.items() if k in live}
        return out

    def _visit(self, state: DeploymentState) -> dict[str, Any]:
        if state.automation == "manual":
            return {"action": "none", "reason": "automation manual: a person decides"}
        if state.strategy == "canary":
            return self._canary(state)
        if state.strategy in ("bandit", "ab"):
            from cd4ml.rollout.experiments import ab_look, bandit_look

            return (bandit_look if state.strategy == "bandit" else ab_look)(self, state)
        return {"action": "none", "reason": f"strategy {state.strategy}: a person decides"}

    def _scrape(self, name: str) -> Routed | None:
        """The router's figures of deployment ``name`` now; None when unavailable."""
        assert self.metrics_source is not None
        try:
            text = self.metrics_source()
        except Exception as exc:  # noqa: BLE001 - the server is starting or gone
            log.warning("rollout controller: metrics unavailable: %s", exc)
            return None
        return Routed.parse(text, name) if text else None

    def decide(self, state: DeploymentState, action: str, reason: str) -> dict[str, Any]:
        from cd4ml.rollout import manage

        new = manage.step(self.stores, self.cfg, state.name, action, reason=reason,
                          who=self.who, expected_revision=state.revision)
        return {"action": action, "reason": reason, "to": new.describe(),
                "to_revision": new.revision}

    # -- canary ----------------------------------------------------------------------

    def _canary(self, state: DeploymentState) -> dict[str, Any]:
        now, key = self.clock(), (state.name, state.revision)
        step = self._steps.get(key)
        if step is None:
            metrics = None
            if self.metrics_source is not None:
                metrics = self._scrape(state.name)
                if metrics is None:
                    return {"action": "wait", "reason": "the server's metrics are "
                                                        "unavailable: the step starts later"}
            step = self._steps[key] = _Step(began=now, metrics=metrics)
            return {"action": "step began", "reason": f"step {state.step} began; analysis "
                                                      f"in {self.cfg.rollout.step_s:g} s"}
        since = step.analysed if step.analysed is not None else step.began
        left = self.cfg.rollout.step_s - (now - since)
        if left > 0:
            return {"action": "wait", "reason": f"analysis in {left:.0f} s"}
        current = None
        if self.metrics_source is not None:
            current = self._scrape(state.name)
            if current is None:
                return {"action": "wait", "reason": "the server's metrics are unavailable"}
        result = self.analyse(state, step.metrics, current)
        step.analysed = now
        doc = result.to_dict()
        line = f"analysis {result.reason}"
        if result.result == an.FAILED:
            record(self.stores, state, "analysis", {**doc, "decision": "abort"}, line, self.who)
            return {**self.decide(state, "abort", line), "analysis": doc}
        if state.automation == "automatic":
            action = "promote" if result.result == an.SUCCESSFUL else "pause"
            record(self.stores, state, "analysis", {**doc, "decision": action}, line, self.who)
            return {**self.decide(state, action, line), "analysis": doc}
        proposal = "promote" if result.result == an.SUCCESSFUL else "wait for a person"
        if step.recorded != result.result:  # assisted: recorded when the result changes
            record(self.stores, state, "analysis", {**doc, "proposal": proposal},
                   f"{line}; proposes: {proposal} (cd4ml rollout promote {state.name})",
                   self.who)
            step.recorded = result.result
        return {"action": "propose", "proposal": proposal, "reason": line, "analysis": doc}

    def analyse(self, state: DeploymentState, before: Routed | None,
                now: Routed | None) -> an.Analysis:
        """The analysis of ``state``'s current canary step: the router's figures since
        ``before`` (both None: no metrics source) and each arm's log window since the
        step's revision was written."""
        checks = self.cfg.rollout.analysis
        stable, cand = state.incumbent, state.candidate
        assert stable is not None and cand is not None
        results: list[an.MetricResult] = []
        skipped: dict[str, str] = {}
        if now is None:
            for name in ("error_rate", "latency"):
                skipped[name] = "no server metrics (cd4ml rollout controller --metrics-url)"
        else:
            delta = now.since(before)
            c = checks.error_rate
            if c.enabled:
                results.append(an.error_rate(
                    delta.counts_of(cand.version, cand.role),
                    delta.counts_of(stable.version, stable.role),
                    max_increase=c.max_increase, min_samples=c.min_samples))
            else:
                skipped["error_rate"] = "disabled"
            lc = checks.latency
            if lc.enabled:
                results.append(an.latency(
                    delta.latency_of(cand.version, cand.role),
                    delta.latency_of(stable.version, stable.role), quantile=lc.quantile,
                    max_ratio=lc.max_ratio, min_increase_ms=lc.min_increase_ms,
                    min_samples=lc.min_samples))
            else:
                skipped["latency"] = "disabled"
        self._log_checks(state, results, skipped)
        return an.Analysis(tuple(results), skipped)

    def began_at(self, state: DeploymentState, action: str | None = None) -> float | None:
        """When ``state``'s revision was written (``action``: the latest event of that
        action instead), epoch seconds."""
        hist = self.stores.metadata.deployment_history(state.name)
        for e in reversed(hist):
            if (e["action"] == action) if action else (e["revision"] == state.revision):
                return float(e["at"].timestamp())
        return None

    def _log_checks(self, state: DeploymentState, results: list[an.MetricResult],
                    skipped: dict[str, str]) -> None:
        from cd4ml.rollout.signals import judge_version
        from cd4ml.tasks import task_of

        checks, cfg = self.cfg.rollout.analysis, self.cfg
        wanted = [n for n in ("drift", "quality", "estimated") if getattr(checks, n).enabled]
        skipped.update({n: "disabled" for n in ("drift", "quality", "estimated")
                        if n not in wanted})
        if not wanted:
            return
        stable, cand = state.incumbent, state.candidate
        assert stable is not None and cand is not None
        since = self.began_at(state)
        docs = {who: judge_version(cfg, self.root, self.stores, state.model, arm.version,
                                   arm.role, since=since)
                for who, arm in (("canary", cand), ("stable", stable))}
        missing = [f"v{a.version}: {docs[w]['message']}" for w, a in
                   (("canary", cand), ("stable", stable)) if docs[w]["state"] != "ok"]
        if missing:
            skipped.update({n: "; ".join(missing) for n in wanted})
            return
        c, s = docs["canary"], docs["stable"]
        if "drift" in wanted:
            if c["drift"].get("state") == "not applicable":
                skipped["drift"] = c["drift"]["message"]
            else:
                d = checks.drift
                results.append(an.drift(
                    c["metrics"].get("drift.share"), int(c["rows"]),
                    max_share=d.max_share or cfg.monitoring.drift.drift_share,
                    min_samples=d.min_samples, stable_share=s["metrics"].get("drift.share"),
                    drifted=c["drift"].get("drifted") or ()))
        metric = cfg.evaluation.metric
        higher = task_of(cfg.task).higher_is_better(metric)
        if "quality" in wanted:
            q = checks.quality
            results.append(an.quality(
                metric, an.finite(c["metrics"].get(f"quality.{metric}")),
                an.finite(s["metrics"].get(f"quality.{metric}")), int(c["quality"].get("rows") or 0),
                int(s["quality"].get("rows") or 0), higher_is_better=higher,
                max_degradation=q.max_degradation, min_samples=q.min_samples))
        if "estimated" in wanted:
            if "estimated" not in c or "estimated" not in s:
                skipped["estimated"] = ("no estimate without labels: binary classifiers "
                                        "with a calibrated reference only")
            else:
                e = checks.estimated
                m = metric if f"estimated.{metric}" in c["metrics"] else "roc_auc"
                results.append(an.quality(
                    m, an.finite(c["metrics"].get(f"estimated.{m}")),
                    an.finite(s["metrics"].get(f"estimated.{m}")), int(c["rows"]), int(s["rows"]),
                    higher_is_better=True, max_degradation=e.max_degradation,
                    min_samples=e.min_samples, name="estimated", rows="rows"))

    # -- bandit and A/B --------------------------------------------------------------

    def due(self, state: DeploymentState, kind: str, every: float) -> float | None:
        """Seconds left before the next look of ``kind`` (None: due now, and marked)."""
        now, key = self.clock(), (state.name, kind)
        last = self._looked.get(key)
        if last is not None and now - last < every:
            return every - (now - last)
        self._looked[key] = now
        return None

    def arms(self, state: DeploymentState) -> dict[str, tuple[int, str]]:
        return {f"v{a.version}": (a.version, a.role) for a in state.arms
                if a.role in ("stable", "arm")}
