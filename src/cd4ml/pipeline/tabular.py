"""The pipeline of a tabular task (classification, regression) as a list of stages.

::

    snapshot:<src> ─▶ validate:<src> ─▶ table ─▶ split ─┬─▶ leakage (a warning per input
                                                        │   that alone predicts the target)
                                                        ├─▶ candidate:<name> ─▶ select
                                                        │   (fit on train, score validation;
                                                        │    a search: its best trial)
                                                        ├─▶ holdout:<baseline>     │
                                                        └─▶ holdout:selected ◀─────┘
                                                            (fit on train + validation,
                                                             score the holdout, bundle)
                                                                  │
                                       gate ─▶ bundle:selected (if passed) / bundle:baseline
                                         └───▶ reference (training inputs, holdout outputs)

Candidates are compared on the validation share of the training rows; the holdout judges
the selected recipe and the baselines, each fitted on all training rows, and that fitted
model is what gets registered (``split.refit_on_all: true`` refits it on the holdout too,
and the bundle says so), so the holdout stays out-of-sample for monitoring's reference.
A model that cannot be fitted fails alone (:mod:`cd4ml.pipeline.steps_model`).
"""

from __future__ import annotations

from typing import Any

from cd4ml.config import ProjectConfig
from cd4ml.pipeline.checks import age_column
from cd4ml.pipeline.runner import Stage
from cd4ml.pipeline.sources import (DATA_LIBS, ML_LIBS, candidate_stage, leakage_stage,
                                   reference_stage, schema_input, schema_path, source_stages,
                                   tuned_specs)
from cd4ml.tasks import task_of

__all__ = ["build_stages"]

TSTEPS = "cd4ml.pipeline.steps_tabular"
MSTEPS = "cd4ml.pipeline.steps_model"


def build_stages(cfg: ProjectConfig, ctx: Any) -> list[Stage]:
    """Every stage of a tabular run, with the exact params each one depends on."""
    data, ev = cfg.data, cfg.evaluation
    task = task_of(cfg.task)
    stages = source_stages(cfg, ctx, keys=[data.id] if data.id else None)
    schemas = [schema_path(cfg, n) for n in data.sources]

    def schema_texts() -> dict[str, Any]:
        return {p: schema_input(ctx, p)()["schema"] for p in schemas}

    stages.append(Stage(
        "table", f"{TSTEPS}:table", inputs=tuple(f"validate:{n}.data" for n in data.sources),
        params={"task": cfg.task, "data": data.model_dump(mode="json"),
                "inputs": cfg.inputs.model_dump(mode="json"), "schema_paths": schemas,
                "columns": [*ev.protected, *ev.slices]},
        libraries=DATA_LIBS, extra_inputs=schema_texts))
    stages.append(Stage(
        "split", f"{TSTEPS}:split", inputs=("table.table",),
        params={"task": cfg.task, "split": cfg.split.model_dump(mode="json"),
                "target": data.target}, libraries=DATA_LIBS))
    model_inputs = ("table.table", "table.spec", "split.roles")
    if ev.leakage.enabled:
        stages.append(leakage_stage(cfg, "tabular_leakage", model_inputs))
    ev_dump = ev.model_dump(mode="json", exclude={"leakage"})  # the models never read it
    common = {"task": cfg.task, "seed": cfg.models.seed, "evaluation": ev_dump,
              "model_name": cfg.models.name}
    baselines = cfg.models.baselines or []
    all_specs = [*cfg.models.candidates, *baselines]
    if any(s.params.get("recency_half_life") is not None for s in all_specs):
        common["age_column"] = age_column(cfg)  # what recency weighting ages rows by
    for spec in all_specs:
        stages.append(candidate_stage(
            spec, f"{TSTEPS}:validate_candidate", model_inputs,
            {**common, "spec": spec.model_dump(mode="json")},
            metric=ev.metric or task.default_metric,
            higher=task.higher_is_better(ev.metric or "")))
    stages.append(Stage("select", f"{MSTEPS}:select",
                        inputs=(*(f"candidate:{s.name}.{o}" for s in all_specs
                                  for o in ("report", "error")),
                                *tuned_specs(cfg.models.candidates)),
                        params={"metric": ev.metric, "names": [s.name for s in all_specs],
                                "baselines": [b.name for b in baselines],
                                "higher": task.higher_is_better(ev.metric or ""),
                                "specs": [s.model_dump(mode="json")
                                          for s in cfg.models.candidates]}))
    for b in baselines:
        stages.append(Stage(f"holdout:{b.name}", f"{TSTEPS}:holdout",
                            inputs=(*model_inputs, f"candidate:{b.name}.threshold"),
                            params={**common, "spec": b.model_dump(mode="json"),
                                    "kind": "baseline"}, libraries=ML_LIBS))
    stages.append(Stage("holdout:selected", f"{TSTEPS}:holdout",
                        inputs=(*model_inputs, "select.spec", "select.threshold"),
                        params={**common, "kind": "candidate"}, libraries=ML_LIBS))
    stages.append(Stage("gate", f"{MSTEPS}:gate",
                        inputs=("holdout:selected.report", "holdout:selected.name",
                                "holdout:selected.error",
                                *(f"holdout:{b.name}.{o}" for b in baselines
                                  for o in ("report", "error", "bundle"))),
                        params={"gate": cfg.gate.model_dump(mode="json"), "metric": ev.metric,
                                "higher": task.higher_is_better(ev.metric or ""),
                                "baselines": [b.name for b in baselines],
                                "specs": [b.model_dump(mode="json") for b in baselines]}))
    bundle_params = {**common, "refit_on_all": cfg.split.refit_on_all}
    if not cfg.registry.compile:  # only when off: the stage's key stays as it was
        bundle_params["compile"] = False
    stages.append(Stage("bundle:selected", f"{TSTEPS}:bundle",
                        inputs=(*model_inputs, "holdout:selected.bundle", "select.spec",
                                "select.threshold"),
                        when="gate.passed", params={**bundle_params, "kind": "candidate"},
                        libraries=ML_LIBS))
    stages.append(Stage("bundle:baseline", f"{TSTEPS}:bundle",
                        inputs=(*model_inputs, "gate.best_baseline_bundle",
                                "gate.best_baseline_spec", "gate.best_baseline_threshold"),
                        when="gate.bundle_baseline", params={**bundle_params, "kind": "baseline"},
                        libraries=ML_LIBS))
    stages.append(reference_stage(cfg, ("table.table", "table.spec", "split.roles")))
    return stages
