"""The contract every model adapter keeps, checked the same way for each (adapter, task).

Modelled on scikit-learn's ``parametrize_with_checks``: every registered model type, for
every task it supports, on small real data of that task (``adapter_data``), is fitted by
``fit_model`` and goes through the same checks: seeded determinism (bytes and answers),
save/load round trip through ``load_predictor``, no pickle in what it saves, exactly the
skops types its estimator declares, the output shape of its task (probabilities summing
to 1), a clear ModelError for a matrix of the wrong width and for an unfitted model.
"""

from __future__ import annotations

import functools
import io
import json
import re
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from adapter_data import BY_TASK, Dataset, acs, one_blas_thread, walmart, wine  # noqa: F401

from cd4ml.config import ModelSpec
from cd4ml.errors import ModelError
from cd4ml.registry.blend import BlendPredictor
from cd4ml.registry.predictors import (PREDICTORS, SKOPS_TYPES, STEP_TYPES, ConstantPredictor,
                                       LightGBMClassifierPredictor, LightGBMPredictor,
                                       Predictor, SeasonalNaivePredictor, SeriesMeanPredictor,
                                       SklearnClassifierPredictor, SklearnPredictor,
                                       declared_types, load_predictor)
from cd4ml.training.adapters import ADAPTERS
from cd4ml.training.fit import fit_model

sio = pytest.importorskip("skops.io")

#: smaller ensembles than the defaults and one thread (threads spin on busy shared cores),
#: to keep the suite fast; everything else default
SMALL = {"lightgbm": {"n_estimators": 25, "n_jobs": 1},
         "random_forest": {"n_estimators": 5, "n_jobs": 1}}
CASES = [(a.type, task, ds) for a in ADAPTERS.values() for task in a.tasks
         for ds in BY_TASK[task]]
