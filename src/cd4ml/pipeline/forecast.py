"""The forecasting pipeline as a list of stages, built from the project config.

::

    snapshot:<src> ─▶ validate:<src> ─▶ panel ─▶ features ─┬─▶ candidate:<name> ─▶ select
                                                 split ───┘     (or its search)      │
                                                                holdout:<baseline>   │
                                                                holdout:selected ◀───┘
                                                                       │
                                               gate ─▶ bundle:selected (if passed)
                                                   └─▶ bundle:baseline (if not)
"""

from __future__ import annotations

from typing import Any

from cd4ml.config import ProjectConfig
from cd4ml.pipeline.runner import Stage
from cd4ml.pipeline.sources import candidate_stage, tuned_specs
from cd4ml.pipeline.sources import DATA_LIBS as _DATA_LIBS
from cd4ml.pipeline.sources import ML_LIBS as _ML_LIBS
from cd4ml.pipeline.sources import STEPS, reference_stage, source_stages

__all__ = ["build_stages"]

MSTEPS = "cd4ml.pipeline.steps_model"


def build_stages(cfg: ProjectConfig, ctx: Any) -> list[Stage]:
    """Every stage of a run, in order, with the exact params each one depends on."""
    data, feats, ev = cfg.data, cfg.features, cfg.evaluation
    stages = source_stages(cfg, ctx, keys=[*(data.series or []), data.time])
    dump_data, dump_feats = data.model_dump(mode="json"), feats.model_dump(mode="json")
    panel_feats = {k: dump_feats[k] for k in ("horizon", "covariates", "static")}
    stages.append(Stage("panel", f"{STEPS}:panel",
                        inputs=tuple(f"validate:{n}.data" for n in data.sources),
                        params={"data": dump_data, "features": panel_feats},
                        libraries=_DATA_LIBS))
    stages.append(Stage("features", f"{STEPS}:features",
                        inputs=("panel.panel", "panel.history_end"),
                        params={"data": dump_data, "features": dump_feats},
                        libraries=_DATA_LIBS))
    stages.append(Stage("split", f"{STEPS}:split", inputs=("panel.panel", "panel.history_end"),
                        params={**cfg.split.model_dump(), "target": data.target,
                                "time": data.time, "frequency_days": data.frequency_days},
                        libraries=_DATA_LIBS))
    model_inputs = ("panel.panel", "panel.history_end", "features.features", "features.spec",
                    "split.windows")
    ev_dump = ev.model_dump(mode="json")
    seed = cfg.models.seed
    all_specs = [*cfg.models.candidates, *cfg.models.baselines]
    for spec in all_specs:
        stages.append(candidate_stage(
            spec, f"{MSTEPS}:validate_candidate", model_inputs,
            {"spec": spec.model_dump(mode="json"), "seed": seed, "evaluation": ev_dump},
            metric=ev.metric or "wmae", higher=False))
    stages.append(Stage("select", f"{MSTEPS}:select",
                        inputs=(*(f"candidate:{s.name}.report" for s in all_specs),
                                *tuned_specs(cfg.models.candidates)),
                        params={"metric": ev.metric, "names": [s.name for s in all_specs],
                                "baselines": [b.name for b in cfg.models.baselines],
                                "specs": [s.model_dump(mode="json")
                                          for s in cfg.models.candidates]}))
    for b in cfg.models.baselines:
        stages.append(Stage(f"holdout:{b.name}", f"{MSTEPS}:holdout", inputs=model_inputs,
                            params={"spec": b.model_dump(mode="json"), "seed": seed,
                                    "evaluation": ev_dump}, libraries=_ML_LIBS))
    stages.append(Stage("holdout:selected", f"{MSTEPS}:holdout",
                        inputs=(*model_inputs, "select.spec"),
                        params={"seed": seed, "evaluation": ev_dump}, libraries=_ML_LIBS))
    stages.append(Stage("gate", f"{MSTEPS}:gate",
                        inputs=("holdout:selected.report", "holdout:selected.name",
                                *(f"holdout:{b.name}.report" for b in cfg.models.baselines)),
                        params={"gate": cfg.gate.model_dump(mode="json"), "metric": ev.metric,
                                "baselines": [b.name for b in cfg.models.baselines],
                                "specs": [b.model_dump(mode="json")
                                          for b in cfg.models.baselines]}))
    bundle_params = {"seed": seed, "evaluation": ev_dump, "model_name": cfg.models.name}
    stages.append(Stage("bundle:selected", f"{MSTEPS}:bundle",
                        inputs=(*model_inputs, "select.spec"), when="gate.passed",
                        params={**bundle_params, "kind": "candidate"}, libraries=_ML_LIBS))
    stages.append(Stage("bundle:baseline", f"{MSTEPS}:bundle",
                        inputs=(*model_inputs, "gate.best_baseline_spec"), when="gate.failed",
                        params={**bundle_params, "kind": "baseline"}, libraries=_ML_LIBS))
    stages.append(reference_stage(cfg, ("panel.panel", "features.spec")))
    return stages
