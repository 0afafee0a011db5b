"""The forecasting pipeline as a list of stages, built from the project config.

::

    snapshot:<src> ─▶ validate:<src> ─▶ panel ─▶ features ─┬─▶ candidate:<name> ─▶ select
                                                 split ───┤     (or its search)      │
                                                          └─▶ leakage (warnings)     │
                                                                holdout:<baseline>   │
                                                                holdout:selected ◀───┘
                                                                       │
                                               gate ─▶ bundle:selected (if passed)
                                                   └─▶ bundle:baseline (if not)

The split refuses, before any fit, a training window too short for the features
(:mod:`cd4ml.features.history`). A model that cannot be fitted fails alone
(:mod:`cd4ml.pipeline.steps_model`).
"""

from __future__ import annotations

from typing import Any

from cd4ml.config import ProjectConfig
from cd4ml.pipeline.runner import Stage
from cd4ml.pipeline.sources import candidate_stage, tuned_specs
from cd4ml.pipeline.sources import DATA_LIBS as _DATA_LIBS
from cd4ml.pipeline.sources import ML_LIBS as _ML_LIBS
from cd4ml.pipeline.sources import STEPS, leakage_stage, reference_stage, source_stages

__all__ = ["build_stages"]

MSTEPS = "cd4ml.pipeline.steps_model"
#: the features keys the split's history check reads (cd4ml.features.history)
HISTORY_KEYS = ("horizon", "lags", "seasonal_period", "seasonal_years", "rolling_windows",
                "rolling_stats")


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
                                "time": data.time, "frequency_days": data.frequency_days,
                                "features": {k: dump_feats[k] for k in HISTORY_KEYS}},
                        libraries=_DATA_LIBS))
    model_inputs = ("panel.panel", "panel.history_end", "features.features", "features.spec",
                    "split.windows")
    if ev.leakage.enabled:
        stages.append(leakage_stage(cfg, "forecast_leakage", (
            "panel.panel", "features.features", "features.spec", "split.windows")))
    ev_dump = ev.model_dump(mode="json", exclude={"leakage"})  # the models never read it
    seed = cfg.models.seed
    all_specs = [*cfg.models.candidates, *cfg.models.baselines]
    baseline_specs = [b.model_dump(mode="json") for b in cfg.models.baselines or []]
    for spec in all_specs:
        extra = {}
        if spec.fallback is not None:
            extra["fallback_baseline"] = _fallback_baseline(cfg, spec.fallback.to)
        stages.append(candidate_stage(
            spec, f"{MSTEPS}:validate_candidate", model_inputs,
            {"spec": spec.model_dump(mode="json"), "seed": seed, "evaluation": ev_dump,
             **extra}, metric=ev.metric or "wmae", higher=False))
    stages.append(Stage("select", f"{MSTEPS}:select",
                        inputs=(*(f"candidate:{s.name}.{o}" for s in all_specs
                                  for o in ("report", "error")),
                                *tuned_specs(cfg.models.candidates)),
                        params={"metric": ev.metric, "names": [s.name for s in all_specs],
                                "baselines": [b.name for b in cfg.models.baselines],
                                "specs": [s.model_dump(mode="json")
                                          for s in cfg.models.candidates],
                                "baseline_specs": baseline_specs}))
    for b in cfg.models.baselines:
        stages.append(Stage(f"holdout:{b.name}", f"{MSTEPS}:holdout", inputs=model_inputs,
                            params={"spec": b.model_dump(mode="json"), "seed": seed,
                                    "evaluation": ev_dump}, libraries=_ML_LIBS))
    stages.append(Stage("holdout:selected", f"{MSTEPS}:holdout",
                        inputs=(*model_inputs, "select.spec", "select.fallback"),
                        params={"seed": seed, "evaluation": ev_dump}, libraries=_ML_LIBS))
    stages.append(Stage("gate", f"{MSTEPS}:gate",
                        inputs=("holdout:selected.report", "holdout:selected.name",
                                "holdout:selected.error",
                                *(f"holdout:{b.name}.{o}" for b in cfg.models.baselines
                                  for o in ("report", "error"))),
                        params={"gate": cfg.gate.model_dump(mode="json"), "metric": ev.metric,
                                "baselines": [b.name for b in cfg.models.baselines],
                                "specs": [b.model_dump(mode="json")
                                          for b in cfg.models.baselines]}))
    bundle_params = {"seed": seed, "evaluation": ev_dump, "model_name": cfg.models.name}
    stages.append(Stage("bundle:selected", f"{MSTEPS}:bundle",
                        inputs=(*model_inputs, "select.spec", "select.fallback"),
                        when="gate.passed",
                        params={**bundle_params, "kind": "candidate"}, libraries=_ML_LIBS))
    stages.append(Stage("bundle:baseline", f"{MSTEPS}:bundle",
                        inputs=(*model_inputs, "gate.best_baseline_spec"),
                        when="gate.bundle_baseline",
                        params={**bundle_params, "kind": "baseline"}, libraries=_ML_LIBS))
    stages.append(reference_stage(cfg, ("panel.panel", "features.spec")))
    return stages


def _fallback_baseline(cfg: ProjectConfig, name: str | None) -> dict[str, Any]:
    """The spec of the baseline a candidate gives way to: ``name``, else the gate's
    baseline, else the first."""
    baselines = cfg.models.baselines or []
    if name is None and cfg.gate.baseline != "best":
        name = cfg.gate.baseline
    spec = next((b for b in baselines if b.name == name), baselines[0])
    return spec.model_dump(mode="json")
