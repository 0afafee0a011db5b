"""What each adapter computes, against an independent reference on the same real rows.

Baselines against scikit-learn's DummyClassifier / DummyRegressor (weighted too) and
pandas' groupby; LightGBM classifiers against LightGBM's own LGBMClassifier; logistic
regression against a pipeline built by hand (pandas one-hot, scikit-learn scaling). Then
the registry's answers to a wrong type, a wrong task and bad training data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from adapter_data import Dataset, acs, one_blas_thread, walmart, wine  # noqa: F401

from cd4ml.config import ModelSpec
from cd4ml.errors import ConfigError, ModelError
from cd4ml.registry.predictors import SeriesMeanPredictor
from cd4ml.training.adapters import ADAPTERS, adapter_for, known_types
from cd4ml.training.fit import fit_model


def spec(model_type: str, **params: Any) -> ModelSpec:
    return ModelSpec(name=model_type, type=model_type, params=params)


def fit(d: Dataset, model_type: str, w: np.ndarray | None = None, **params: Any) -> Any:
    return fit_model(spec(model_type, **params), d.X, d.y, w, seed=0, **d.fit_kw())


@pytest.fixture(scope="module")
def acs_clf() -> Dataset:
    return acs("classification")


@pytest.fixture(scope="module")
def acs_reg() -> Dataset:
    return acs("regression")


@pytest.fixture(scope="module")
def forecast(sample_dir: Any) -> Dataset:
    return walmart(sample_dir)


def _weights(d: Dataset) -> np.ndarray:
    """Unequal weights from a real column (education code + 1)."""
    return d.X["SCHL"].to_numpy(np.float64) + 1.0


@pytest.mark.parametrize(("kind", "strategy"), [("prior", "prior"),
                                                ("majority", "most_frequent")])
def test_class_baselines_match_dummy_classifier(acs_clf: Dataset, kind: str,
                                                strategy: str) -> None:
    from sklearn.dummy import DummyClassifier

    for d in [acs_clf, wine("classification")]:
        for w in [None, _weights(acs_clf) if d is acs_clf else None]:
            ref = DummyClassifier(strategy=strategy).fit(d.X, d.y, sample_weight=w)
            got = fit(d, kind, w).predict(d.matrix())
            np.testing.assert_allclose(got, ref.predict_proba(d.X), rtol=1e-12, atol=0)


@pytest.mark.parametrize("kind", ["mean", "median"])
def test_regression_baselines_match_dummy_regressor(acs_reg: Dataset, kind: str) -> None:
    from sklearn.dummy import DummyRegressor

    for d in [acs_reg, wine("regression")]:
        # equal weights: the plain statistic (DummyRegressor without weights)
        ref = DummyRegressor(strategy=kind).fit(d.X, d.y).predict(d.X)
        np.testing.assert_allclose(fit(d, kind).predict(d.matrix()), ref, rtol=1e-12)
    w = _weights(acs_reg)
    ref = DummyRegressor(strategy=kind).fit(acs_reg.X, acs_reg.y, sample_weight=w)
    np.testing.assert_allclose(fit(acs_reg, kind, w).predict(acs_reg.matrix()),
                               ref.predict(acs_reg.X), rtol=1e-12)


def test_series_mean_is_the_series_mean_then_the_group_then_overall(forecast: Dataset,
                                                                    ) -> None:
    pnl = forecast.extra["panel"]
    train = (pnl["Dept"] != 95).to_numpy()  # department 95 never seen
    X, y = forecast.X, forecast.y
    p = fit_model(spec("series_mean"), X[train], y[train], seed=0, keys=forecast.keys)
    assert isinstance(p, SeriesMeanPredictor)
    ref = pnl[train].groupby(["Store", "Dept"])["Weekly_Sales"].mean()
    M = forecast.matrix()
    got = p.predict(M)
    expect = pnl[["Store", "Dept"]].apply(tuple, axis=1).map(ref).to_numpy()
    overall = pnl.loc[train, "Weekly_Sales"].mean()
    np.testing.assert_allclose(got[train], expect[train], rtol=1e-12)
    np.testing.assert_allclose(got[~train], overall, rtol=1e-12)  # no series, no group
    # a store never seen: its departments' group means (group key: the last key, Dept)
    other = M.copy()
    other[:, list(X.columns).index("Store")] = 99
    dept = pnl[train].groupby("Dept")["Weekly_Sales"].mean()
    np.testing.assert_allclose(p.predict(other)[train],
                               pnl.loc[train, "Dept"].map(dept).to_numpy(), rtol=1e-12)
    assert p.fallback_counts(other) == {"series_mean": 0, "group_mean": int(train.sum()),
                                        "global_mean": int((~train).sum())}
    assert p.fallback_counts(M)["series_mean"] == int(train.sum())


def test_series_mean_needs_the_series_keys(forecast: Dataset) -> None:
    with pytest.raises(ModelError, match="series_mean needs the series keys"):
        fit_model(spec("series_mean"), forecast.X, forecast.y)
    with pytest.raises(ModelError, match=r"series_mean needs feature\(s\) \['Store'\]"):
        fit_model(spec("series_mean"), forecast.X.drop(columns="Store"), forecast.y,
                  keys=forecast.keys)


def test_lightgbm_classifiers_match_lightgbms_own_classifier(acs_clf: Dataset) -> None:
    import lightgbm as lgb

    for d in [acs_clf, wine("classification")]:
        p = fit(d, "lightgbm", n_estimators=30, n_jobs=1)
        params = {**ADAPTERS["lightgbm"].defaults("classification", len(d.classes or [])),
                  "n_estimators": 30, "n_jobs": 1, "random_state": 0, "deterministic": True,
                  "force_row_wise": True, "verbose": -1}
        params.pop("objective")  # LGBMClassifier chooses binary / multiclass itself
        cats = [i for i, c in enumerate(d.X.columns) if c in (d.categorical or {})]
        ref = lgb.LGBMClassifier(**params).fit(d.matrix(), d.y,
                                               categorical_feature=cats or "auto")
        np.testing.assert_allclose(p.predict(d.matrix()), ref.predict_proba(d.matrix()),
                                   rtol=1e-12, atol=1e-15)


def test_logistic_regression_matches_a_hand_built_pipeline(acs_clf: Dataset) -> None:
    from sklearn.linear_model import LogisticRegression

    d = acs_clf
    cats = d.categorical or {}
    frame = d.X.astype(np.float64)
    onehot = pd.concat([pd.get_dummies(pd.Categorical(frame[c], categories=range(n)),
                                       prefix=c, dtype=np.float64)
                        for c, n in cats.items()], axis=1)
    num = frame[[c for c in frame.columns if c not in cats]]
    scaled = (num - num.mean()) / num.std(ddof=0)
    design = pd.concat([onehot, scaled], axis=1).to_numpy()
    ref = LogisticRegression(max_iter=1000, tol=1e-10).fit(design, d.y)
    got = fit(d, "logistic_regression", tol=1e-10).predict(d.matrix())
    np.testing.assert_allclose(got, ref.predict_proba(design), rtol=0, atol=1e-6)


def test_linear_regression_matches_least_squares(acs_reg: Dataset) -> None:
    d = acs_reg
    got = fit(d, "linear_regression").predict(d.matrix())
    cats = d.categorical or {}
    design = np.column_stack([np.ones(len(d.X))] + [
        (d.X[c].to_numpy() == k).astype(float) for c, n in cats.items() for k in range(n)])
    coef, *_ = np.linalg.lstsq(design, d.y, rcond=None)
    np.testing.assert_allclose(got, design @ coef, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("task", "ds", "objective"), [
    ("forecast", "wine", "regression_l1"), ("regression", "wine", "regression"),
    ("classification", "acs", "binary sigmoid:1"),
    ("classification", "wine", "multiclass num_class:3")])
def test_lightgbm_defaults_depend_on_the_task(acs_clf: Dataset, task: str, ds: str,
                                              objective: str) -> None:
    d = acs_clf if ds == "acs" else wine("classification" if task == "classification"
                                         else "regression")
    p = fit_model(spec("lightgbm", n_estimators=3, n_jobs=1), d.X, d.y,
                  **{**d.fit_kw(), "task": task})
    assert p.booster.dump_model()["objective"] == objective
    # tabular categorical codes are LightGBM categoricals
    cats = "[categorical_feature: " + ",".join(str(i) for i in range(15)) + "]"
    assert (cats in p.booster.model_to_string()) == (d.categorical is not None)


def test_an_unknown_type_lists_the_known_ones_for_the_task() -> None:
    with pytest.raises(ConfigError) as e:
        adapter_for("xgb", "classification", where="models.candidates.0.type")
    assert str(e.value) == ("models.candidates.0.type = 'xgb': unknown model type; known for "
                            "classification: ['decision_tree', 'lightgbm', "
                            "'logistic_regression', 'majority', 'prior', 'random_forest']")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"'logistic_regression': supports classification "
                                          r"only, not regression; known for regression"):
        adapter_for("logistic_regression", "regression", where="models.m.type")
    with pytest.raises(ConfigError, match="task = 'ranking': unknown task"):
        adapter_for("lightgbm", "ranking", where="models.m.type")
    with pytest.raises(ConfigError, match="unknown model type"):  # fit_model checks too
        fit_model(spec("xgb"), pd.DataFrame({"a": [1.0]}), np.ones(1))
    assert known_types("forecast") == ["decision_tree", "lightgbm", "linear_regression",
                                       "random_forest", "seasonal_naive",
                                       "seasonal_naive_aligned", "series_mean"]


def test_bad_training_data_is_a_clear_model_error(acs_clf: Dataset) -> None:
    d = acs_clf
    X, y, classes = d.X, d.y, [0, 1]

    def clf(yy: Any, **kw: Any) -> Any:
        args = {"task": "classification", "classes": classes, "categorical": d.categorical}
        return fit_model(spec("prior", **kw.pop("params", {})), X, yy, **{**args, **kw})

    with pytest.raises(ModelError, match=r"target row 5 = 2: expected a class index 0..1"):
        clf(np.where(np.arange(len(y)) == 5, 2, y))
    with pytest.raises(ModelError, match=r"target row 0 = nan"):
        clf(np.where(np.arange(len(y)) == 0, np.nan, y))
    with pytest.raises(ModelError, match=r"holds <U3 values; expected class indices 0..1"):
        clf(np.where(y == 1, "yes", "no"))
    with pytest.raises(ModelError, match=r"classification needs its classes"):
        clf(y, classes=None)
    with pytest.raises(ModelError, match=r"target_offset: not for classification"):
        clf(y, params={"target_offset": "AGEP"})
    with pytest.raises(ModelError, match=r"categorical SCHL = 99.0: expected a code 0..\d+"):
        fit_model(spec("prior"), X.assign(SCHL=99.0), y, task="classification",
                  classes=classes, categorical=d.categorical)
    with pytest.raises(ModelError, match=r"categorical column 'nope' is not a feature"):
        clf(y, categorical={"nope": 2})
    with pytest.raises(ModelError, match=r"3000 feature rows, 2999 targets"):
        clf(y[1:])
    with pytest.raises(ModelError, match=r"classes \[0, 1\] given; they are for "
                                         r"classification"):
        fit_model(spec("mean"), X, y.astype(float), task="regression", classes=classes)
    with pytest.raises(ModelError, match=r"unknown parameter\(s\) \['depth'\] for "
                                         r"DecisionTreeClassifier"):
        fit_model(spec("decision_tree", depth=3), X, y, task="classification",
                  classes=classes)
