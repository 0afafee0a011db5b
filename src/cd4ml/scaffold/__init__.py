"""``cd4ml init``: a working project from one data file.

:func:`plan_project` reads the file (CSV, zipped or gzipped CSV, Parquet) with the reader
``cd4ml run`` uses, infers its schema with the same inference, decides the task and the
split (:mod:`cd4ml.scaffold.detect`), leaves out the columns that give the answer away or
identify a row (:func:`cd4ml.evaluation.leakage.find_leaks`), and returns a
:class:`Plan`: every decision with its reason, and the files to write.
:func:`write_project` writes them — never over an existing file.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.config import SourceConfig
from cd4ml.data import infer_schema, read_source
from cd4ml.data._types import column_type
from cd4ml.errors import ConfigError, SourceError
from cd4ml.scaffold.detect import (check_target, choose_task, find_series, frequency_days,
                                   parse_time_columns)

__all__ = ["Plan", "Decision", "plan_project", "write_project", "TASKS"]

#: what ``--task`` accepts
TASKS = ("auto", "forecast", "classification", "regression")
#: rows the leakage check fits and scores at most
_LEAK_ROWS = 50_000


@dataclass(frozen=True)
class Decision:
    """One thing ``init`` decided: what (``key``), the choice, and why."""

    key: str
    choice: Any
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "choice": self.choice, "why": self.why}


@dataclass
class Plan:
    """What ``init`` will write, and why."""

    root: Path
    data: Path
    source: str  #: the source's name in cd4ml.yaml (and its schema file's)
    project: str  #: the project's name, and its registered model's
    task: str
    target: str
    decisions: list[Decision] = field(default_factory=list)
    leaks: list[Any] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  #: path under root -> text
    #: what a request carries: the inputs (tabular), or the series keys and time (forecast)
    request_fields: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"project": str(self.root), "data": str(self.data), "task": self.task,
                "target": self.target,
                "decisions": [d.to_dict() for d in self.decisions],
                "leakage": [lk.to_dict() for lk in self.leaks],
                "request_fields": self.request_fields,
                "files": sorted(self.files), "next": self.next_commands()}

    def next_commands(self) -> list[str]:
        p = _shell_path(self.root)
        cmds = [f"cd4ml run -p {p}", f"cd4ml serve -p {p}"]
        if self.task == "forecast":  # rows naming a series and a date ahead
            cmds.append(f"cd4ml predict -p {p} -i ROWS.csv -o predictions.parquet")
        else:
            cmds.append(f"cd4ml predict -p {p} -i {_shell_path(self.data)} "
                        f"-o predictions.parquet")
        return cmds


def _shell_path(p: Path) -> str:
    """``p`` as a command line names it: relative to here when under it, else absolute."""
    here, full = Path.cwd(), p.resolve()
    return shlex.quote(str(full.relative_to(here)) if full.is_relative_to(here) else str(full))


def _project_name(root: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", root.resolve().name).strip("-.")
    return name or "project"


def _source_name(path: Path) -> str:
    stem = path.name.split(".")[0]
    name = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_")
    return name or "data"


def read_data(path: Path) -> pd.DataFrame:
    """The file as ``cd4ml run`` reads it, with a one-line error naming it if unusable."""
    if not path.exists():
        raise SourceError(f"--data: file not found: {path}")
    if not path.is_file():
        raise SourceError(f"--data: not a file: {path}")
    try:
        return read_source(path.name, SourceConfig(path=str(path.resolve())), path.parent)
    except SourceError as exc:
        raise SourceError(f"--data: {exc}") from None


def _untypeable(df: pd.DataFrame) -> dict[str, str]:
    """Columns no schema type can be told from, with the reason (left out of the inputs).
    A column of lists or structs is refused when the file is read."""
    return {str(col): f"every one of its {len(df):,} values is missing"
            for col in df.columns if df[col].isna().all()}


def plan_project(root: str | Path, data: str | Path, *, target: str, task: str = "auto",
                 time: str | None = None, series: list[str] | None = None,
                 id_column: str | None = None, frame: pd.DataFrame | None = None) -> Plan:
    """Decide everything ``cd4ml init`` writes for ``data`` in ``root`` (nothing written).
    ``frame``: the file as :func:`read_data` gave it, when the caller read it already."""
    from cd4ml.scaffold.render import render_files

    root, data = Path(root), Path(data)
    if task not in TASKS:
        raise ConfigError(f"choose one of {', '.join(TASKS)}", key="--task", value=task)
    _refuse_existing(root)
    raw = read_data(data) if frame is None else frame
    file = data.name
    y = check_target(raw, target, file)
    df, dates = parse_time_columns(raw)
    for opt, cols in (("--time", [time] if time else []), ("--series", series or []),
                      ("--id", [id_column] if id_column else [])):
        for c in cols:
            if c not in df.columns:
                raise ConfigError(f"not a column of {file}; columns: "
                                  f"{', '.join(map(str, df.columns))}", key=opt, value=c)
    if time is not None and time not in dates:
        raise ConfigError(f"column {time!r} of {file} is not a date column (ISO 8601 dates, "
                          f"e.g. 2012-10-26)", key="--time", value=time)
    if time is None:
        time = next((d for d in dates if d != target), None)
    if series is not None and time is None:
        raise ConfigError(f"series keys go with a time column, and {file} has no date "
                          f"column (ISO 8601 dates, e.g. 2012-10-26)", key="--series",
                          value=",".join(series))
    forecastable = None
    if time is not None:
        keys = series if series is not None else find_series(df, time, target=target)
        if series is not None and df.duplicated(subset=[*series, time]).any():
            raise ConfigError(f"series {', '.join(series)} and time {time!r} do not identify "
                              f"each row of {file}: some (series, time) pairs repeat",
                              key="--series", value=",".join(series))
        if keys:
            forecastable = (f"the time column {time!r} and the series keys "
                            f"{', '.join(keys)} identify each row")
    else:
        keys = None
    choice = choose_task(y, target, asked=task, forecastable=forecastable)
    plan = Plan(root=root, data=data, source=_source_name(data), task=choice.task,
                target=target, project=_project_name(root))
    add = plan.decisions.append
    add(Decision("task", choice.task, choice.why))
    untypeable = _untypeable(raw)
    for col, why in untypeable.items():
        add(Decision("left out", col, f"no type fits it: {why}"))
    ctx = {"df": df, "time": time, "keys": keys, "series_given": series is not None,
           "classes": choice.classes,
           "untypeable": list(untypeable), "dates": dates, "id": id_column}
    if choice.task == "forecast":
        _plan_forecast(plan, ctx)
    else:
        _plan_tabular(plan, ctx)
    schema = infer_schema(df, name=plan.source, keys=ctx["schema_keys"])
    plan.files = render_files(plan, ctx, schema)
    return plan


def _refuse_existing(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise ConfigError("is a file, not a folder: the project folder to create",
                          key="DIR", value=str(root))
    for name in ("cd4ml.yaml", "schema"):
        if (root / name).exists():
            raise ConfigError(f"{root / name} already exists: cd4ml init never overwrites a "
                              f"project; choose another DIR or remove it", key="DIR",
                              value=str(root))


def _inputs(df: pd.DataFrame, plan: Plan, skip: list[str]) -> list[str]:
    return [str(c) for c in df.columns if str(c) not in skip and str(c) != plan.target]


def _find_leaks(plan: Plan, df: pd.DataFrame, columns: list[str],
                validation: np.ndarray) -> list[Any]:
    """The leakage findings of ``columns`` (kept in the plan): see
    :func:`cd4ml.evaluation.leakage.find_leaks`."""
    from cd4ml.evaluation.leakage import find_leaks

    plan.leaks = find_leaks(df, target=plan.target, task=plan.task, columns=columns,
                            validation=validation, max_rows=_LEAK_ROWS)
    return plan.leaks


def _plan_tabular(plan: Plan, ctx: dict[str, Any]) -> None:
    df, time, add = ctx["df"], ctx["time"], plan.decisions.append
    drop: dict[str, str] = {c: "no type fits it" for c in ctx["untypeable"]}
    for d in ctx["dates"]:
        if d != plan.target:
            drop[d] = ("the split's time column: a date is not a model input" if d == time
                       else "a date: a tabular model takes numbers, text and true/false")
    if time is not None:
        t = df[time]
        cut = t[t >= t.quantile(0.8)].min()
        ctx["split"] = {"by": "time", "column": time, "holdout_from": cut.date().isoformat()}
        why = (f"{time!r} is a time column: the latest 20 % of rows (from "
               f"{cut.date().isoformat()}) are the holdout")
        if ctx["keys"] == []:
            why += "; it holds one row per time, so there are no series to forecast"
        add(Decision("split", "by time", why))
        # the leakage check's validation: the latest 20 % of the training rows
        validation = (t >= t[t < cut].quantile(0.8)).to_numpy() & (t < cut).to_numpy()
    else:
        strat = plan.task == "classification"
        ctx["split"] = {"by": "random", "holdout_share": 0.2, "stratify": strat, "seed": 0}
        add(Decision("split", "random 20 % holdout" + (", stratified" if strat else ""),
                     "no time column" + ("; class shares kept" if strat else "")
                     + "; seed 0"))
        validation = np.random.default_rng(0).random(len(df)) < 0.25
    checked = _inputs(df, plan, [ctx["id"] or "", *drop])
    leaks = _find_leaks(plan, df, checked, validation)
    ids = [lk.column for lk in leaks if lk.kind == "identifier"]
    rid = ctx["id"] or (ids[0] if ids else None)
    if rid is not None:
        add(Decision("data.id", rid, "given by --id" if ctx["id"] else
                     f"a distinct value in each of its {len(df):,} rows: a row id, never an "
                     f"input"))
    for lk in leaks:
        if lk.column != rid and lk.column not in drop:
            drop[lk.column] = "identifier" if lk.kind == "identifier" else "leak"
            add(Decision("left out", lk.column, lk.message()))
    ctx.update(id=rid, drop=drop, schema_keys=[rid] if rid else None,
               inputs=[c for c in checked if c not in drop and c != rid])
    plan.request_fields = ctx["inputs"]
    if not ctx["inputs"]:
        raise ConfigError(f"no input column is left in {plan.data.name} once the target, the "
                          f"row id and the columns above are left out", key="--data",
                          value=str(plan.data))
    add(Decision("inputs", len(ctx["inputs"]), ", ".join(ctx["inputs"])))
    missing = [c for c in ctx["inputs"] if df[c].isna().any()]
    ctx["impute"] = missing
    if missing:
        add(Decision("inputs.missing", "impute",
                     f"{', '.join(missing)} have missing values: filled with the training "
                     f"median / most frequent value (refuse: 422 instead)"))


#: per period in days: (seasonal period, horizon, rolling windows, calendar parts)
_PERIODS = {1: (7, 28, [7, 28], ["week", "month"]),
            7: (52, 13, [4, 13, 52], ["week", "month"])}


def _plan_forecast(plan: Plan, ctx: dict[str, Any]) -> None:
    df, time, keys, add = ctx["df"], ctx["time"], ctx["keys"], plan.decisions.append
    freq = frequency_days(df[time])
    n = int(df[time].nunique())
    season, horizon, windows, calendar = _PERIODS.get(
        freq, (12 if 28 <= freq <= 31 else 4, 6 if 28 <= freq <= 31 else 4, [3, 6], ["month"]))
    horizon = max(1, min(horizon, (n - 1) // 3))
    train = n - 2 * horizon
    lags = [horizon] + ([season] if season > horizon and train >= season + 1 + horizon
                        else [])
    add(Decision("data.series", keys, "given by --series" if ctx["series_given"] else
                 f"with {time!r} they identify each row (the fewest such columns)"))
    add(Decision("features.horizon", horizon,
                 f"{n} periods of {freq} day(s): holdout and validation {horizon} periods "
                 f"each, {train} to train; lags {lags}"))
    others = [c for c in df.columns if c not in (time, plan.target, *keys)
              and c not in ctx["untypeable"] and c not in ctx["dates"]]
    per_time = df.groupby(time)
    per_series = df.groupby(keys)
    covariates, static = {}, []
    for c in others:
        kind = column_type(df[c])
        if kind not in ("int", "float", "bool", "string"):
            continue
        if (per_series[c].nunique(dropna=False) <= 1).all():
            static.append(c)
        elif kind == "string":
            add(Decision("left out", c, "text that changes within a series: not a covariate"))
        elif (per_time[c].nunique(dropna=False) <= 1).all():
            covariates[c] = "known_ahead"
        else:
            covariates[c] = "observed"
    validation = _forecast_validation(df[time], horizon)
    for lk in _find_leaks(plan, df, [*covariates, *static], validation):
        if lk.kind != "identifier":  # a per-series attribute may well be distinct
            covariates.pop(lk.column, None)
            static = [c for c in static if c != lk.column]
            add(Decision("left out", lk.column, lk.message()))
    for c, how in covariates.items():
        add(Decision("features.covariates", c,
                     "the same for every series at each time: known ahead, like a calendar"
                     if how == "known_ahead" else
                     f"observed: only values at least {horizon} periods old are used"))
    if static:
        add(Decision("features.static", static, "constant within each series"))
    plan.request_fields = [*keys, time]
    ctx.update(freq=freq, season=season, horizon=horizon, lags=lags, windows=windows,
               calendar=calendar, covariates=covariates, static=static,
               categorical=[c for c in static if column_type(df[c]) == "string"],
               schema_keys=[*keys, time])


def _forecast_validation(times: pd.Series, horizon: int) -> np.ndarray:
    """The validation periods of a split of ``horizon`` holdout and validation periods."""
    uniq = np.sort(times.dropna().unique())
    lo, hi = uniq[-2 * horizon], uniq[-horizon]
    return ((times >= lo) & (times < hi)).to_numpy()


def write_project(plan: Plan) -> list[Path]:
    """Write the plan's files under ``plan.root``, refusing if any exists (checked first:
    nothing is written then)."""
    _refuse_existing(plan.root)
    paths = [plan.root / rel for rel in plan.files]
    for p in paths:
        if p.exists():
            raise ConfigError(f"{p} already exists: cd4ml init never overwrites a file",
                              key="DIR", value=str(plan.root))
    made: list[Path] = []  # folders and files this call created, undone on a failure
    try:
        for p, text in zip(paths, plan.files.values()):
            for folder in reversed([p.parent, *p.parent.parents]):
                if not folder.exists():
                    folder.mkdir()
                    made.append(folder)
            p.write_text(text, encoding="utf-8")
            made.append(p)
    except OSError as exc:
        for m in reversed(made):
            m.unlink() if m.is_file() else m.rmdir()
        raise ConfigError(f"cannot write {exc.filename or plan.root}: {exc.strerror}; "
                          f"nothing was written", key="DIR", value=str(plan.root)) from None
    return paths
