"""Complete small tabular projects on real data, for end-to-end tests (a run takes seconds).

Each ``*_project(dest)`` writes ``dest/cd4ml.yaml``, ``dest/data/<file>`` and
``dest/schema/<source>.yaml`` and returns ``dest``; ``changes`` is merged into the config
(nested dicts merge, anything else replaces), e.g. ``{"gate": {"min_metric": 0.99}}``.

- :func:`wine_project`: multiclass (3 cultivars, 178 rows, 13 float inputs), scikit-learn's
  bundled wine data; split at random, stratified.
- :func:`bike_project`: regression of daily rentals (731 days, 2011-2012), the committed
  ``tests/data/bike_sharing_daily.csv``; split by time on ``dteday`` or by values of ``yr``.
- :func:`acs_project`: binary (employed), ``rows_per_year`` rows of each ACS year from
  ../shared/data (skips the test when absent), with the employment example's schema and
  split (train 2015, holdout 2016, 2017-2018 excluded), protected SEX and RAC1P.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from cd4ml.data.schema import Schema, infer_schema, save_schema

__all__ = ["wine_project", "bike_project", "acs_project", "write_wine", "TINY_LIGHTGBM"]

ROOT = Path(__file__).resolve().parents[1]
BIKE_CSV = ROOT / "tests" / "data" / "bike_sharing_daily.csv"
EMPLOYMENT = ROOT / "examples" / "employment"
#: LightGBM small enough that a fit on a few thousand rows takes well under a second
TINY_LIGHTGBM = {"n_estimators": 20, "learning_rate": 0.2, "num_leaves": 7,
                 "min_child_samples": 5, "subsample": 1.0, "colsample_bytree": 1.0,
                 "n_jobs": 1}


def _merge(base: dict[str, Any], changes: dict[str, Any] | None) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in (changes or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else copy.deepcopy(v)
    return out


def _write(dest: Path, config: dict[str, Any], changes: dict[str, Any] | None) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(_merge(config, changes), sort_keys=False, width=100)
    (dest / "cd4ml.yaml").write_text(text, encoding="utf-8")
    return dest


def write_wine(path: Path) -> pd.DataFrame:
    """scikit-learn's wine data as Parquet: 13 float inputs (``/`` in a name becomes
    ``_``) and ``target`` (0, 1, 2). Returns the frame written."""
    from sklearn.datasets import load_wine

    df = load_wine(as_frame=True).frame
    df.columns = [str(c).replace("/", "_") for c in df.columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False)
    return df


def wine_project(dest: Path, changes: dict[str, Any] | None = None) -> Path:
    """Multiclass wine: 25 % holdout and 25 % of the rest for validation, both stratified."""
    df = write_wine(dest / "data" / "wine.parquet")
    schema = infer_schema(df, name="wine")
    cols = [c.model_copy(update={"categories": [0, 1, 2], "min": None})
            if c.name == "target" else c for c in schema.columns]
    save_schema(Schema(name="wine", columns=cols), dest / "schema" / "wine.yaml")
    return _write(dest, {
        "project": "wine",
        "task": "classification",
        "data": {"sources": {"wine": {"path": "data/wine.parquet"}}, "main": "wine",
                 "target": "target", "classes": [0, 1, 2]},
        "split": {"by": "random", "holdout_share": 0.25, "stratify": True, "seed": 0,
                  "validation": {"share": 0.25, "stratify": True, "seed": 0}},
        "models": {"name": "wine", "seed": 0, "candidates": [
            {"name": "lightgbm", "type": "lightgbm", "params": TINY_LIGHTGBM},
            {"name": "logistic_regression", "type": "logistic_regression"}],
            "baselines": [{"name": "prior", "type": "prior"}]},
        "evaluation": {"metric": "log_loss", "bootstrap": 0},
    }, changes)


def bike_project(dest: Path, changes: dict[str, Any] | None = None, *,
                 by: str = "time") -> Path:
    """Regression of ``cnt`` (rentals per day). ``by="time"``: holdout from 2012-07-01,
    exclude from 2012-10-01; ``by="values"``: train 2011 (``yr`` 0), holdout 2012. The
    inputs leave out ``casual`` and ``registered`` (they sum to the target), the date and
    ``instant`` (the row id)."""
    (dest / "data").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BIKE_CSV, dest / "data" / "bike.csv")
    df = pd.read_csv(BIKE_CSV, parse_dates=["dteday"])
    codes = {"season": [1, 2, 3, 4], "yr": [0, 1], "mnth": list(range(1, 13)),
             "holiday": [0, 1], "weekday": list(range(7)), "workingday": [0, 1],
             "weathersit": [1, 2, 3, 4]}  # UCI's readme: 4 = heavy rain, none in the data
    bounds = {"temp": (0, 1), "atemp": (0, 1), "hum": (0, 1), "windspeed": (0, 1)}
    cols = []
    for c in infer_schema(df, name="bike").columns:
        if c.name in codes:
            c = c.model_copy(update={"categories": codes[c.name], "min": None})
        elif c.name in bounds:
            c = c.model_copy(update={"min": bounds[c.name][0], "max": bounds[c.name][1]})
        cols.append(c)
    save_schema(Schema(name="bike", columns=cols, unique_keys=["instant"]),
                dest / "schema" / "bike.yaml")
    splits = {
        "time": {"by": "time", "column": "dteday", "holdout_from": "2012-07-01",
                 "exclude_from": "2012-10-01", "validation": {"share": 0.2, "seed": 0}},
        "values": {"by": "values", "train": {"yr": [0]}, "holdout": {"yr": [1]},
                   "validation": {"share": 0.2, "seed": 0}},
    }
    if by not in splits:
        raise ValueError(f"by == {by!r}, must be one of {list(splits)}")
    return _write(dest, {
        "project": "bike",
        "task": "regression",
        "data": {"sources": {"bike": {"path": "data/bike.csv", "dates": ["dteday"]}},
                 "main": "bike", "target": "cnt", "id": "instant"},
        "inputs": {"drop": ["dteday", "casual", "registered"]},
        "split": splits[by],
        "models": {"name": "bike", "seed": 0, "candidates": [
            {"name": "lightgbm", "type": "lightgbm", "params": TINY_LIGHTGBM},
            {"name": "linear_regression", "type": "linear_regression"}],
            "baselines": [{"name": "mean", "type": "mean"}]},
        "evaluation": {"metric": "rmse", "bootstrap": 0},
    }, changes)


def acs_path() -> Path:
    base = os.environ.get("CD4ML_SHARED_DATA")
    return (Path(base) if base else ROOT.parent / "shared" / "data") \
        / "acs-employment-ma" / "employment.parquet"


def acs_project(dest: Path, changes: dict[str, Any] | None = None, *,
                rows_per_year: int = 3_000, seed: int = 0) -> Path:
    """Binary employment on ``rows_per_year`` rows of each year (a seeded sample), with
    the example's schema, split, protected columns and gate, tiny models, and
    ``min_group_size`` 300 (with 3,000 holdout rows: SEX 1 and 2, RAC1P 1 are gated)."""
    path = acs_path()
    if not path.is_file():
        pytest.skip(f"ACS employment data not found at {path} (set CD4ML_SHARED_DATA, or "
                    f"`cd4ml example-data DIR --dataset employment`)")
    df = pd.read_parquet(path)
    sample = (df.groupby("year", group_keys=False)
              .sample(n=rows_per_year, random_state=seed).sort_values("id"))
    (dest / "data").mkdir(parents=True, exist_ok=True)
    sample.to_parquet(dest / "data" / "employment.parquet", index=False)
    shutil.copytree(EMPLOYMENT / "schema", dest / "schema", dirs_exist_ok=True)
    config = yaml.safe_load((EMPLOYMENT / "cd4ml.yaml").read_text(encoding="utf-8"))
    config["models"]["candidates"] = [
        {"name": "lightgbm", "type": "lightgbm", "params": TINY_LIGHTGBM},
        {"name": "logistic_regression", "type": "logistic_regression"}]
    config["evaluation"] = {**config["evaluation"], "min_group_size": 300, "bootstrap": 100}
    config.pop("serving", None)
    return _write(dest, config, changes)


def wine_rollout_project(dest: Path) -> Path:
    """Wine with three versions: v1 the baseline served because nothing passed (an
    impossible gate), v2 a candidate that passed (production moved to it), v3 the same
    bundle registered as a version whose gate failed."""
    from cd4ml.config import load_config
    from cd4ml.pipeline.run import run_pipeline
    from cd4ml.store import open_stores

    proj = wine_project(dest)
    first = run_pipeline(proj, ["gate.max_metric=0.0001"])
    assert first.registered and first.registered["kind"] == "baseline"
    second = run_pipeline(proj)
    assert second.registered and second.registered["version"] == 2
    cfg, _ = load_config(proj)
    with open_stores(cfg.store, proj) as stores:
        v2 = stores.metadata.resolve("wine", 2)
        stores.metadata.register_version("wine", digest=v2["digest"], kind="candidate",
                                         model_type="lightgbm", gate={"passed": False},
                                         actor="test")
    return proj
