"""A search's config and samplers: bad input refused in one line naming the key and the
value, with the stores unchanged; the parameter lists; seeded, prefix-stable samplers."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tabular_projects import wine_project

from cd4ml.config import SearchConfig
from cd4ml.errors import ConfigError
from cd4ml.pipeline.run import open_project, run_pipeline
from cd4ml.training.param_names import LIGHTGBM_SKLEARN, allowed_params
from cd4ml.training.search import TPE_STARTUP, make_sampler

LGB = "models.candidates.0.search"  # wine's first candidate: lightgbm
LOGREG = "models.candidates.1.search"  # its second: logistic_regression


@pytest.fixture(scope="module")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    proj = wine_project(tmp_path_factory.mktemp("search-bad") / "wine")
    assert run_pipeline(proj).registered
    return proj


def _store_state(proj: Path) -> dict[str, Any]:
    _, _, stores, _ = open_project(proj)
    with stores, stores.metadata.engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ("runs", "stage_cache", "model_versions", "aliases", "audit_events")}


BAD = [
    pytest.param(f"{LGB}={{method: tpe, trials: 3, space: {{}}}}", f"{LGB}.space", {},
                 "empty space", id="empty-space"),
    pytest.param(f"{LGB}={{method: random, trials: 3, space: {{learning_rate: []}}}}",
                 f"{LGB}.space.learning_rate", [], "no values", id="no-values"),
    pytest.param(f"{LGB}={{method: tpe, trials: 3, space: {{learning_rate: "
                 f"{{low: 0.3, high: 0.1}}}}}}", f"{LGB}.space.learning_rate",
                 {"low": 0.3, "high": 0.1}, "low 0.3 > high 0.1", id="low-above-high"),
    pytest.param(f"{LGB}={{method: tpe, trials: 3, space: {{learning_rate: "
                 f"{{low: 0, high: 0.1, log: true}}}}}}", f"{LGB}.space.learning_rate",
                 {"low": 0, "high": 0.1, "log": True}, "needs low > 0", id="log-low-zero"),
    pytest.param(f"{LGB}={{method: grid, trials: 3, space: {{learning_rate: "
                 f"{{low: 0.1, high: 0.3}}}}}}", f"{LGB}.space.learning_rate",
                 {"low": 0.1, "high": 0.3}, "grid needs a step", id="grid-without-step"),
    pytest.param(f"{LGB}={{method: tpe, trials: 0, space: {{num_leaves: [3, 7]}}}}",
                 f"{LGB}.trials", 0, "greater than or equal to 1", id="zero-trials"),
    pytest.param(f"{LGB}={{method: tpe, time_budget_s: 0, space: {{num_leaves: [3, 7]}}}}",
                 f"{LGB}.time_budget_s", 0, "greater than 0", id="zero-time"),
    pytest.param(f"{LGB}={{method: tpe, time_budget_s: -5, space: {{num_leaves: [3]}}}}",
                 f"{LGB}.time_budget_s", -5, "greater than 0", id="negative-time"),
    pytest.param(f"{LGB}={{method: tpe, space: {{num_leaves: [3, 7]}}}}", LGB,
                 {"method": "tpe", "space": {"num_leaves": [3, 7]}}, "no budget",
                 id="no-budget"),
    pytest.param(f"{LGB}={{method: tpe, trials: 3, space: {{num_leavs: [3, 7]}}}}",
                 f"{LGB}.space", "num_leavs", "lightgbm takes no parameter 'num_leavs'; "
                 "allowed: alpha, bagging_fraction", id="lightgbm-unknown-param"),
    pytest.param(f"{LOGREG}={{method: grid, trials: 2, space: {{alpha: [0.1, 1.0]}}}}",
                 f"{LOGREG}.space", "alpha", "logistic_regression takes no parameter "
                 "'alpha'; allowed: C, categorical, class_weight", id="sklearn-unknown-param"),
    pytest.param("models.baselines.0.search={method: grid, trials: 2, space: {x: [1]}}",
                 "models.baselines.0.search", "grid", "baselines are not searched",
                 id="baseline-search"),
]


@pytest.mark.parametrize(("override", "key", "value", "problem"), BAD)
def test_bad_search_is_one_line_naming_key_and_value_and_stores_stay(
        wine: Path, override: str, key: str, value: Any, problem: str) -> None:
    before = _store_state(wine)
    with pytest.raises(ConfigError) as info:
        run_pipeline(wine, [override])
    exc = info.value
    assert (exc.key, exc.value) == (key, value)
    text = str(exc)
    assert "\n" not in text and f"{key} = {value!r}: " in text and problem in text, text
    assert _store_state(wine) == before


def test_the_cli_refuses_a_bad_search_in_one_line(wine: Path) -> None:
    before = _store_state(wine)
    res = subprocess.run([sys.executable, "-m", "cd4ml.cli", "run", "-p", str(wine), "--set",
                          f"{LGB}={{method: tpe, trials: 3, space: {{lr: {{low: 2, high: 1}}}}}}"],
                         capture_output=True, text=True)
    assert res.returncode != 0
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert f"{LGB}.space.lr = {{'low': 2, 'high': 1}}: low 2 > high 1" in res.stderr
    assert _store_state(wine) == before


def test_random_or_tpe_without_optuna_names_the_extra_before_the_run(wine: Path) -> None:
    before = _store_state(wine)
    code = ("import sys; sys.modules['optuna'] = None\n"
            "from cd4ml.cli import main\nsys.argv = ['cd4ml', 'run', '-p', "
            f"{str(wine)!r}, '--set', {LGB + '={method: tpe, trials: 2, space: {num_leaves: [3, 7]}}'!r}]\n"
            "main()")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode != 0
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "pip install 'cd4ml[ml]'" in res.stderr and "tpe search" in res.stderr
    assert _store_state(wine) == before


def test_the_lightgbm_list_holds_its_scikit_learn_signature() -> None:
    """The names checked without importing LightGBM are the installed signature's."""
    import lightgbm

    signature = set(inspect.signature(lightgbm.LGBMModel.__init__).parameters) - {
        "self", "kwargs"}
    assert signature == set(LIGHTGBM_SKLEARN)
    assert {"num_leaves", "min_data_in_leaf", "lambda_l2", "target_offset"} <= set(
        allowed_params("lightgbm", "forecast"))


