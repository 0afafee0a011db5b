"""Task kinds in cd4ml.yaml: forecast stays the default; tabular keys are checked per task,
and what config.py cannot know (model types, metrics) is checked when the project loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLE

from cd4ml.config import load_config, parse_yaml, validate_config
from cd4ml.errors import ConfigError
from cd4ml.pipeline.checks import check_project

TABULAR = {
    "project": "employment", "task": "classification",
    "data": {"sources": {"acs": {"path": "data/employment.parquet"}}, "main": "acs",
             "target": "employed", "id": "id"},
    "inputs": {"drop": ["year"]},
    "split": {"train": {"year": [2015]}, "holdout": {"year": [2016]},
              "exclude": {"year": [2017, 2018]},
              "validation": {"share": 0.2, "stratify": True, "seed": 0}},
    "models": {"name": "acs", "candidates": [{"name": "gbm", "type": "lightgbm"}]},
    "evaluation": {"protected": ["SEX", "RAC1P"], "min_group_size": 1000},
    "gate": {"max_group_gap": [{"column": "SEX", "metric": "tpr", "points": 3}]},
}


def _with(**changes: object) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(TABULAR))
    for path, value in changes.items():
        cur = raw
        *parents, last = path.split("__")
        for p in parents:
            cur = cur.setdefault(p, {})
        if value is None:
            cur.pop(last, None)
        else:
            cur[last] = value
    return raw


def test_forecast_is_the_default_and_keeps_its_defaults(tmp_path: Path) -> None:
    (tmp_path / "cd4ml.yaml").write_text((EXAMPLE / "cd4ml.yaml").read_text())
    cfg, _ = load_config(tmp_path)
    assert cfg.task == "forecast" and cfg.evaluation.metric == "wmae"
    assert cfg.split.method(cfg.task) == "periods"
    assert [b.type for b in cfg.models.baselines] == ["seasonal_naive"]
    check_project(cfg)


def test_tabular_defaults_by_task() -> None:
    cfg = validate_config(TABULAR)
    assert cfg.evaluation.metric == "roc_auc" and cfg.split.method(cfg.task) == "values"
    assert [b.type for b in cfg.models.baselines] == ["prior"]
    check_project(cfg)
    reg = validate_config(_with(task="regression", gate__max_group_gap=[],
                                evaluation__protected=[]))
    assert reg.evaluation.metric == "rmse" and [b.type for b in reg.models.baselines] == ["mean"]


@pytest.mark.parametrize("changes, text", [
    ({"split__by": "periods"}, "split.by = 'periods' does not fit task classification"),
    ({"split__holdout_periods": 4}, "do not go with split.by = 'values'"),
    ({"split__holdout": None, "split__train": None, "split__exclude": None},
     "split.by = 'values' needs split.holdout"),
    ({"split__by": "random"}, "do not go with split.by = 'random'"),
    ({"gate__max_group_gap": [{"column": "AGEP", "metric": "tpr", "points": 3}]},
     "gate.max_group_gap.0.column = 'AGEP' is not in evaluation.protected"),
    ({"features": {"horizon": 3}}, "features: is for forecasts"),
    ({"evaluation__decision_threshold": 1.5}, "must be in (0, 1) or 'accuracy'"),
    ({"task": "ranking"}, "Input should be 'forecast', 'classification' or 'regression'"),
    ({"data__classes": [0]}, "at least 2"),
])
def test_tabular_config_errors_name_the_key(changes: dict, text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        validate_config(_with(**changes), file="cd4ml.yaml")
    assert text in str(exc.value) and str(exc.value).startswith("cd4ml.yaml: ")


def test_forecast_refuses_tabular_keys() -> None:
    raw = parse_yaml((EXAMPLE / "cd4ml.yaml").read_text())
    raw["inputs"] = {"drop": ["x"]}
    with pytest.raises(ConfigError, match="inputs: is for tabular tasks"):
        validate_config(raw)
    raw.pop("inputs")
    raw["data"].pop("series")
    with pytest.raises(ConfigError, match="data.series is required for task forecast"):
        validate_config(raw)


@pytest.mark.parametrize("changes, key, text", [
    ({"models__candidates": [{"name": "x", "type": "xgboost"}]}, "models.candidates.0.type",
     "unknown model type"),
    ({"models__baselines": [{"name": "s", "type": "seasonal_naive"}]}, "models.baselines.0.type",
     "seasonal_naive"),
    ({"evaluation__metric": "wmae"}, "evaluation.metric", "not a metric of task classification"),
    ({"gate__max_metric": 0.9}, "gate.max_metric", "higher-is-better: use gate.min_metric"),
    ({"gate__max_group_gap": [{"column": "SEX", "metric": "wmae", "points": 3}]},
     "gate.max_group_gap.0.metric", "not a group metric"),
])
def test_project_checks_name_file_key_and_known(changes: dict, key: str, text: str) -> None:
    cfg = validate_config(_with(**changes))
    with pytest.raises(ConfigError) as exc:
        check_project(cfg, file="p/cd4ml.yaml")
    msg = str(exc.value)
    assert msg.startswith("p/cd4ml.yaml: ") and key in msg and text in msg
    assert "\n" not in msg
