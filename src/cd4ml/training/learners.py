"""Fit functions of the learners: LightGBM and scikit-learn estimators, seeded.

Heavy libraries are imported only when a fit happens. Same data, params and seed give
the same saved bytes.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from cd4ml.errors import ModelError
from cd4ml.registry.predictors import (LightGBMClassifierPredictor, LightGBMPredictor,
                                       Predictor, SklearnClassifierPredictor, SklearnPredictor,
                                       estimator_class)
from cd4ml.registry.predictor_base import import_extra
from cd4ml.training.fitdata import FitData

__all__ = ["fit_lightgbm", "fit_lightgbm_classifier", "fit_sklearn", "fit_sklearn_classifier",
           "fit_linear", "fit_linear_forecast", "fit_linear_classifier"]

_LGB_FIXED = {"deterministic": True, "force_row_wise": True, "verbose": -1}


def _lgb_fit(d: FitData, model: Any) -> Any:
    """``model`` fitted on ``d`` (LightGBM's scikit-learn API); its errors as ModelError."""
    names = d.names
    default = list(d.categorical or {})
    categorical = d.params.get("categorical", default) or []
    bad = [c for c in categorical if c not in names]
    if bad:
        raise ModelError(f"models.{d.name}.params.categorical: {bad} are not features")
    try:
        model.fit(d.matrix(), d.target(), sample_weight=d.w, feature_name=names,
                  categorical_feature=categorical or "auto")
    except Exception as exc:
        # LightGBM's own error class is not exported by the package: know it by its module
        if not isinstance(exc, (TypeError, ValueError)) and \
                not type(exc).__module__.startswith("lightgbm"):
            raise
        raise ModelError(f"models.{d.name}: LightGBM could not fit: {exc}") from None
    return model.booster_


def fit_lightgbm(d: FitData) -> Predictor:
    """A LightGBM regressor (forecast, regression)."""
    lgb = import_extra("lightgbm", "LightGBM models")
    kw = {"random_state": d.seed, **_LGB_FIXED, **d.kw}
    booster = _lgb_fit(d, lgb.LGBMRegressor(**kw))
    return LightGBMPredictor(booster, **d.predictor_args())


def fit_lightgbm_classifier(d: FitData) -> Predictor:
    """A LightGBM classifier on class indices: LightGBM's base model, so that every one of
    the k classes keeps its column even when absent from the training rows."""
    lgb = import_extra("lightgbm", "LightGBM models")
    kw = {"random_state": d.seed, **_LGB_FIXED, **d.kw}
    if kw.get("objective") in ("multiclass", "softmax", "multiclassova", "ova", "ovr"):
        kw.setdefault("num_class", d.n_classes)
    booster = _lgb_fit(d, lgb.LGBMModel(**kw))
    return LightGBMClassifierPredictor(booster, **d.predictor_args())


def _estimator(d: FitData) -> tuple[type, dict[str, Any]]:
    """The adapter's estimator class and its keyword arguments (unknown ones refused)."""
    assert d.estimator is not None, "a scikit-learn adapter names its estimator"
    cls = estimator_class(d.estimator)
    allowed = set(inspect.signature(cls).parameters)
    kw = d.kw
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise ModelError(f"models.{d.name}.params: unknown parameter(s) {unknown} for "
                         f"{cls.__name__}; allowed: {sorted(allowed)}")
    seeded = {"random_state": d.seed} if "random_state" in allowed else {}
    return cls, {**seeded, **kw}


def _sk_fit(d: FitData, est: Any, dtype: type = np.float32, **fit_kw: Any) -> Any:
    try:
        return est.fit(d.matrix().astype(dtype, copy=False), d.target(), **fit_kw)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"models.{d.name}: {type(est).__name__} could not fit: "
                         f"{exc}") from None


def _fit_plain(d: FitData) -> Any:
    cls, kw = _estimator(d)
    est = _sk_fit(d, cls(**kw), sample_weight=d.w)
    if "n_jobs" in est.get_params():  # predict in one thread: same sums, same order, always
        est.set_params(n_jobs=None)
    return est


def fit_sklearn(d: FitData) -> Predictor:
    """A scikit-learn regressor (forest, tree) on the features as they are."""
    return SklearnPredictor(_fit_plain(d), **d.predictor_args())


def fit_sklearn_classifier(d: FitData) -> Predictor:
    return SklearnClassifierPredictor(_fit_plain(d), **d.predictor_args())


def _linear_pipeline(d: FitData, *, impute: bool = False) -> Any:
    """One-hot of the categorical codes (all n codes declared, so the columns do not depend
    on which codes the training rows hold), scaled numeric inputs, then the estimator.

    ``impute``: a missing numeric input is the training median, with a 0/1 column saying
    it was missing (forecast features are missing where a series' history is short)."""
    compose = import_extra("sklearn.compose", "scikit-learn models")
    pipeline = import_extra("sklearn.pipeline", "scikit-learn models")
    prep = import_extra("sklearn.preprocessing", "scikit-learn models")
    cls, kw = _estimator(d)
    cats = d.categorical or {}
    names = d.names
    bad = sorted(set(cats) - set(names))
    if bad:
        raise ModelError(f"models.{d.name}: categorical {bad} are not features")
    cat_idx = [i for i, n in enumerate(names) if n in cats]
    num_idx = [i for i, n in enumerate(names) if n not in cats]
    parts = []
    if cat_idx:
        categories = [np.arange(cats[names[i]], dtype=np.float64) for i in cat_idx]
        parts.append(("onehot", prep.OneHotEncoder(categories=categories,
                                                   sparse_output=False), cat_idx))
    if num_idx and impute:
        impute_mod = import_extra("sklearn.impute", "scikit-learn models")
        parts.append(("scale", pipeline.Pipeline([
            ("impute", impute_mod.SimpleImputer(strategy="median", add_indicator=True,
                                                keep_empty_features=True)),
            ("scale", prep.StandardScaler())]), num_idx))
    elif num_idx:
        parts.append(("scale", prep.StandardScaler(), num_idx))
    return pipeline.Pipeline([("prep", compose.ColumnTransformer(parts)),
                              ("model", cls(**kw))])


def fit_linear(d: FitData) -> Predictor:
    """Linear regression after :func:`_linear_pipeline`'s preprocessing.

    Fitted in float64, so the coefficients are float64 (float32 rows would make them
    float32, and a classifier's probabilities then sum to 1 only within 1e-7).
    """
    est = _sk_fit(d, _linear_pipeline(d), np.float64, model__sample_weight=d.w)
    return SklearnPredictor(est, **d.predictor_args())


def fit_linear_forecast(d: FitData) -> Predictor:
    """Linear regression on forecast features: a missing value imputed (with an
    indicator), then as :func:`fit_linear`."""
    est = _sk_fit(d, _linear_pipeline(d, impute=True), np.float64,
                  model__sample_weight=d.w)
    return SklearnPredictor(est, **d.predictor_args())


def fit_linear_classifier(d: FitData) -> Predictor:
    """Logistic regression after :func:`_linear_pipeline`'s preprocessing (in float64)."""
    est = _sk_fit(d, _linear_pipeline(d), np.float64, model__sample_weight=d.w)
    return SklearnClassifierPredictor(est, **d.predictor_args())
