"""The forecasting pipeline as a list of stages, built from the project config.

::

    snapshot:<src> ─▶ validate:<src> ─▶ panel ─▶ features ─┬─▶ candidate:<name> ─▶ select
                                                 split ───┘     holdout:<baseline>   │
                                                                holdout:selected ◀───┘
                                                                       │
                                               gate ─▶ bundle:selected (if passed)
                                                   └─▶ bundle:baseline (if not)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cd4ml.config import ProjectConfig
from cd4ml.pipeline.runner import Stage

__all__ = ["build_stages", "STEPS"]

STEPS = "cd4ml.pipeline.steps_data"
MSTEPS = "cd4ml.pipeline.steps_model"
_DATA_LIBS = ("pandas", "numpy", "pyarrow")
_ML_LIBS = (*_DATA_LIBS, "lightgbm", "scikit-learn", "skops")


def _file_input(ctx: Any, rel: str) -> Any:
    def extra() -> dict[str, Any]:
        from cd4ml.store.fingerprint import file_fingerprint

        return {"file": file_fingerprint(ctx.path(rel), ctx.project_dir / ".cd4ml" /
                                         "hashes.json")}
    return extra


def _schema_input(ctx: Any, rel: str) -> Any:
    def extra() -> dict[str, Any]:
        p = ctx.path(rel)
        return {"schema": p.read_text(encoding="utf-8") if p.exists() else None}
    return extra


def build_stages(cfg: ProjectConfig, ctx: Any) -> list[Stage]:
    """Every stage of a run, in order, with the exact params each one depends on."""
    data, feats, ev = cfg.data, cfg.features, cfg.evaluation
    stages: list[Stage] = []
    for name, src in data.sources.items():
        schema_path = str(Path(data.schema_dir) / f"{name}.yaml")
        keys = [*data.series, data.time] if name == data.main else None
        stages.append(Stage(
            f"snapshot:{name}", f"{STEPS}:snapshot",
            params={"source": name, "config": src.model_dump(mode="json"),
                    "schema_path": schema_path, "keys": keys},
            libraries=_DATA_LIBS, extra_inputs=_file_input(ctx, src.path)))
        stages.append(Stage(
            f"validate:{name}", f"{STEPS}:check", inputs=(f"snapshot:{name}.data",),
            params={"source": name, "schema_path": schema_path}, libraries=_DATA_LIBS,
            extra_inputs=_schema_input(ctx, schema_path)))
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
        stages.append(Stage(f"candidate:{spec.name}", f"{MSTEPS}:validate_candidate",
                            inputs=model_inputs,
                            params={"spec": spec.model_dump(mode="json"), "seed": seed,
                                    "evaluation": ev_dump}, libraries=_ML_LIBS))
    stages.append(Stage("select", f"{MSTEPS}:select",
                        inputs=tuple(f"candidate:{s.name}.report" for s in all_specs),
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
    return stages
