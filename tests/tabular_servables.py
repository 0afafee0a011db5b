"""Tabular servables for the serving tests, built as the pipeline builds them: real
data, the schema's signature (features/tabular.py), a model fitted on the transform's
matrix by the adapters (training.fit_model), a bundle saved and registered, loaded back
by the registry (or, in process, a TabularServable made from the same parts).

- ACS employment (binary, ``../shared/data/acs-employment-ma``; skipped when absent):
  the PUMS codes found in the data declared as categories, AGEP 0-99; trained on 2015
  rows, requests from 2016.
- wine (multiclass, scikit-learn's bundled copy): 13 numeric inputs bounded by the
  data's range.
- diabetes (regression, scikit-learn's bundled copy): 10 numeric inputs.

A LightGBM classifier's ``.booster`` is LightGBM's own: binary (P(class 1), what
MLServer's LightGBM runtime answers) or multiclass; the tests' reference.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
ACS_NAME = "acs-employment"
ACS_CATEGORICAL = ["SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
                   "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]


def acs_path() -> Path:
    base = os.environ.get("CD4ML_SHARED_DATA")
    base_path = Path(base) if base else ROOT.parent / "shared" / "data"
    return base_path / "acs-employment-ma" / "employment.parquet"


def acs_frame() -> pd.DataFrame:
    p = acs_path()
    if not p.is_file():
        pytest.skip(f"ACS employment data not found at {p} (set CD4ML_SHARED_DATA)")
    return pd.read_parquet(p)


def acs_schema(df: pd.DataFrame) -> Any:
    from cd4ml.data.schema import Column, Schema

    cols = [Column(name="id", type="int"), Column(name="AGEP", type="float", min=0, max=99)]
    cols += [Column(name=c, type="int", categories=sorted(int(v) for v in df[c].unique()))
             for c in ACS_CATEGORICAL]
    cols += [Column(name="year", type="int"), Column(name="employed", type="int")]
    return Schema(name="acs", columns=cols)


def fit_parts(frame: pd.DataFrame, schema: Any, target: str, *, task: str,
              drop: list[str] | None = None, id: str | None = None, trees: int = 40,
              type_: str = "lightgbm", inputs: Any = None) -> tuple[Any, ...]:
    """(spec, transform, predictor, X): a model of ``type_`` fitted on ``frame`` by the
    adapters (``training.fit_model``), as the pipeline fits it."""
    from cd4ml.config import InputsConfig, ModelSpec
    from cd4ml.features.tabular import TabularTransform, tabular_spec
    from cd4ml.training.fit import fit_model

    spec = tabular_spec([schema], frame, inputs or InputsConfig(drop=drop or []),
                        target=target, id=id, task=task)
    transform = TabularTransform.fit(spec, frame)
    X = transform.matrix(frame)
    params: dict[str, Any] = {"n_estimators": trees, "num_leaves": 15} \
        if type_ == "lightgbm" else {}
    predictor = fit_model(ModelSpec(name=type_, type=type_, params=params),
                          pd.DataFrame(X, columns=transform.feature_names),
                          spec.encode_target(frame[target]), task=task,
                          categorical=transform.categorical, classes=spec.classes)
    return spec, transform, predictor, X


def write_project(proj: Path, *, name: str, task: str, target: str,
                  extra_yaml: str = "") -> Path:
    proj.mkdir(parents=True, exist_ok=True)
    (proj / "cd4ml.yaml").write_text(
        f"project: {name}\ntask: {task}\n"
        f"data:\n  sources: {{main: {{path: data/rows.parquet}}}}\n  main: main\n"
        f"  target: {target}\n"
        f"split:\n  by: random\n  holdout_share: 0.2\n"
        f"models:\n  name: {name}\n  candidates:\n    - {{name: lightgbm, type: lightgbm}}\n"
        + extra_yaml)
    return proj


def register(proj: Path, name: str, parts: tuple[Any, ...], *, alias: str = "production",
             decision_threshold: float | None = None,
             gate: dict[str, Any] | None = None) -> int:
    """Save a tabular bundle of ``parts`` in the project's store, register it (with
    ``gate``, if given), move ``alias`` to it; returns its version."""
    from cd4ml.config import load_config
    from cd4ml.registry.bundle import save_tabular_bundle
    from cd4ml.store import open_stores

    spec, transform, predictor, X = parts
    cfg, _ = load_config(proj)
    with open_stores(cfg.store, proj) as st:
        digest = save_tabular_bundle(
            st.artifacts, model_name=name, recipe="lightgbm", kind="candidate",
            predictor=predictor, spec=spec, transform=transform, rows=X,
            trained_on={"rows": len(X)}, decision_threshold=decision_threshold)
        reg = st.metadata.register_version(
            name, digest=digest, kind="candidate", model_type="lightgbm",
            set_aliases={alias: "any"}, actor="test", reason="test bundle",
            **({"gate": gate} if gate is not None else {}))
    return reg.version


def load(proj: Path, name: str, ref: str = "production") -> Any:
    from cd4ml.registry.loader import load_model

    return load_model(f"{name}@{ref}", project_dir=proj)


def acs_parts(n_train: int = 12_000, trees: int = 40,
              ) -> tuple[tuple[Any, ...], pd.DataFrame]:
    """ACS parts (trained on a seeded sample of 2015) and 2016 rows for requests."""
    df = acs_frame()
    train = df[df.year == 2015].sample(n_train, random_state=0).reset_index(drop=True)
    later = df[df.year == 2016].sample(2_000, random_state=1).reset_index(drop=True)
    parts = fit_parts(train, acs_schema(df), "employed", task="classification",
                      drop=["year"], id="id", trees=trees)
    return parts, later


def wine_parts() -> tuple[tuple[Any, ...], pd.DataFrame]:
    from sklearn.datasets import load_wine

    from cd4ml.data.schema import Column, Schema

    data = load_wine(as_frame=True)
    df = data.frame.rename(columns=lambda c: c.replace("/", "_"))
    cols = [Column(name=c, type="float", min=float(df[c].min()), max=float(df[c].max()))
            for c in df.columns if c != "target"]
    schema = Schema(name="wine", columns=[*cols, Column(name="target", type="int")])
    return fit_parts(df, schema, "target", task="classification", trees=30), df


def diabetes_parts() -> tuple[tuple[Any, ...], pd.DataFrame]:
    from sklearn.datasets import load_diabetes

    from cd4ml.data.schema import Column, Schema

    df = load_diabetes(as_frame=True, scaled=False).frame
    cols = [Column(name=c, type="float") for c in df.columns if c != "target"]
    schema = Schema(name="diabetes", columns=[*cols, Column(name="target", type="float")])
    return fit_parts(df, schema, "target", task="regression", trees=30), df


def servable(parts: tuple[Any, ...], name: str, version: int = 1,
             threshold: float | None = None) -> Any:
    """A TabularServable built in process from ``parts`` (no store)."""
    from cd4ml.registry.tabular import TabularServable, signature

    spec, transform, predictor, _ = parts
    return TabularServable(predictor, spec, transform, name=name, version=version,
                           manifest={"signature": signature(spec, transform), "task": spec.task},
                           threshold=threshold)


def records(frame: pd.DataFrame, fields: list[str]) -> list[dict[str, Any]]:
    """Rows as a JSON client sends them (ints for the int columns, floats for floats)."""
    out = frame[fields].to_dict("records")
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}
            for r in out]


def acs_reference_matrix(frame: pd.DataFrame, df_all: pd.DataFrame | None = None) -> np.ndarray:
    """The ACS inputs encoded independently of cd4ml: AGEP as it is, each PUMS code as
    its position among the codes the schema declares (the sorted codes in the data)."""
    df_all = acs_frame() if df_all is None else df_all
    cols = [frame["AGEP"].to_numpy(np.float64)]
    for c in ACS_CATEGORICAL:
        cats = np.sort(df_all[c].unique())
        cols.append(np.searchsorted(cats, frame[c].to_numpy()).astype(np.float64))
    return np.column_stack(cols).astype(np.float32)


def proba(booster: Any, X: np.ndarray) -> np.ndarray:
    """A LightGBM classifier's (n, k) probabilities from its booster: a binary booster's
    P(class 1) as the columns [1 - p, p]."""
    p = booster.predict(X)
    return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p