IDS = [f"{t}-{task}-{ds}" for t, task, ds in CASES]
PICKLE_PROTOCOLS = [b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"]


@pytest.fixture(scope="session")
def data(request: pytest.FixtureRequest) -> Callable[[str, str], Dataset]:
    @functools.cache
    def get(name: str, task: str) -> Dataset:
        if name == "walmart":
            return walmart(request.getfixturevalue("sample_dir"))
        return {"wine": wine, "acs": acs}[name](task)
    return get


def spec(model_type: str, **params: Any) -> ModelSpec:
    return ModelSpec(name=model_type, type=model_type,
                     params={**SMALL.get(model_type, {}), **params})


def fit(d: Dataset, model_type: str, seed: int = 0, **params: Any) -> Predictor:
    return fit_model(spec(model_type, **params), d.X, d.y, d.w, seed=seed, **d.fit_kw())


@pytest.fixture(scope="session")
def fitted(data: Callable[[str, str], Dataset]) -> Callable[..., tuple[Predictor, Dataset]]:
    @functools.cache
    def get(model_type: str, task: str, ds: str) -> tuple[Predictor, Dataset]:
        d = data(ds, task)
        return fit(d, model_type), d
    return get


def _case(fitted: Callable, model_type: str, task: str, ds: str) -> tuple[Predictor, Dataset]:
    try:
        return fitted(model_type, task, ds)  # type: ignore[no-any-return]
    except pytest.skip.Exception:
        raise
    except Exception as exc:  # the failing case, named
        raise AssertionError(f"{model_type} ({task}, {ds}) failed to fit: {exc}") from exc


@pytest.mark.parametrize(("model_type", "task", "ds"), CASES, ids=IDS)
def test_the_adapter_builds_its_declared_predictor(fitted: Callable, model_type: str,
                                                   task: str, ds: str) -> None:
    p, d = _case(fitted, model_type, task, ds)
    assert type(p) is ADAPTERS[model_type].task_fit(task).predictor
    assert PREDICTORS[p.meta()["type"]] is type(p)
    assert p.meta().get("task", "forecast") == task
    assert p.meta().get("n_classes") == (len(d.classes) if d.classes else None)


@pytest.mark.parametrize(("model_type", "task", "ds"), CASES, ids=IDS)
def test_seeded_fits_are_identical_to_the_byte(fitted: Callable, data: Callable,
                                               model_type: str, task: str, ds: str) -> None:
    p, d = _case(fitted, model_type, task, ds)
    again = fit(data(ds, task), model_type, seed=0)
    assert again.to_files() == p.to_files()
    assert again.meta() == p.meta()
    np.testing.assert_array_equal(again.predict(d.matrix()), p.predict(d.matrix()))


@pytest.mark.parametrize(("model_type", "task", "ds"), CASES, ids=IDS)
def test_save_and_load_give_the_same_answers(fitted: Callable, model_type: str, task: str,
                                             ds: str) -> None:
    p, d = _case(fitted, model_type, task, ds)
    meta = json.loads(json.dumps(p.meta()))  # as a bundle's manifest stores it
    loaded = load_predictor(p.to_files(), meta)
    assert type(loaded) is type(p) and loaded.meta() == p.meta()
    np.testing.assert_array_equal(loaded.predict(d.matrix()), p.predict(d.matrix()))
    assert loaded.to_files() == p.to_files()


def _no_pickle_opcodes(name: str, data: bytes) -> None:
    found = [op for op in PICKLE_PROTOCOLS if op in data]
    assert not found, f"{name}: holds pickle protocol opcode(s) {found}"


@pytest.mark.parametrize(("model_type", "task", "ds"), CASES, ids=IDS)
def test_saved_files_hold_no_pickle(fitted: Callable, model_type: str, task: str,
                                    ds: str) -> None:
    p, _ = _case(fitted, model_type, task, ds)
    files = p.to_files()
    assert files
    for name, body in files.items():
        if name.endswith(".skops"):
            z = zipfile.ZipFile(io.BytesIO(body))
            for member in z.namelist():
                raw = z.read(member)
                if member.endswith(".npy"):  # raw numbers: a .npy that loads without pickle
                    assert raw.startswith(b"\x93NUMPY"), f"{member}: not a .npy file"
                    arr = np.load(io.BytesIO(raw), allow_pickle=False)
                    assert not arr.dtype.hasobject, f"{member}: an object array"
                else:
                    assert member == "schema.json", f"{name}: unexpected member {member}"
                    _no_pickle_opcodes(f"{name}/{member}", raw)
                    json.loads(raw)
            declared = list(ADAPTERS[model_type].skops_types(task))
            assert sio.loads(body, trusted=declared) is not None
        else:
            _no_pickle_opcodes(name, body)
            text = body.decode("utf-8")  # LightGBM's text format or JSON
            if name.endswith(".json"):
                json.loads(text)


@pytest.mark.parametrize(("model_type", "task", "ds"), CASES, ids=IDS)
def test_skops_types_are_exactly_the_declared_ones(fitted: Callable, model_type: str,
                                                   task: str, ds: str) -> None:
    p, _ = _case(fitted, model_type, task, ds)
    est = ADAPTERS[model_type].task_fit(task).estimator
    files = p.to_files()
    if est is None:
        assert "model.skops" not in files
        return
    assert est in SKOPS_TYPES
    found = sio.get_untrusted_types(data=files["model.skops"])
    declared = ADAPTERS[model_type].skops_types(task)  # the estimator's and its steps'
    assert sorted(found) == sorted(declared), (
        f"{est}: skops reports {sorted(found)}, the adapter declares {declared}")
    loaded = sio.loads(files["model.skops"], trusted=list(declared))
    assert declared_types(loaded) == set(declared)  # what the loader allows this model


def test_no_allow_listed_estimator_is_unused() -> None:
    named = {a.task_fit(t).estimator for a in ADAPTERS.values() for t in a.tasks}
    assert set(SKOPS_TYPES) == named - {None}
    steps = {s for a in ADAPTERS.values() for t in a.tasks for s in a.task_fit(t).steps}
    assert set(STEP_TYPES) == steps


@pytest.mark.parametrize(("model_type", "task", "ds"), CASES, ids=IDS)
def test_output_has_the_tasks_shape(fitted: Callable, model_type: str, task: str,
                                    ds: str) -> None:
    p, d = _case(fitted, model_type, task, ds)
    out = p.predict(d.matrix())
    assert out.dtype == np.float64
    if task == "classification":
        assert d.classes is not None
        assert out.shape == (len(d.X), len(d.classes))
        assert ((out >= 0) & (out <= 1)).all()
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    else:
        assert out.shape == (len(d.X),) and np.isfinite(out).all()
    one = p.predict(d.matrix()[:1])
    np.testing.assert_allclose(one, out[:1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("model_type", "task", "ds"), CASES, ids=IDS)
def test_a_matrix_of_the_wrong_width_is_a_clear_model_error(fitted: Callable,
                                                            model_type: str, task: str,
                                                            ds: str) -> None:
    p, d = _case(fitted, model_type, task, ds)
    k = len(p.feature_names)
    for bad in [d.matrix()[:, :-1], np.zeros((3, k + 1), np.float32), d.matrix()[0]]:
        with pytest.raises(ModelError, match=rf"expected a matrix of {k} features .*got "
                                             rf"shape {re.escape(str(bad.shape))}"):
            p.predict(bad)


def _unfitted(p: Predictor) -> Callable[[], Predictor]:
    """The predictor's class around state that was never fitted."""
    from sklearn.base import clone

    args = {"feature_names": p.feature_names, "task": p.task, "n_classes": p.n_classes}
    if isinstance(p, LightGBMPredictor):
        import lightgbm as lgb

        return lambda: type(p)(lgb.LGBMModel(), **args)
    if isinstance(p, SklearnPredictor):
        return lambda: type(p)(clone(p.estimator), **args)
    if isinstance(p, ConstantPredictor):
        return lambda: ConstantPredictor(p.model_type, [], **args)
    assert isinstance(p, (SeasonalNaivePredictor, SeriesMeanPredictor))
    return lambda: type(p)(feature_names=p.feature_names, keys=p.keys,
                           group_key=p.group_key, series=[], groups=[], overall=np.nan)


@pytest.mark.parametrize(("model_type", "task", "ds"), CASES, ids=IDS)
def test_an_unfitted_model_is_a_clear_model_error(fitted: Callable, model_type: str,
                                                  task: str, ds: str) -> None:
    p, d = _case(fitted, model_type, task, ds)
    with pytest.raises(ModelError, match="not fitted"):
        _unfitted(p)()
    with pytest.raises(ModelError, match="the saved model has no"):
        load_predictor({}, p.meta())
    with pytest.raises(ModelError, match="no training rows"):
        fit_model(spec(model_type), d.X.iloc[:0], d.y[:0], seed=0, **d.fit_kw())


def test_every_predictor_class_is_checked() -> None:
    # a BlendPredictor mixes two of these (tests/test_forecast_fallback.py checks it)
    classes = {c for c in PREDICTORS.values() if c is not BlendPredictor}
    assert classes == {LightGBMPredictor, LightGBMClassifierPredictor, SklearnPredictor,
                       SklearnClassifierPredictor, ConstantPredictor, SeasonalNaivePredictor,
                       SeriesMeanPredictor}
    used = {a.task_fit(t).predictor for a in ADAPTERS.values() for t in a.tasks}
    assert used == classes


CLASSIFIERS = [t for t, a in ADAPTERS.items() if "classification" in a.tasks]


@pytest.mark.parametrize("model_type", CLASSIFIERS)
def test_a_class_absent_from_the_training_rows_keeps_its_column(data: Callable,
                                                                model_type: str) -> None:
    d = data("wine", "classification")
    rows = d.y != 1  # cultivar 1 never seen
    p = fit_model(spec(model_type), d.X[rows], d.y[rows], seed=0, task="classification",
                  classes=d.classes)
    out = p.predict(d.matrix())
    assert out.shape == (len(d.X), 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    assert out[:, 1].max() < 0.05  # (LightGBM keeps a small share on it; the rest none)


def test_the_test_data_is_what_it_claims(data: Callable) -> None:
    w = data("wine", "classification")
    assert w.X.shape == (178, 13) and sorted(set(w.y)) == [0, 1, 2]
    a = acs("classification")
    assert a.X.shape == (3000, 16) and set(a.y) == {0, 1}
    assert a.categorical is not None and len(a.categorical) == 15


def _times(d: Dataset) -> pd.Series:
    """Each row's time: the Walmart week; the tabular rows a day apart in file order."""
    if "panel" in d.extra:
        return d.extra["panel"]["Date"]
    return pd.Series(pd.Timestamp("2015-01-01") + pd.to_timedelta(np.arange(len(d.y)), "D"))


@pytest.mark.parametrize(("model_type", "task", "ds"), CASES, ids=IDS)
def test_recency_weighting_is_the_hand_computed_weights_or_refused(
        data: Callable, model_type: str, task: str, ds: str) -> None:
    """``recency_half_life`` is exactly weights 0.5 ** (age weeks / half-life) from the
    latest row, times the rows' own: the same bytes as those weights given by hand (so
    the library never sees the parameter); a model that takes no weights refuses it."""
    d = data(ds, task)
    t = _times(d)
    half_life = 8
    if not ADAPTERS[model_type].weighted:
        with pytest.raises(ModelError, match=f"models.{model_type}.params.recency_half_life: "
                                             f"{model_type} does not take sample weights"):
            fit_model(spec(model_type, recency_half_life=half_life), d.X, d.y, d.w,
                      seed=0, times=t, **d.fit_kw())
        return
    age = (t.max() - t).dt.days.to_numpy() / 7
    recency = 0.5 ** (age / half_life)
    assert recency.min() < 0.5 < recency.max() == 1.0  # old rows count less
    by_hand = (np.ones(len(d.y)) if d.w is None else d.w) * recency
    weighted = fit_model(spec(model_type, recency_half_life=half_life), d.X, d.y, d.w,
                         seed=0, times=t, **d.fit_kw())
    plain = fit_model(spec(model_type), d.X, d.y, by_hand, seed=0, **d.fit_kw())
    assert weighted.to_files() == plain.to_files()
    np.testing.assert_array_equal(weighted.predict(d.matrix()), plain.predict(d.matrix()))
    with pytest.raises(ModelError, match="needs each training row's time"):
        fit_model(spec(model_type, recency_half_life=half_life), d.X, d.y, d.w, seed=0,
                  **d.fit_kw())
    for bad in (0, -4, "26"):
        with pytest.raises(ModelError, match=rf"recency_half_life = {re.escape(repr(bad))}: "
                                             rf"must be a number of weeks > 0"):
            fit_model(spec(model_type, recency_half_life=bad), d.X, d.y, d.w, seed=0,
                      times=t, **d.fit_kw())


def test_fit_threads_come_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                              data: Callable[[str, str], Dataset]) -> None:
    from cd4ml.errors import ConfigError
    from cd4ml.training.adapters import THREADS_ENV

    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert ADAPTERS["lightgbm"].defaults("forecast")["n_jobs"] == 2
    monkeypatch.setenv(THREADS_ENV, "1")
    assert ADAPTERS["lightgbm"].defaults("forecast")["n_jobs"] == 1
    assert ADAPTERS["random_forest"].defaults("regression")["n_jobs"] == 1
    assert "n_jobs" not in ADAPTERS["decision_tree"].defaults("regression")
    d = data("walmart", "forecast")
    model = fit_model(ModelSpec(name="m", type="lightgbm", params={"n_estimators": 3}), d.X,
                      d.y, d.w, seed=0, **d.fit_kw())
    assert model.booster.params["num_threads"] == 1  # what LightGBM was given
    monkeypatch.setenv(THREADS_ENV, "two")
    with pytest.raises(ConfigError, match=r"CD4ML_FIT_THREADS = 'two': expected a whole"):
        ADAPTERS["lightgbm"].defaults("forecast")
