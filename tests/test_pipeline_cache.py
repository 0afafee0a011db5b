"""Cache keys cover the modules a stage runs, transitively, and library versions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cd4ml.config import ModelSpec
from cd4ml.pipeline.cache import PACKAGE_DIR, module_closure, stage_key
from cd4ml.pipeline.runner import explain
from cd4ml.training.fit import fit_model


def test_closure_reaches_helpers_the_stage_calls() -> None:
    files = {p.relative_to(PACKAGE_DIR).as_posix() for p in
             module_closure(["cd4ml.pipeline.steps_model"])}
    # steps_model -> evaluation (report -> metrics), training.fit -> registry.predictors
    assert {"evaluation/metrics.py", "evaluation/report.py", "training/fit.py",
            "registry/predictors.py", "features/compute.py", "config/sections.py",
            "config/__init__.py"} <= files
    assert "serving/app.py" not in files


def test_key_changes_with_params_inputs_and_libraries() -> None:
    base = dict(name="s", inputs={"a": "1"}, params={"p": 1},
                modules=["cd4ml.features.compute"], libraries=["numpy"])
    k0, parts = stage_key(**base)
    assert stage_key(**base)[0] == k0
    assert stage_key(**{**base, "params": {"p": 2}})[0] != k0
    assert stage_key(**{**base, "inputs": {"a": "2"}})[0] != k0
    assert stage_key(**{**base, "libraries": ["numpy", "pandas"]})[0] != k0
    _, p2 = stage_key(**{**base, "params": {"p": 2}})
    assert explain(parts, p2) == "params changed: p"
    assert explain(None, parts) == "never ran"


def test_fits_are_deterministic() -> None:
    """Same data, params and seed: the saved files are identical to the byte (LightGBM's
    text; skops files in their canonical form) and so are the predictions."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(400, 3)), columns=["a", "b", "c"]).astype("float32")
    y = X["a"].to_numpy() * 3 + rng.normal(size=400)
    for spec in [ModelSpec(name="l", type="lightgbm", params={"n_estimators": 20}),
                 ModelSpec(name="r", type="random_forest", params={"n_estimators": 3}),
                 ModelSpec(name="d", type="decision_tree")]:
        a, b = fit_model(spec, X, y, seed=7), fit_model(spec, X, y, seed=7)
        Xn = X.to_numpy()
        np.testing.assert_array_equal(a.predict(Xn), b.predict(Xn))
        assert a.to_files() == b.to_files()
