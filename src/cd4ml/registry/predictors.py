"""Fitted models as predictors: predict on a feature matrix, save to bytes without pickle.

Training fits them (``cd4ml.training.adapters``); serving and evaluation only load and
predict, so every prediction, at evaluation time and in production, goes through this
code. LightGBM models are saved in LightGBM's text format, scikit-learn models with skops
(loading only the types :data:`SKOPS_TYPES` declares for their estimator), baselines as
JSON. :func:`load_predictor` picks the class by the ``type`` in the saved meta.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

from cd4ml.errors import ModelError
from cd4ml.registry.baselines import (CONSTANT_KINDS, ConstantPredictor,
                                      SeasonalNaivePredictor, SeriesBaselinePredictor,
                                      SeriesMeanPredictor)
from cd4ml.registry.blend import BlendPredictor
from cd4ml.registry.predictor_base import Predictor, file_of, import_extra, meta_args

__all__ = ["Predictor", "LightGBMPredictor", "LightGBMClassifierPredictor",
           "SklearnPredictor", "SklearnClassifierPredictor", "ConstantPredictor",
           "SeriesBaselinePredictor", "SeasonalNaivePredictor", "SeriesMeanPredictor",
           "SKOPS_TYPES", "STEP_TYPES", "skops_allowed_types", "declared_types",
           "estimator_class", "estimator_path",
           "load_predictor", "PREDICTORS"]


class LightGBMPredictor(Predictor):
    """A LightGBM regressor (forecast, regression); ``booster`` is a ``lightgbm.Booster``."""

    model_type = "lightgbm"

    def __init__(self, booster: Any, **kw: Any) -> None:
        super().__init__(**kw)
        lgb = import_extra("lightgbm", "LightGBM models")
        if not isinstance(booster, lgb.Booster):
            raise ModelError(f"{self.model_type}: needs a fitted lightgbm.Booster, got "
                             f"{type(booster).__name__} (not fitted?)")
        if booster.num_feature() != len(self.feature_names):
            raise ModelError(f"{self.model_type}: the booster takes {booster.num_feature()} "
                             f"features, the meta names {len(self.feature_names)}")
        self.booster = booster

    def _raw(self, X: np.ndarray) -> np.ndarray:
        # LightGBM's public API only. One thread below 1,000 rows, where starting threads
        # costs more than it saves. A 1-row call costs ~65 µs with 400 trees (~30 µs
        # through the private single-row C API this replaced; measured with
        # benchmarks/lightgbm_single_row.py); it matters only when the server cannot
        # answer from the forecast table (serving.forecast_table: false).
        return self.booster.predict(X, num_threads=1 if len(X) < 1000 else 0)

    def to_files(self) -> dict[str, bytes]:
        return {"model.txt": self.booster.model_to_string().encode()}

    @classmethod
    def from_files(cls, files: dict[str, bytes], meta: dict[str, Any]) -> LightGBMPredictor:
        lgb = import_extra("lightgbm", "LightGBM models")
        text = file_of(files, "model.txt", meta["type"]).decode()
        try:
            booster = lgb.Booster(model_str=text)
        except Exception as exc:  # LightGBM's error class is not exported by the package
            raise ModelError(f"model.txt cannot be loaded: {exc}") from None
        return cls(booster, **meta_args(meta))


class LightGBMClassifierPredictor(LightGBMPredictor):
    """A LightGBM classifier: probabilities (n, k); a binary booster gives P(class 1)."""

    model_type = "lightgbm_classifier"

    def __init__(self, booster: Any, **kw: Any) -> None:
        super().__init__(booster, **kw)
        k, per_iter = self.n_classes, booster.num_model_per_iteration()
        if k is None or k < 2 or per_iter not in (1 if k == 2 else k, k):
            raise ModelError(f"{self.model_type}: {k} classes, but the booster has "
                             f"{per_iter} model(s) per iteration")

    def _raw(self, X: np.ndarray) -> np.ndarray:
        p = super()._raw(X)
        return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p


class SklearnPredictor(Predictor):
    """A scikit-learn regressor (an estimator, or a Pipeline ending in one), saved with skops."""

    model_type = "sklearn"

    def __init__(self, estimator: Any, **kw: Any) -> None:
        super().__init__(**kw)
        validation = import_extra("sklearn.utils.validation", "scikit-learn models")
        try:
            validation.check_is_fitted(estimator)
        except (TypeError, validation.NotFittedError) as exc:
            raise ModelError(f"{self.model_type}: the estimator is not fitted: {exc}") from None
        self.estimator = estimator

    def _raw(self, X: np.ndarray) -> np.ndarray:
        return self.estimator.predict(X)

    def to_files(self) -> dict[str, bytes]:
        sio = import_extra("skops.io", "scikit-learn models")
        return {"model.skops": _canonical_skops(sio.dumps(self.estimator))}

    @classmethod
    def from_files(cls, files: dict[str, bytes], meta: dict[str, Any]) -> SklearnPredictor:
        est = _load_skops(file_of(files, "model.skops", meta["type"]))
        return cls(est, **meta_args(meta))


class SklearnClassifierPredictor(SklearnPredictor):
    """A scikit-learn classifier fitted on class indices: ``predict_proba`` widened to
    all k classes (a class absent from the training rows gets probability 0)."""

    model_type = "sklearn_classifier"

    def __init__(self, estimator: Any, **kw: Any) -> None:
        super().__init__(estimator, **kw)
        seen = np.asarray(estimator.classes_)
        k = self.n_classes
        if k is None or not np.isin(seen, np.arange(k)).all():
            raise ModelError(f"{self.model_type}: fitted on classes {seen.tolist()}, "
                             f"expected indices 0..{k - 1 if k else '?'}")
        self._cols = seen.astype(np.intp)

    def _raw(self, X: np.ndarray) -> np.ndarray:
        proba = self.estimator.predict_proba(X)
        out = np.zeros((len(X), self.n_classes or 0), dtype=np.float64)
        out[:, self._cols] = proba
        return out


#: What a skops file may hold beyond skops' defaults, per estimator class: written down
#: here, never read from the file being loaded. A model is saved as the estimator, or as
#: a scikit-learn Pipeline (preprocessing) ending in it; the adapter in
#: ``cd4ml.training.adapters`` names its estimator per task, and the contract suite
#: checks each list equals ``skops.io.get_untrusted_types`` of a fitted model. The
#: strings are the type names skops' public ``trusted=`` argument asks for (a fitted
#: tree's ``sklearn.tree._tree.Tree`` among them); nothing here touches a private
#: attribute.
SKOPS_TYPES: dict[str, tuple[str, ...]] = {
    "sklearn.ensemble.RandomForestRegressor": ("sklearn.tree._tree.Tree",),
    "sklearn.ensemble.RandomForestClassifier": ("sklearn.tree._tree.Tree",),
    "sklearn.tree.DecisionTreeRegressor": ("sklearn.tree._tree.Tree",),
    "sklearn.tree.DecisionTreeClassifier": ("sklearn.tree._tree.Tree",),
    "sklearn.linear_model.LogisticRegression": (),
    "sklearn.linear_model.LinearRegression": (),
}


#: What a preprocessing step of a Pipeline adds to its estimator's list, per step class:
#: the imputer keeps the dtype it was fitted on (forecast features of a linear model).
STEP_TYPES: dict[str, tuple[str, ...]] = {
    "sklearn.impute.SimpleImputer": ("numpy.dtype",),
}


def skops_allowed_types() -> list[str]:
    """The types any skops file may hold beyond skops' defaults: the lists' union.

    >>> skops_allowed_types()
    ['numpy.dtype', 'sklearn.tree._tree.Tree']
    """
    return sorted({t for types in (*SKOPS_TYPES.values(), *STEP_TYPES.values())
                   for t in types})


def declared_types(est: Any) -> set[str]:
    """What a loaded model may hold: its estimator's list and each of its steps' (any
    estimator nested in it, e.g. an imputer in a Pipeline of a ColumnTransformer)."""
    path = estimator_path(est)
    out = set(SKOPS_TYPES.get(path or "", ()))
    nested = [est, *est.get_params(deep=True).values()] if hasattr(est, "get_params") \
        else [est]
    for step, types in STEP_TYPES.items():
        cls = estimator_class(step)
        if any(type(v) is cls for v in nested):
            out.update(types)
    return out


def estimator_class(path: str) -> type:
    """The class at an import path of :data:`SKOPS_TYPES`."""
    module, _, name = path.rpartition(".")
    return getattr(import_extra(module, "scikit-learn models"), name)  # type: ignore[no-any-return]


def estimator_path(est: Any) -> str | None:
    """The :data:`SKOPS_TYPES` key of a model (a Pipeline's: its final step's), or None."""
    Pipeline = import_extra("sklearn.pipeline", "scikit-learn models").Pipeline
    final = est[-1] if isinstance(est, Pipeline) else est
    return next((p for p in SKOPS_TYPES if type(final) is estimator_class(p)), None)


def _canonical_skops(data: bytes) -> bytes:
    """The same skops file, made reproducible: object ids (memory addresses, in member
    names and ``__id__`` fields) renumbered in order of appearance, the padding bytes of
    structured arrays zeroed (scikit-learn's tree nodes leave them uninitialised), fixed
    timestamps.

    Same model, same bytes, so a content-addressed bundle of a refitted model keeps its
    digest, and a loaded model saves as it was. Only identities and padding change (each
    id maps to one number), so the loaded model is the same; the contract suite loads
    every adapter's file back and compares.
    """
    src = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(src.read("schema.json"))
    ids: dict[int, int] = {}
    names: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("__id__"), int):
                # from 1: skops memoises only true ids, so 0 would not be shared
                node["__id__"] = ids.setdefault(node["__id__"], len(ids) + 1)
            if isinstance(node.get("file"), str):
                old = node["file"]
                node["file"] = names.setdefault(old, f"{len(names)}.{old.rpartition('.')[2]}")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for old, new in [*names.items(), ("schema.json", "schema.json")]:
            info = zipfile.ZipInfo(new, date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3  # the same bytes whatever system wrote them
            body = json.dumps(schema).encode() if new == "schema.json" else src.read(old)
            dst.writestr(info, _zero_padding(body) if new.endswith(".npy") else body)
    return out.getvalue()


def _zero_padding(npy: bytes) -> bytes:
    """A .npy of a structured array with padding between fields, the padding zeroed."""
    arr = np.load(io.BytesIO(npy), allow_pickle=False)
    fields = arr.dtype.fields
    if not fields or sum(f[0].itemsize for f in fields.values()) == arr.dtype.itemsize:
        return npy
    order = "F" if arr.flags.f_contiguous and not arr.flags.c_contiguous else "C"
    clean = np.zeros(arr.shape, dtype=arr.dtype, order=order)  # calloc: padding is 0
    for name in fields:
        clean[name] = arr[name]
    buf = io.BytesIO()
    np.save(buf, clean, allow_pickle=False)
    return buf.getvalue()


def _load_skops(data: bytes) -> Any:
    """Load a skops file holding only declared types; nothing in it runs before the check."""
    sio = import_extra("skops.io", "scikit-learn models")
    allowed = skops_allowed_types()
    try:
        found = sio.get_untrusted_types(data=data)  # reads the schema, constructs nothing
    except Exception as exc:  # not a zip, bad JSON, a loader skops does not know, ...
        raise ModelError(f"model.skops cannot be read: {type(exc).__name__}: {exc}") from None
    refused = sorted(set(found) - set(allowed))
    if refused:
        raise ModelError(f"refusing to load model.skops: it holds type(s) {refused} that no "
                         f"estimator declares; allowed beyond skops' defaults: {allowed} "
                         f"(SKOPS_TYPES in cd4ml.registry.predictors)")
    try:
        est = sio.loads(data, trusted=allowed)
    except Exception as exc:
        raise ModelError(f"model.skops cannot be loaded: {type(exc).__name__}: {exc}") from None
    path = estimator_path(est)
    if path is None:
        kind = f"{type(est).__module__}.{type(est).__qualname__}"
        raise ModelError(f"model.skops holds a {kind}, not one of the known estimators "
                         f"{sorted(SKOPS_TYPES)} (SKOPS_TYPES in cd4ml.registry.predictors)")
    declared = declared_types(est)
    extra = sorted(set(found) - declared)
    if extra:
        raise ModelError(f"model.skops: a {path} holds type(s) {extra} its lists "
                         f"{sorted(declared)} (SKOPS_TYPES, STEP_TYPES) do not declare")
    return est


#: meta ``type`` -> the class that loads it
PREDICTORS: dict[str, type[Predictor]] = {
    "lightgbm": LightGBMPredictor,
    "lightgbm_classifier": LightGBMClassifierPredictor,
    "sklearn": SklearnPredictor,
    "sklearn_classifier": SklearnClassifierPredictor,
    "seasonal_naive": SeasonalNaivePredictor,
    "series_mean": SeriesMeanPredictor,
    **{kind: ConstantPredictor for kind in CONSTANT_KINDS},
    "blend": BlendPredictor,
}


def load_predictor(files: dict[str, bytes], meta: dict[str, Any]) -> Predictor:
    cls = PREDICTORS.get(meta.get("type", ""))
    if cls is None:
        raise ModelError(f"unknown predictor type {meta.get('type')!r}; "
                         f"known: {sorted(PREDICTORS)}")
    return cls.from_files(files, meta)  # type: ignore[attr-defined, no-any-return]
