"""The commented ``cd4ml.yaml`` and ``schema/<source>.yaml`` that ``cd4ml init`` writes.

Each section says what was decided and why, and what to edit next; values are written by
``yaml.safe_dump`` so any column name or label is quoted as YAML needs.
"""

from __future__ import annotations

from typing import Any

import yaml

from cd4ml.data import Schema, schema_yaml

__all__ = ["render_files"]

#: per task: (candidates, baseline, metric)
_MODELS = {
    "forecast": (["lightgbm", "linear_regression"], "seasonal_naive", "mae"),
    "classification": (["lightgbm", "logistic_regression"], "prior", "roc_auc"),
    "regression": (["lightgbm", "linear_regression"], "mean", "rmse"),
}


def _v(value: Any) -> str:
    """One YAML value in flow style, on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True,
                          sort_keys=False)
    return text.strip().removesuffix("...").strip()


def _data_path(plan: Any) -> str:
    """The data file relative to the project when it lies inside it, else absolute."""
    data, root = plan.data.resolve(), plan.root.resolve()
    try:
        return data.relative_to(root).as_posix()
    except ValueError:
        return str(data)


def render_files(plan: Any, ctx: dict[str, Any], schema: Schema) -> dict[str, str]:
    """Path under the project -> text, for the plan's ``cd4ml.yaml`` and schema file."""
    return {"cd4ml.yaml": _config(plan, ctx),
            f"schema/{plan.source}.yaml": schema_yaml(schema)}


def _header(plan: Any) -> list[str]:
    lines = [f"# Written by `cd4ml init` from {plan.data.name}: edit freely, then "
             f"`cd4ml run`.", "# What it decided, and why:"]
    for d in plan.decisions:
        choice = d.choice if isinstance(d.choice, str) else _v(d.choice)
        lines.append(f"#   {d.key}: {choice} - {d.why}")
    return lines


def _config(plan: Any, ctx: dict[str, Any]) -> str:
    out = [*_header(plan), f"project: {_v(plan.project)}", f"task: {plan.task}", ""]
    out += _data(plan, ctx)
    out += _forecast(ctx) if plan.task == "forecast" else _tabular(plan, ctx)
    out += _models(plan)
    return "\n".join(out) + "\n"


def _data(plan: Any, ctx: dict[str, Any]) -> list[str]:
    src: dict[str, Any] = {"path": _data_path(plan)}
    if ctx["time"] is not None and ctx["time"] in ctx["dates"]:
        src["dates"] = [ctx["time"]]
    out = ["data:", "  sources:", f"    {plan.source}: {_v(src)}", f"  main: {plan.source}",
           f"  target: {_v(plan.target)}"]
    if plan.task == "forecast":
        out += [f"  time: {_v(ctx['time'])}", f"  series: {_v(ctx['keys'])}",
                f"  frequency_days: {ctx['freq']}"]
    else:
        if ctx["id"]:
            out.append(f"  id: {_v(ctx['id'])}                 # a row id: never an input")
        if ctx["classes"] is not None:  # classification only
            out.append(f"  classes: {_v(ctx['classes'])}")
    return [*out, ""]


_DROP_WHY = {"leak": "alone it gives the answer away (see above): remove it from drop "
                     "and add it to evaluation.leakage.allow to keep it on purpose",
             "identifier": "a distinct value in every row: an identifier, not a feature"}


def _tabular(plan: Any, ctx: dict[str, Any]) -> list[str]:
    out = []
    drop = ctx["drop"]
    if drop or ctx["impute"]:
        out.append("inputs:                       # every other column is an input")
    if drop:
        out.append("  drop:")
        for col, why in drop.items():
            out.append(f"    - {_v(col)}   # {_DROP_WHY.get(why, why)}")
    if ctx["impute"]:
        out.append("  missing: impute             # refuse: a missing value is a 422 instead")
    out += ["", "split:"]
    sp = ctx["split"]
    if sp["by"] == "time":
        out += ["  by: time", f"  column: {_v(sp['column'])}",
                f"  holdout_from: {_v(sp['holdout_from'])}   # the gate judges these rows"]
    else:
        out += ["  by: random", f"  holdout_share: {sp['holdout_share']}   # the gate judges "
                                 f"these rows", f"  stratify: {_v(sp['stratify'])}",
                f"  seed: {sp['seed']}"]
    strat = "true" if plan.task == "classification" else "false"
    out += [f"  validation: {{share: 0.2, stratify: {strat}, seed: 0}}   # compares the "
            f"candidates; the holdout never", ""]
    return out


def _forecast(ctx: dict[str, Any]) -> list[str]:
    h = ctx["horizon"]
    out = ["features:",
           f"  horizon: {h}                 # periods between the last known value and the "
           f"forecast", f"  lags: {_v(ctx['lags'])}",
           f"  seasonal_period: {ctx['season']}",
           f"  rolling_windows: {_v(ctx['windows'])}",
           f"  calendar: {_v(ctx['calendar'])}",
           "  # holidays: [super_bowl, easter, labor_day, thanksgiving, christmas]  "
           "# US holidays as features"]
    if ctx["static"]:
        out.append(f"  static: {_v(ctx['static'])}")
    if ctx["categorical"]:
        out.append(f"  categorical: {_v(ctx['categorical'])}")
    if ctx["covariates"]:
        out.append("  covariates:")
        for col, how in ctx["covariates"].items():
            out.append(f"    {_v(col)}: {how}")
    out += ["", "split:", f"  holdout_periods: {h}          # the gate judges the last "
                          f"{h} periods",
            f"  validation_periods: {h}       # the candidates are compared on the {h} "
            f"before", ""]
    return out


def _models(plan: Any) -> list[str]:
    cands, baseline, metric = _MODELS[plan.task]
    out = ["models:", f"  name: {_v(plan.project)}", "  seed: 0", "  candidates:"]
    out += [f"    - {{name: {c}, type: {c}}}" for c in cands]
    out += ["    # - {name: random_forest, type: random_forest}", "  baselines:",
            f"    - {{name: {baseline}, type: {baseline}}}   # the honest baseline to beat", "",
            "evaluation:", f"  metric: {metric}"]
    if plan.task == "forecast":
        out += ["  # weight_column: IsHoliday   # a 0/1 column whose rows weigh `weight` "
                "times (then metric: wmae)", "  # slices: [a series key]   # metrics per "
                "slice; the gate can refuse a slice that regresses"]
    else:
        out += ["  # protected: [a column]   # metrics per group; the gate can bound the "
                "gap between groups", "  # slices: [a column]"]
    out += ["", "gate:", f"  baseline: {baseline}", "  min_improvement_pct: 0     # the "
            "selected model must beat the baseline", "", "serving:",
            "  port: 5005", ""]
    return out
