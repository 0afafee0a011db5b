"""The small tabular projects of tests/tabular_projects.py and the employment example:
each config loads, each schema accepts its data, and the split gives the counts stated."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
from tabular_projects import acs_path, acs_project, bike_project, wine_project

from cd4ml.config import load_config
from cd4ml.data import load_schema, read_source, validate
from cd4ml.data.tabular_split import assign_roles

ROOT = Path(__file__).resolve().parents[1]
EMPLOYMENT = ROOT / "examples" / "employment"

PROJECTS: dict[str, tuple[Callable[[Path], Path], str, dict[str, int]]] = {
    "wine": (wine_project, "classification",
             {"train": 100, "validation": 33, "holdout": 45, "excluded": 0}),
    "bike-time": (bike_project, "regression",
                  {"train": 438, "validation": 109, "holdout": 92, "excluded": 92}),
    "bike-values": (lambda d: bike_project(d, by="values"), "regression",
                    {"train": 292, "validation": 73, "holdout": 366, "excluded": 0}),
    "acs": (acs_project, "classification",
            {"train": 2_400, "validation": 600, "holdout": 3_000, "excluded": 6_000}),
}


@pytest.mark.parametrize("name", list(PROJECTS))
def test_project_loads_validates_and_splits(name: str, tmp_path: Path) -> None:
    make, task, counts = PROJECTS[name]
    proj = make(tmp_path / name)
    cfg, _ = load_config(proj)
    assert cfg.task == task
    frames = []
    for src, sc in cfg.data.sources.items():
        df = read_source(src, sc, proj)
        report = validate(df, load_schema(proj / cfg.data.schema_dir / f"{src}.yaml"))
        assert report.ok, report.render()
        frames.append(df)
    roles = assign_roles(frames[0], cfg.split, target=cfg.data.target,
                         classification=task == "classification")
    assert roles.counts() == counts


def test_changes_merge_into_the_config(tmp_path: Path) -> None:
    proj = wine_project(tmp_path / "w", {"gate": {"min_metric": 0.9},
                                         "split": {"holdout_share": 0.3}})
    cfg, _ = load_config(proj)
    assert cfg.gate.min_metric == 0.9 and cfg.split.holdout_share == 0.3
    assert cfg.split.validation.share == 0.25  # the rest of split: kept


def test_employment_schema_declares_exactly_the_codes_in_the_data() -> None:
    if not acs_path().is_file():
        pytest.skip(f"ACS employment data not found at {acs_path()}")
    df = pd.read_parquet(acs_path())
    schema = load_schema(EMPLOYMENT / "schema" / "acs.yaml")
    assert schema.names == list(df.columns)
    report = validate(df, schema)
    assert report.ok, report.render()
    for col in schema.columns:
        if col.categories is not None:  # every declared code occurs (none is invented)
            assert sorted(df[col.name].unique().tolist()) == col.categories, col.name
    cfg, _ = load_config(EMPLOYMENT)
    assert (cfg.task, cfg.data.target, cfg.inputs.drop) == ("classification", "employed",
                                                            ["year"])
    counts = assign_roles(df, cfg.split, target="employed", classification=True).counts()
    assert counts == {"train": 55_028, "validation": 13_757, "holdout": 69_126,
                      "excluded": 139_766}