def test_scikit_learn_types_take_their_estimator_signature() -> None:
    from sklearn.ensemble import RandomForestClassifier

    names = set(allowed_params("random_forest", "classification"))
    assert set(inspect.signature(RandomForestClassifier).parameters) <= names
    assert allowed_params("prior", "classification") == []


# -- the samplers ------------------------------------------------------------------------
SPACE = {"a": [1, 2, 3], "b": {"low": 0.0, "high": 1.0, "step": 0.25},
         "c": {"low": 1, "high": 64, "int": True, "log": True}}


def _objective(p: dict[str, Any]) -> float:
    """A real function of the params for the samplers to learn from."""
    return (p["a"] - 2) ** 2 + (p["b"] - 0.5) ** 2 + abs(p.get("c", 8) - 8) / 8


def _run(method: str, trials: int, seed: int, batch: int = 2,
         space: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    search = SearchConfig(method=method, trials=trials, space=space or SPACE)
    sampler = make_sampler(search, seed=seed, higher=False)
    seen: list[dict[str, Any]] = []
    while len(seen) < trials:
        asked = sampler.ask(min(batch, trials - len(seen)))
        if not asked:
            break
        for p in asked:
            sampler.tell(p.number, _objective(p.params))
            seen.append(p.params)
    return seen


def test_grid_samples_its_points_without_replacement_prefix_first() -> None:
    space = {"a": [1, 2, 3], "b": {"low": 0.0, "high": 1.0, "step": 0.25}}
    ten = _run("grid", 10, seed=0, space=space)
    assert len({tuple(p.items()) for p in ten}) == 10
    assert _run("grid", 4, seed=0, space=space) == ten[:4]
    assert _run("grid", 10, seed=1, space=space) != ten
    every = _run("grid", 100, seed=0, space=space)  # a budget above its 15 points: all
    assert len(every) == 15 and {p["b"] for p in every} == {0.0, 0.25, 0.5, 0.75, 1.0}


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_optuna_samplers_are_seeded_and_a_larger_budget_appends(method: str) -> None:
    twelve = _run(method, 12, seed=3)
    assert _run(method, 12, seed=3) == twelve
    assert _run(method, 7, seed=3) == twelve[:7]
    assert _run(method, 12, seed=4) != twelve
    assert all(p["a"] in (1, 2, 3) and p["b"] in (0.0, 0.25, 0.5, 0.75, 1.0)
               and 1 <= p["c"] <= 64 and isinstance(p["c"], int) for p in twelve)


def test_tpe_learns_after_its_start_up() -> None:
    """After its random start-up, TPE's trials are better on average than random's."""
    n = 40
    tpe = [_objective(p) for p in _run("tpe", n, seed=0)[TPE_STARTUP:]]
    rnd = [_objective(p) for p in _run("random", n, seed=0)[TPE_STARTUP:]]
    assert sum(tpe) / len(tpe) < sum(rnd) / len(rnd)
