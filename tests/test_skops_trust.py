"""scikit-learn models load only the skops types their estimator declares.

Every (adapter, task) saving a scikit-learn estimator goes through the same contract:
fitted by ``fit_model``, saved, loaded back with the declared list only, identical
predictions; and its declared list (``SKOPS_TYPES``, keyed by estimator class) is exactly
what skops reports for a freshly fitted model (after a library upgrade, the failure names
the type that appeared or went away). A crafted file holding ``builtins.eval`` is refused
before anything in it runs. ``tests/test_model_adapters.py`` runs the same list check on
real data for every adapter and task.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cd4ml.config import ModelSpec
from cd4ml.errors import ModelError
from cd4ml.registry.predictors import (SKOPS_TYPES, STEP_TYPES, SklearnPredictor,
                                       estimator_class, load_predictor, skops_allowed_types)
from cd4ml.training.adapters import ADAPTERS
from cd4ml.training.fit import fit_model

sio = pytest.importorskip("skops.io")

#: every (model type, task) whose model is saved with skops
CASES = [(a.type, t) for a in ADAPTERS.values() for t in a.tasks
         if a.task_fit(t).estimator is not None]


def _fitted(model_type: str, task: str = "forecast") -> SklearnPredictor:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 4)), columns=["a", "b", "c", "lag"])
    y = 2 * X["a"].to_numpy() + rng.normal(size=len(X))
    kw: dict[str, Any] = {}
    params: dict[str, Any] = {"target_offset": "lag"}
    if task == "classification":
        y, kw, params = (y > 0).astype(int), {"classes": [0, 1]}, {}
    spec = ModelSpec(name=model_type, type=model_type, params=params)
    p = fit_model(spec, X, y, seed=0, task=task, **kw)
    assert isinstance(p, SklearnPredictor)
    return p


def _schema_edit(data: bytes, edit: Any) -> bytes:
    """The skops zip with its schema.json changed by ``edit`` (the arrays kept)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(src.read("schema.json"))
    edit(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, json.dumps(schema) if name == "schema.json" else src.read(name))
    return out.getvalue()


