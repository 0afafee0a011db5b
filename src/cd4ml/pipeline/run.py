"""``cd4ml run``: run the pipeline under the project lock, track it, register what passes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cd4ml.config import CONFIG_FILE, ProjectConfig, load_config
from cd4ml.errors import AliasConflictError
from cd4ml.pipeline.checks import check_project
from cd4ml.pipeline.context import RunContext
from cd4ml.pipeline.runner import Stage, StageResult, run_stages
from cd4ml.store import Stores, open_stores, project_lock
from cd4ml.tasks import resolve, task_of

__all__ = ["run_pipeline", "pipeline_status", "RunOutcome", "open_project"]

Reporter = Callable[[str, Stage, StageResult | None], None]

_log = logging.getLogger("cd4ml.pipeline")


@dataclass
class RunOutcome:
    run_id: str | None
    up_to_date: bool
    stages: list[StageResult]
    metrics: dict[str, float] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    selected: str | None = None
    registered: dict[str, Any] | None = None
    message: str = ""
    failed: dict[str, str] = field(default_factory=dict)  #: stage -> its model's error
    #: each searched candidate's search (``cd4ml.pipeline.search``): method, trials
    #: fitted and reused, the best trial and its params
    searches: dict[str, Any] = field(default_factory=dict)
    #: the leakage stage's findings (``Leak.to_dict()``): warnings, never a failure
    leakage: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "up_to_date": self.up_to_date,
                "stages": [{"name": s.name, "status": s.status, "seconds": round(s.seconds, 3)}
                           for s in self.stages],
                "metrics": self.metrics, "selected": self.selected, "gate": self.gate,
                "registered": self.registered, "message": self.message,
                "failed": self.failed, "searches": self.searches, "leakage": self.leakage}


def open_project(project_dir: str | Path, overrides: list[str] | None = None,
                 ) -> tuple[ProjectConfig, dict[str, Any], Stores, Path]:
    root = Path(project_dir).resolve()
    cfg, raw = load_config(root, overrides)
    check_project(cfg, file=str(root / CONFIG_FILE))
    return cfg, raw, open_stores(cfg.store, root), root


def build_stages(cfg: ProjectConfig, ctx: RunContext) -> list[Stage]:
    """The stages of the project's task (``cd4ml.tasks``)."""
    return resolve(task_of(cfg.task).stages)(cfg, ctx)  # type: ignore[no-any-return]


