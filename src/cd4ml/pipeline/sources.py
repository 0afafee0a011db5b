"""The stages every task starts with: snapshot each source, validate it against its schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cd4ml.config import ModelSpec, ProjectConfig
from cd4ml.pipeline.runner import Stage

__all__ = ["source_stages", "schema_path", "reference_stage", "candidate_stage", "tuned_specs",
           "leakage_stage", "STEPS", "DATA_LIBS", "ML_LIBS"]

STEPS = "cd4ml.pipeline.steps_data"
DATA_LIBS = ("pandas", "numpy", "pyarrow")
ML_LIBS = (*DATA_LIBS, "lightgbm", "scikit-learn", "skops")


def _file_input(ctx: Any, rel: str) -> Any:
    def extra() -> dict[str, Any]:
        from cd4ml.store.fingerprint import file_fingerprint

        return {"file": file_fingerprint(ctx.path(rel), ctx.project_dir / ".cd4ml" /
                                         "hashes.json")}
    return extra


def schema_input(ctx: Any, rel: str) -> Any:
    """The schema file's text as an input fingerprint (an edit makes the stage stale)."""
    def extra() -> dict[str, Any]:
        p = ctx.path(rel)
        return {"schema": p.read_text(encoding="utf-8") if p.exists() else None}
    return extra


def schema_path(cfg: ProjectConfig, source: str) -> str:
    return str(Path(cfg.data.schema_dir) / f"{source}.yaml")


def source_stages(cfg: ProjectConfig, ctx: Any, *, keys: list[str] | None) -> list[Stage]:
    """``snapshot:<source>`` and ``validate:<source>`` for every source; ``keys`` are the
    main source's columns that identify a row (its inferred schema's unique keys)."""
    stages: list[Stage] = []
    for name, src in cfg.data.sources.items():
        path = schema_path(cfg, name)
        stages.append(Stage(
            f"snapshot:{name}", f"{STEPS}:snapshot",
            params={"source": name, "config": src.model_dump(mode="json"),
                    "schema_path": path, "keys": keys if name == cfg.data.main else None},
            libraries=DATA_LIBS, extra_inputs=_file_input(ctx, src.path)))
        stages.append(Stage(
            f"validate:{name}", f"{STEPS}:check", inputs=(f"snapshot:{name}.data",),
            params={"source": name, "schema_path": path}, libraries=DATA_LIBS,
            extra_inputs=schema_input(ctx, path)))
    return stages


def candidate_stage(spec: ModelSpec, validate: str, inputs: tuple[str, ...],
                    params: dict[str, Any], *, metric: str, higher: bool) -> Stage:
    """``candidate:<name>``: ``validate`` (fit on the training rows, score validation), or,
    for a candidate with a search, the search whose trials are that same function
    (``cd4ml.pipeline.search``)."""
    if spec.search is None:
        return Stage(f"candidate:{spec.name}", validate, inputs=inputs, params=params,
                     libraries=ML_LIBS)
    return Stage(f"candidate:{spec.name}", "cd4ml.pipeline.search:search_candidate",
                 inputs=inputs, modules=(validate.partition(":")[0],),
                 params={"candidate": params, "validate": validate, "metric": metric,
                         "higher": higher}, libraries=(*ML_LIBS, "optuna"))


def tuned_specs(candidates: list[ModelSpec]) -> tuple[str, ...]:
    """The searched candidates' best recipes, which ``select`` takes over their specs."""
    return tuple(f"candidate:{c.name}.spec" for c in candidates if c.search is not None)


def leakage_stage(cfg: ProjectConfig, func: str, inputs: tuple[str, ...]) -> Stage:
    """``leakage``: the task's ``func`` of :mod:`cd4ml.pipeline.steps_leakage` on
    ``inputs``, with ``evaluation.leakage`` and the models' seed (the check's sample)."""
    return Stage("leakage", f"cd4ml.pipeline.steps_leakage:{func}", inputs=inputs,
                 params={"task": cfg.task,
                         "leakage": cfg.evaluation.leakage.model_dump(mode="json"),
                         "seed": cfg.models.seed},
                 libraries=(*DATA_LIBS, "scikit-learn"))


def reference_stage(cfg: ProjectConfig, data_inputs: tuple[str, ...]) -> Stage:
    """The stage that profiles what a registration would serve (``steps_reference``): the
    training rows of ``data_inputs`` and the holdout outputs of the recipe the gate chose
    (and a classifier's decision threshold, for its estimated accuracy)."""
    baselines = [b.name for b in cfg.models.baselines or []]
    thresholds = (("select.threshold", "gate.best_baseline_threshold")
                  if cfg.task == "classification" else ())
    return Stage("reference", "cd4ml.pipeline.steps_reference:reference",
                 inputs=(*data_inputs, "gate.passed", "gate.best_baseline", *thresholds,
                         "holdout:selected.name", "holdout:selected.outputs",
                         *(f"holdout:{b}.outputs" for b in baselines)),
                 params={"task": cfg.task},
                 modules=("cd4ml.monitoring",), libraries=(*DATA_LIBS, "lightgbm"))
