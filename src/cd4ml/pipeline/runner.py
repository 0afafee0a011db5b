"""Run a list of stages with content-addressed caching, like ``dvc repro``.

A stage is a pure function of its declared inputs and params (Kedro's node): the runner
computes its key just before it would run, from the fingerprints of the upstream outputs
it reads, and skips it when the store already holds outputs for that key. Stage
functions are named as ``"module:function"`` strings and imported only when a stage
actually runs, so an up-to-date pipeline is checked without importing ML libraries.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cd4ml.errors import Cd4mlError, PipelineError
from cd4ml.pipeline.cache import stage_key

__all__ = ["Stage", "StageResult", "run_stages", "explain"]


@dataclass(frozen=True)
class Stage:
    """One step: ``func(ctx, inputs, params) -> outputs`` (a dict of JSON-able values).

    ``inputs`` names upstream outputs as ``"stage.output"``; ``extra_inputs`` is a
    callable returning more fingerprints (e.g. raw file hashes) at key time.
    ``when`` names an upstream output that must be truthy for the stage to run.
    """

    name: str
    func: str
    inputs: tuple[str, ...] = ()
    params: Any = None
    modules: tuple[str, ...] = ()
    libraries: tuple[str, ...] = ()
    extra_inputs: Callable[[], dict[str, Any]] | None = field(default=None, compare=False)
    when: str | None = None


@dataclass
class StageResult:
    name: str
    status: str  # "ran", "cached", "skipped"
    key: str | None
    outputs: dict[str, Any]
    seconds: float = 0.0
    reason: str = ""


def _resolve_inputs(stage: Stage, done: dict[str, StageResult]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for ref in stage.inputs:
        up, _, out = ref.partition(".")
        if up not in done:
            raise PipelineError(f"stage {stage.name!r} reads {ref!r}, but stage {up!r} "
                                f"has not run before it")
        res = done[up]
        if out not in res.outputs:
            raise PipelineError(f"stage {stage.name!r} reads {ref!r}, which stage {up!r} "
                                f"did not produce (it produced {sorted(res.outputs)})")
        values[ref] = res.outputs[out]
    return values


def _key(stage: Stage, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    mods = [stage.func.partition(":")[0], *stage.modules]
    return stage_key(name=stage.name, inputs=inputs, params=stage.params,
                     modules=mods, libraries=list(stage.libraries))


def explain(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """Why a stage is stale: which part of its key changed since its last cached run."""
    if not old:
        return "never ran"
    why = []
    for part in ("inputs", "params"):
        a, b = old.get(part), new.get(part)
        if a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                why.append(f"{part} changed: {', '.join(changed[:6])}")
            else:
                why.append(f"{part} changed")
    if old.get("code") != new.get("code"):
        why.append("code changed")
    if old.get("libraries") != new.get("libraries"):
        a, b = old.get("libraries") or {}, new.get("libraries") or {}
        libs = [f"{k} {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k)]
        why.append("library versions changed: " + ", ".join(libs))
    return "; ".join(why) or "changed"


def run_stages(stages: list[Stage], ctx: Any, *, force: bool = False, dry: bool = False,
               on_event: Callable[[str, Stage, StageResult | None], None] | None = None,
               ) -> list[StageResult]:
    """Run (or with ``dry``, only check) ``stages`` in order; returns one result each.

    ``ctx.metadata`` must offer ``cache_get(stage, key)``, ``cache_put(...)`` and
    ``cache_latest(stage)``. In a dry run the first stale stage makes every later
    stage that depends on it "stale (upstream)".
    """
    done: dict[str, StageResult] = {}
    results: list[StageResult] = []
    emit = on_event or (lambda *_: None)

    def finish(res: StageResult, event: str | None, stage: Stage, keep: bool = True) -> None:
        if keep:
            done[stage.name] = res
        results.append(res)
        if event:
            emit(event, stage, res)

    for stage in stages:
        needs = [*stage.inputs, *([stage.when] if stage.when else [])]
        if dry and any(ref.partition(".")[0] not in done for ref in needs):
            finish(StageResult(stage.name, "stale", None, {}, reason="upstream is stale"),
                   None, stage, keep=False)
            continue
        if stage.when is not None:
            up, _, out = stage.when.partition(".")
            if not (up in done and done[up].outputs.get(out)):
                finish(StageResult(stage.name, "skipped", None, {},
                                   reason=f"{stage.when} is false"), "skipped", stage)
                continue
        inputs = _resolve_inputs(stage, done)
        if stage.extra_inputs is not None:
            inputs.update(stage.extra_inputs())
        key, parts = _key(stage, inputs)
        hit = None if force else ctx.metadata.cache_get(stage.name, key)
        if hit is not None:
            finish(StageResult(stage.name, "cached", key, hit["outputs"]["outputs"]),
                   "cached", stage)
            continue
        if dry:
            latest = ctx.metadata.cache_latest(stage.name)
            why = "forced" if force else explain(
                latest["outputs"].get("parts") if latest else None, parts)
            finish(StageResult(stage.name, "stale", key, {}, reason=why), None, stage,
                   keep=False)
            continue
        emit("start", stage, None)
        t0 = time.perf_counter()
        module, _, fname = stage.func.partition(":")
        func = getattr(importlib.import_module(module), fname)
        try:
            outputs = func(ctx, inputs, stage.params)
        except Cd4mlError:
            raise
        except Exception as exc:  # a bug or a library error: name the stage
            raise PipelineError(f"stage {stage.name!r} failed: {type(exc).__name__}: "
                                f"{exc}") from exc
        seconds = time.perf_counter() - t0
        ctx.metadata.cache_put(stage.name, key, {"outputs": outputs, "parts": parts},
                               run_id=ctx.run_id, duration_s=seconds)
        finish(StageResult(stage.name, "ran", key, outputs, seconds), "ran", stage)
    return results
