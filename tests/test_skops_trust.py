"""scikit-learn models load only the skops types their adapter declares.

Every adapter in ``SKLEARN_ADAPTERS`` goes through the same contract: fitted by
``fit_model``, saved, loaded back with the declared list only, identical predictions; and
its declared list is exactly what skops reports for a freshly fitted model (after a
library upgrade, the failure names the type that appeared or went away). A crafted file
holding ``builtins.eval`` is refused before anything in it runs.
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
from cd4ml.registry.predictors import (SKLEARN_ADAPTERS, SklearnPredictor, load_predictor,
                                       skops_allowed_types)
from cd4ml.training.fit import fit_model

sio = pytest.importorskip("skops.io")

ADAPTERS = sorted(SKLEARN_ADAPTERS)


def _fitted(model_type: str) -> SklearnPredictor:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 4)), columns=["a", "b", "c", "lag"])
    y = 2 * X["a"].to_numpy() + rng.normal(size=len(X))
    p = fit_model(ModelSpec(name=model_type, type=model_type,
                            params={"target_offset": "lag"}), X, y, seed=0)
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


@pytest.mark.parametrize("model_type", ADAPTERS)
def test_each_adapter_round_trips_with_its_declared_types(model_type: str) -> None:
    p = _fitted(model_type)
    files = p.to_files()
    loaded = load_predictor(files, p.meta())
    assert type(loaded.estimator) is SKLEARN_ADAPTERS[model_type].estimator_class()
    X = np.random.default_rng(1).normal(size=(200, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(X), p.predict(X))
    # loading needs the declared types: without them skops itself refuses the file
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.loads(files["model.skops"], trusted=[])


@pytest.mark.parametrize("model_type", ADAPTERS)
def test_declared_types_are_exactly_what_skops_reports(model_type: str) -> None:
    found = sio.get_untrusted_types(data=_fitted(model_type).to_files()["model.skops"])
    declared = SKLEARN_ADAPTERS[model_type].skops_types
    assert sorted(found) == sorted(declared), (
        f"{model_type}: skops now reports {sorted(found)}; declared {sorted(declared)} "
        f"(new: {sorted(set(found) - set(declared))}, gone: "
        f"{sorted(set(declared) - set(found))}): update SKLEARN_ADAPTERS")


def test_every_scikit_learn_model_type_training_fits_is_an_adapter() -> None:
    from typing import get_args

    from cd4ml.config import ModelType

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(100, 2)), columns=["a", "b"])
    sklearn_types = []
    for model_type in get_args(ModelType):
        try:
            p = fit_model(ModelSpec(name="m", type=model_type), X, rng.normal(size=100),
                          keys=["a"])
        except ModelError:  # not fittable here (series_mean) or needs more (baselines)
            continue
        if isinstance(p, SklearnPredictor):
            sklearn_types.append(model_type)
    assert sorted(sklearn_types) == ADAPTERS


def test_the_allow_list_is_the_union_of_the_adapters_lists() -> None:
    union = {t for a in SKLEARN_ADAPTERS.values() for t in a.skops_types}
    assert skops_allowed_types() == sorted(union)
    assert not any(t.startswith("builtins.") for t in union)


def test_a_file_that_would_run_eval_is_refused_before_it_runs(tmp_path: Path) -> None:
    """The tree of a real model swapped for ``builtins.eval(code)``: loading it with the
    types the file itself lists (the old behaviour) runs the code; now it is refused."""
    p = _fitted("decision_tree")
    marker = tmp_path / "executed"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"

    def plant(schema: dict[str, Any]) -> None:
        schema["content"]["content"]["tree_"] = {
            "__class__": "eval", "__module__": "builtins", "__id__": 1,
            "__loader__": "ConstructorFromReduceNode",
            "content": {"__class__": "tuple", "__module__": "builtins", "__id__": 2,
                        "__loader__": "TupleNode",
                        "content": [{"__class__": "str", "__module__": "builtins",
                                     "__loader__": "JsonNode", "content": json.dumps(code),
                                     "is_json": True, "__id__": 3}]}}

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
    from sklearn.linear_model import LinearRegression

    est = LinearRegression().fit(np.eye(3), np.arange(3.0))
    meta = {"type": "sklearn", "feature_names": ["a", "b", "c"]}
    with pytest.raises(ModelError, match="LinearRegression, not one of the adapters"):
        load_predictor({"model.skops": sio.dumps(est)}, meta)
    with pytest.raises(ModelError, match="cannot be read"):
        load_predictor({"model.skops": b"not a zip"}, meta)