def _metrics(results: dict[str, StageResult], metric: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, res in results.items():
        if name.startswith("candidate:") and res.outputs.get("report"):
            out[f"validation.{name.split(':', 1)[1]}.{metric}"] = res.outputs["metric"]
            alone = res.outputs["report"].get("fallback", {}).get("without_fallback", {})
            if metric in alone:  # the model alone, before it gave way anywhere
                out[f"validation.{name.split(':', 1)[1]}.{metric}_without_fallback"] = \
                    float(alone[metric])
        if name.startswith("holdout:") and res.outputs.get("report"):
            who = res.outputs["name"] if name == "holdout:selected" else name.split(":", 1)[1]
            tag = "holdout.selected" if name == "holdout:selected" else f"holdout.{who}"
            for k, v in res.outputs["report"]["overall"].items():
                if isinstance(v, (int, float)) and k not in ("n",):
                    out[f"{tag}.{k}"] = float(v)
            alone = res.outputs["report"].get("fallback", {}).get("without_fallback", {})
            if metric in alone:
                out[f"{tag}.{metric}_without_fallback"] = float(alone[metric])
    return out


def _failed(results: dict[str, StageResult]) -> dict[str, str]:
    """The models that could not be fitted: stage name -> error (``steps_model``)."""
    return {n: r.outputs["error"] for n, r in results.items() if r.outputs.get("error")}


def _register(ctx: RunContext, stores: Stores, cfg: ProjectConfig,
              results: dict[str, StageResult], seen: int | None,
              ) -> tuple[dict[str, Any] | None, str]:
    """Register what the gate chose; move the alias only from ``seen``, the version it
    held when the run started, so a move made during the run (a manual rollback, say)
    is never overwritten: the version is registered, the alias stays, and the run says so.
    """
    gate = results["gate"].outputs
    name, alias = cfg.models.name, cfg.registry.promote_on_pass
    md = stores.metadata
    if gate["passed"]:
        b = results["bundle:selected"].outputs
        why = f"gate passed: {gate['candidate']} beat {gate['best_baseline']}"
    elif gate.get("best_baseline") is None:
        return None, "no candidate passed the gate and no baseline could be evaluated on " \
                     "the holdout: nothing registered"
    else:
        if seen is not None or not alias or not cfg.registry.serve_baseline_if_none:
            keep = f"; {alias} stays on v{seen}" if seen is not None else ""
            return None, f"no candidate passed the gate{keep}"
        b = results["bundle:baseline"].outputs
        why = f"no candidate passed the gate; the best baseline {b['recipe']} serves"
    reg: dict[str, Any] = {"model": name, "kind": b["kind"], "recipe": b["recipe"],
                           "alias": alias}
    refused = None
    for v in md.list_versions(name):
        if v["digest"] == b["digest"]:  # same bundle already registered: reuse it
            reg.update(version=v["version"], new=False)
            if alias and alias not in (v.get("aliases") or []):
                try:
                    md.set_alias(name, alias, v["version"], expected=seen, actor="cd4ml run",
                                 reason=why)
                except AliasConflictError as exc:
                    refused = exc.conflict
            break
    else:
        snaps = {n.split(":", 1)[1]: r.outputs["snapshot"] for n, r in results.items()
                 if n.startswith("snapshot:")}
        hold = (results["holdout:selected"] if gate["passed"]
                else results[f"holdout:{gate['best_baseline']}"]).outputs["report"]
        lineage = {"run_id": ctx.run_id, "snapshots": snaps, "recipe": b["recipe"],
                   "trained_on": b["trained_on"], "config_project": cfg.project}
        ref = results.get("reference")
        if ref is not None and ref.outputs.get("reference"):
            lineage["reference"] = ref.outputs["reference"]  # monitoring's reference profile
        done = md.register_version(
            name, run_id=ctx.run_id, digest=b["digest"], kind=b["kind"],
            model_type=b["recipe"], metrics=hold["overall"],
            gate=gate.get("report") or {"passed": False, "note": why}, lineage=lineage,
            set_aliases={alias: seen} if alias else None, actor="cd4ml run", reason=why)
        reg.update(version=done.version, new=True)
        refused = done.refused[0] if done.refused else None
    if refused is None:
        if alias:
            from cd4ml.rollout.manage import on_alias_moved

            reg["deployments"] = on_alias_moved(stores, name, alias, reg["version"],
                                                reason=why, who="cd4ml run")
        return reg, why
    reg.update(alias=None, alias_refused={"alias": alias, "expected": refused.expected,
                                          "found": refused.found})
    found = "unset" if refused.found is None else f"v{refused.found}"
    at_start = "unset" if seen is None else f"v{seen}"
    note = (f"{why}; {alias} NOT moved to v{reg['version']}: it was {at_start} when this run "
            f"started and is {found} now (moved during the run; the move stands). To move "
            f"it anyway: cd4ml promote {name} {reg['version']} --alias {alias}"
            + (f" --expect {refused.found}" if refused.found is not None else ""))
    _log.warning("run %s: %s", ctx.run_id, note)
    return reg, note


def run_pipeline(project_dir: str | Path = ".", overrides: list[str] | None = None, *,
                 force: bool = False, reporter: Reporter | None = None) -> RunOutcome:
    """Run every stale stage; a run with nothing changed does no work and says so."""
    cfg, raw, stores, root = open_project(project_dir, overrides)
    lock = root / ".cd4ml" / "run.lock"
    with stores, project_lock(lock, timeout_s=cfg.store.lock_timeout_s):
        # holding the lock, a run still marked running was killed: say so
        for dead in stores.metadata.list_runs(project=cfg.project, status="running"):
            stores.metadata.finish_run(dead["id"], "failed",
                                       error="interrupted: the process ended before the run "
                                             "finished (found by the next run)")
        ctx = RunContext(cfg, root, stores.metadata, stores.artifacts, raw, force=force)
        alias = cfg.registry.promote_on_pass
        # what the alias holds now: registration moves it only from here (compare-and-set)
        seen = stores.metadata.alias_version(cfg.models.name, alias) if alias else None
        try:
            results = run_stages(build_stages(cfg, ctx), ctx, force=force, on_event=reporter)
            by = {r.name: r for r in results}
            metrics = _metrics(by, cfg.evaluation.metric)
            gate = by["gate"].outputs
            failed = _failed(by)
            searches = {r.name.split(":", 1)[1]: r.outputs["search"] for r in results
                        if r.name.startswith("candidate:") and "search" in r.outputs}
            leakage = list(by["leakage"].outputs["findings"]) if "leakage" in by else []
            registered, message = _register(ctx, stores, cfg, by, seen) \
                if ctx.has_run or force else (None, "")
            if gate.get("note"):
                message = f"{gate['note']}; {message}" if message else gate["note"]
        except (Exception, KeyboardInterrupt) as exc:
            stores.metadata.finish_run(ctx.run_id, "failed", error=f"{type(exc).__name__}: {exc}")
            raise
        if not ctx.has_run:
            return RunOutcome(None, True, results, metrics, gate.get("report"),
                              by["select"].outputs.get("selected"), None,
                              "pipeline is up to date: nothing to do", failed, searches,
                              leakage)
        snaps = {n.split(":", 1)[1]: r.outputs["snapshot"] for n, r in by.items()
                 if n.startswith("snapshot:")}
        arts = {f"{r.name}.{k}": v for r in results for k, v in r.outputs.items()
                if isinstance(v, str) and len(v) == 64}
        summary = {"selected": by["select"].outputs.get("selected"),
                   "leaderboard": by["select"].outputs.get("leaderboard"),
                   "registered": registered, "message": message, "failed": failed,
                   "alias_at_start": {alias: seen} if alias else {},
                   "stages": {r.name: r.status for r in results}, "searches": searches,
                   "leakage": leakage}
        stores.metadata.finish_run(ctx.run_id, "succeeded", metrics=metrics, artifacts=arts,
                                   snapshots=snaps, gate=gate.get("report") or {},
                                   summary=summary)
        return RunOutcome(ctx.run_id, False, results, metrics, gate.get("report"),
                          summary["selected"], registered, message, failed, searches, leakage)


def pipeline_status(project_dir: str | Path = ".", overrides: list[str] | None = None,
                    ) -> list[StageResult]:
    """Which stages are stale and why, without running anything."""
    cfg, raw, stores, root = open_project(project_dir, overrides)
    with stores:
        ctx = RunContext(cfg, root, stores.metadata, stores.artifacts, raw)
        return run_stages(build_stages(cfg, ctx), ctx, dry=True)