@pytest.mark.parametrize(("model_type", "task"), CASES)
def test_each_adapter_round_trips_with_its_declared_types(model_type: str, task: str) -> None:
    p = _fitted(model_type, task)
    files = p.to_files()
    loaded = load_predictor(files, p.meta())
    assert isinstance(loaded, SklearnPredictor)
    est = ADAPTERS[model_type].task_fit(task).estimator
    assert est is not None
    final = loaded.estimator[-1] if hasattr(loaded.estimator, "steps") else loaded.estimator
    assert type(final) is estimator_class(est)
    X = np.random.default_rng(1).normal(size=(200, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(X), p.predict(X))
    declared = ADAPTERS[model_type].skops_types(task)
    assert sio.loads(files["model.skops"], trusted=list(declared)) is not None
    if declared:  # loading needs the declared types: without them skops refuses the file
        with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
            sio.loads(files["model.skops"], trusted=[])


@pytest.mark.parametrize(("model_type", "task"), CASES)
def test_declared_types_are_exactly_what_skops_reports(model_type: str, task: str) -> None:
    found = sio.get_untrusted_types(data=_fitted(model_type, task).to_files()["model.skops"])
    declared = ADAPTERS[model_type].skops_types(task)
    assert sorted(found) == sorted(declared), (
        f"{model_type} ({task}): skops now reports {sorted(found)}; declared "
        f"{sorted(declared)} (new: {sorted(set(found) - set(declared))}, gone: "
        f"{sorted(set(declared) - set(found))}): update SKOPS_TYPES")


def test_every_allow_listed_estimator_is_an_adapters_and_no_adapter_lacks_one() -> None:
    named = {a.task_fit(t).estimator for a in ADAPTERS.values() for t in a.tasks}
    assert set(SKOPS_TYPES) == named - {None}, "unused or missing SKOPS_TYPES entries"


def test_the_allow_list_is_the_union_of_the_estimators_lists() -> None:
    union = {t for types in (*SKOPS_TYPES.values(), *STEP_TYPES.values()) for t in types}
    assert skops_allowed_types() == sorted(union)
    assert not any(t.startswith("builtins.") for t in union)


def test_a_steps_type_is_allowed_only_where_that_step_is() -> None:
    """numpy.dtype is declared by the imputer of a forecast's linear model: a linear
    model without one (regression) carrying a dtype is refused, and the forecast's own
    model, which holds one, loads."""
    p = _fitted("linear_regression", "regression")  # no imputer
    p.estimator[-1].planted_ = np.dtype("float64")
    with pytest.raises(ModelError, match=r"LinearRegression holds type\(s\) "
                                         r"\['numpy.dtype'\]"):
        load_predictor(p.to_files(), p.meta())
    f = _fitted("linear_regression")  # forecast: its imputer's dtype is declared
    assert load_predictor(f.to_files(), f.meta()) is not None


def test_a_file_that_would_run_eval_is_refused_before_it_runs(tmp_path: Path) -> None:
    """The tree of a real model swapped for ``builtins.eval(code)``: loading it with the
    types the file itself lists (the old behaviour) runs the code; now it is refused."""
    p = _fitted("decision_tree")
    marker = tmp_path / "executed"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"

    def plant(schema: dict[str, Any]) -> None:
        # ids no other node has (skops takes a node whose id it has seen for that node)
        fresh = 10**15
        schema["content"]["content"]["tree_"] = {
            "__class__": "eval", "__module__": "builtins", "__id__": fresh + 1,
            "__loader__": "ConstructorFromReduceNode",
            "content": {"__class__": "tuple", "__module__": "builtins", "__id__": fresh + 2,
                        "__loader__": "TupleNode",
                        "content": [{"__class__": "str", "__module__": "builtins",
                                     "__loader__": "JsonNode", "content": json.dumps(code),
                                     "is_json": True, "__id__": fresh + 3}]}}

    evil = _schema_edit(p.to_files()["model.skops"], plant)
    assert "builtins.eval" in sio.get_untrusted_types(data=evil)
    with pytest.raises(ModelError, match=r"builtins\.eval.*allowed.*sklearn\.tree\._tree\.Tree"):
        load_predictor({"model.skops": evil}, p.meta())
    assert not marker.exists()
    # the file is a real exploit: trusting what it lists (the old code) runs the code
    sio.loads(evil, trusted=sio.get_untrusted_types(data=evil))
    assert marker.exists()


def test_other_dangerous_types_are_refused_and_named() -> None:
    import operator

    meta = {"type": "sklearn", "feature_names": ["a"]}
    for obj, name in [(operator.methodcaller("system", "true"), "operator.methodcaller"),
                      ({"f": eval}, "builtins.eval"), ([exec], "builtins.exec")]:
        with pytest.raises(ModelError, match=rf"type\(s\) \['{name}'\]"):
            load_predictor({"model.skops": sio.dumps(obj)}, meta)


def test_a_file_of_skops_default_types_that_is_no_adapter_is_refused() -> None:
    from sklearn.linear_model import Ridge

    est = Ridge().fit(np.eye(3), np.arange(3.0))
    meta = {"type": "sklearn", "feature_names": ["a", "b", "c"]}
    with pytest.raises(ModelError, match="Ridge, not one of the known estimators"):
        load_predictor({"model.skops": sio.dumps(est)}, meta)
    with pytest.raises(ModelError, match="cannot be read"):
        load_predictor({"model.skops": b"not a zip"}, meta)


def test_a_known_estimator_holding_a_type_its_own_list_lacks_is_refused() -> None:
    """Each estimator's own list, not only the union: a logistic regression (list: none)
    carrying a tree in an attribute is refused, though another estimator may hold trees."""
    p = _fitted("logistic_regression", "classification")
    p.estimator[-1].planted_ = _fitted("decision_tree").estimator.tree_
    with pytest.raises(ModelError, match=r"LogisticRegression holds type\(s\) "
                                         r"\['sklearn.tree._tree.Tree'\]"):
        load_predictor(p.to_files(), p.meta())
