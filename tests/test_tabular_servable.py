"""The tabular servable and bundle: saved without pickle, every file hash-verified at load,
the same answers after the round trip; labels by the stored threshold (binary) or argmax
(multiclass), checked against scikit-learn's own predict on real rows (ACS, wine,
diabetes). Models are fitted by the adapters (training.fit_model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tabular_fixtures import INPUTS, acs, acs_schema, diabetes, fit, wine  # noqa: F401

from cd4ml.config import InputsConfig
from cd4ml.errors import IntegrityError, ModelError, RequestError
from cd4ml.features.tabular import TabularTransform, tabular_spec
from cd4ml.registry.bundle import read_manifest, save_tabular_bundle
from cd4ml.registry.loader import load_version, servable_class
from cd4ml.registry.tabular import TabularServable, _plain_shaped
from cd4ml.store.artifacts import ArtifactStore
from cd4ml import predlog
from cd4ml.store.metadata import MetadataStore


@pytest.fixture(scope="module")
def acs_parts(acs: pd.DataFrame):  # type: ignore[no-untyped-def]  # noqa: F811
    train = acs[acs.year == 2015]
    spec = tabular_spec([acs_schema()], train, InputsConfig(drop=["year"]), "employed", "id")
    t = TabularTransform.fit(spec, train)
    pred = fit(t, train, "lightgbm", n_estimators=60, n_jobs=1)
    return spec, t, t.matrix(train), pred


def _register(tmp: Path, **bundle):  # type: ignore[no-untyped-def]
    art = ArtifactStore(tmp / "artifacts")
    meta = MetadataStore(f"sqlite:///{tmp / 'meta.db'}")
    digest = save_tabular_bundle(art, model_name="m", recipe="test", kind="candidate",
                                 trained_on={"rows": len(bundle["rows"])}, **bundle)
    meta.register_version("m", digest=digest, kind="candidate",
                          model_type=bundle["predictor"].model_type, actor="test")
    return art, meta, digest


def _records(frame: pd.DataFrame, names: list[str]) -> list[dict]:
    return json.loads(frame[names].to_json(orient="records", double_precision=15))


def test_acs_bundle_round_trip_verified_equal_answers(acs_parts, acs: pd.DataFrame,  # noqa: F811
                                                      tmp_path: Path) -> None:
    spec, t, X, pred = acs_parts
    art, meta, digest = _register(tmp_path, predictor=pred, spec=spec, transform=t, rows=X,
                                  decision_threshold=0.4)
    m = load_version(meta, art, "m", "1")
    assert isinstance(m, TabularServable) and (m.version, m.digest) == (1, digest)
    assert m.task == "classification" and m.classes == [0, 1] and m.threshold == 0.4
    assert m.predictor_status == "plain predictor: 256 sampled rows equal the registered answers"
    assert m.fast is None and m.table is None and m.fields == INPUTS
    hold = acs[acs.year == 2016].head(2000)
    expected = pred.predict(t.matrix(hold))
    assert np.array_equal(m.predict_encoded(m.encode_frame(hold).X), expected)
    assert np.array_equal(m.predict_encoded(m.encode_records(_records(hold, INPUTS)).X),
                          expected)
    manifest = read_manifest(art, digest)
    assert manifest["task"] == "classification" and manifest["classes"] == [0, 1]
    assert set(manifest["predictor"]["files"]) == {"model.txt"}  # LightGBM text, no pickle
    sig = manifest["signature"]
    assert [i["name"] for i in sig["inputs"]] == INPUTS
    assert sig["outputs"][0] == {"name": "label", "type": "integer", "categories": [0, 1]}
    # a changed byte in any file is refused at load
    obj = art.local_path(manifest["predictor"]["files"]["model.txt"], verify=False)
    data = Path(obj).read_bytes()
    Path(obj).write_bytes(data.replace(b"tree", b"TREE", 1))
    with pytest.raises(IntegrityError, match="corrupted"):
        load_version(meta, art, "m", "1")


def test_binary_labels_use_the_stored_threshold(acs_parts, acs: pd.DataFrame) -> None:  # noqa: F811
    spec, t, _X, pred = acs_parts
    hold = acs[acs.year == 2016].head(3000)
    P = pred.predict(t.matrix(hold))
    for thr in (0.5, 0.3):
        m = TabularServable(pred, spec, t, threshold=thr)
        assert np.array_equal(m.labels(P).astype(int), np.where(P[:, 1] >= thr, 1, 0))
    rows = TabularServable(pred, spec, t).answer_rows(P[:3])
    assert rows[0] == {"label": int(P[0, 1] >= 0.5),
                       "probabilities": {"0": float(P[0, 0]), "1": float(P[0, 1])}}
    assert type(rows[0]["label"]) is int  # as the data spells the class: 1, not "1"


def test_binary_logistic_regression_labels_equal_sklearn_predict(acs: pd.DataFrame) -> None:  # noqa: F811
    train, hold = acs[acs.year == 2015].head(20000), acs[acs.year == 2016].head(5000)
    spec = tabular_spec([acs_schema()], train, InputsConfig(drop=["year"]), "employed", "id")
    t = TabularTransform.fit(spec, train)
    pred = fit(t, train, "logistic_regression")
    m = TabularServable(pred, spec, t, threshold=0.5)
    out = m.predict(hold)
    Xh = t.matrix(hold)
    assert out["label"].tolist() == pred.estimator.predict(Xh).tolist()  # sklearn's own
    assert np.array_equal(out[["probability_0", "probability_1"]].to_numpy(),
                          pred.estimator.predict_proba(Xh))
    assert list(out.columns) == [*hold.columns, "label", "probability_0", "probability_1"]


def test_wine_multiclass_round_trip_argmax_labels(tmp_path: Path) -> None:
    df, schema = wine()
    spec = tabular_spec([schema], df, InputsConfig(), "target")
    t = TabularTransform.fit(spec, df)
    X = t.matrix(df)
    pred = fit(t, df, "logistic_regression")
    est = pred.estimator
    art, meta, _ = _register(tmp_path, predictor=pred, spec=spec, transform=t, rows=X,
                             decision_threshold=0.5)
    m = load_version(meta, art, "m", 1)
    assert m.classes == [0, 1, 2] and m.threshold is None  # multiclass: argmax
    recs = _records(df, spec.names)
    enc = m.encode_records(recs)
    assert np.array_equal(enc.X, X) and list(enc.raw["alcohol"]) == df["alcohol"].tolist()
    P = m.predict_encoded(enc.X)
    assert np.array_equal(P, est.predict_proba(X))
    assert m.labels(P).tolist() == est.predict(X).tolist()
    rows = m.answer_rows(P)
    assert rows[100] == {"label": int(est.predict(X[100:101])[0]),
                         "probabilities": dict(zip(["0", "1", "2"], P[100].tolist(),
                                                   strict=True))}
    M = df[spec.names].to_numpy()  # the 2-D tensor form: raw inputs in signature order
    assert np.array_equal(m.predict_encoded(m.encode_matrix(M).X), P)


def test_regression_answers_floats_and_adds_prediction(tmp_path: Path) -> None:
    df, schema = diabetes()
    spec = tabular_spec([schema], df, InputsConfig(categorical=["sex"]), "target",
                        task="regression")
    t = TabularTransform.fit(spec, df)
    X = t.matrix(df)
    pred = fit(t, df, "linear_regression")
    est = pred.estimator
    art, meta, _ = _register(tmp_path, predictor=pred, spec=spec, transform=t, rows=X)
    m = load_version(meta, art, "m", 1)
    assert m.task == "regression" and m.classes is None
    out = m.predict(df.head(50))
    assert np.array_equal(out["prediction"].to_numpy(), est.predict(X[:50]))
    assert m.answer_rows(m.predict_encoded(X[:2])) == est.predict(X[:2]).tolist()
    assert m.signature["outputs"] == [{"name": "prediction", "type": "number"}]
    with pytest.raises(ModelError, match="answers numbers, not labels"):
        m.labels(np.zeros(2))


def test_bad_requests_are_refused_with_every_field(acs_parts, acs: pd.DataFrame) -> None:  # noqa: F811
    spec, t, _X, pred = acs_parts
    m = TabularServable(pred, spec, t)
    rec = _records(acs.head(1), INPUTS)[0]
    with pytest.raises(RequestError) as err:
        m.encode_records([{**rec, "AGEP": -5}, {**rec, "SEX": 3, "x": 1}])
    assert str(err.value) == "rows[0].AGEP = -5: below the schema's minimum 0 (and 2 more)"
    assert [e["reason"] for e in err.value.errors] == ["below_min", "unknown_category",
                                                       "unknown_field"]
    with pytest.raises(RequestError, match="expected shape"):
        m.encode_matrix(np.zeros((1, 3)))


def test_compiled_hook_plain_fallback_and_shape(acs_parts, tmp_path: Path) -> None:
    spec, t, X, pred = acs_parts
    with pytest.raises(ModelError, match="compiled predictor: its files hash to"):
        _register(tmp_path, predictor=pred, spec=spec, transform=t, rows=X,
                  compiled=({"compiled.o": b"\x7fELF"}, {"kind": "lleaves", "files": {}}))
    art, meta, digest = _register(tmp_path, predictor=pred, spec=spec, transform=t, rows=X,
                                  compiled=({}, {"kind": "lleaves", "files": {}}))
    manifest = read_manifest(art, digest)
    assert manifest["compiled"] == {"kind": "lleaves", "files": {}}
    m = TabularServable.from_bundle(art, manifest)
    try:
        import cd4ml.registry.compiled  # noqa: F401
    except ImportError:
        assert m.fast is None and "cannot load the bundle's compiled" in m.predictor_status
    else:  # a meta build_compiled did not write is refused, not an error
        assert m.fast is None and "its meta lacks" in m.predictor_status, m.predictor_status
    off = TabularServable.from_bundle(art, manifest, compiled=False)
    assert off.fast is None and "switched off" in off.predictor_status
    # a booster-shaped fast predictor ((n,) positive probabilities) answers as the plain one
    fast, status = _plain_shaped(lambda A: pred.booster.predict(A, num_threads=1), pred,
                                 X[:256], "compiled: ok", "plain predictor")
    assert fast is not None and status == "compiled: ok"
    assert np.array_equal(fast(X[:500]), pred.predict(X[:500]))


def test_unknown_task_in_a_manifest_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="task = 'ranking': unknown task"):
        servable_class({"model_name": "m", "task": "ranking"})
    assert servable_class({}).__name__ == "ServableModel"  # no task: a forecast bundle


def test_a_predictor_that_answers_otherwise_than_at_registration_is_reported(
        acs_parts, acs: pd.DataFrame, tmp_path: Path, caplog) -> None:  # noqa: F811
    spec, t, X, pred = acs_parts
    art, _meta, digest = _register(tmp_path, predictor=pred, spec=spec, transform=t, rows=X)
    other = fit(t, acs[acs.year == 2015].head(5000), "random_forest", n_estimators=20)
    art_b, _, digest_b = _register(tmp_path / "b", predictor=other, spec=spec, transform=t,
                                   rows=X)
    forest = TabularServable.from_bundle(art_b, read_manifest(art_b, digest_b))
    assert forest.predictor_status.startswith("plain predictor: 256 sampled rows")
    manifest = read_manifest(art, digest)
    wrong = {**manifest, "predictor": {"meta": other.meta(), "files": {
        n: art.put_bytes(b) for n, b in other.to_files().items()}}}  # the sample: another model's
    with caplog.at_level("WARNING", logger="cd4ml.registry"):
        m = TabularServable.from_bundle(art, wrong, name="m", version=1)
    assert "differ from registration" in m.predictor_status
    assert "differ from registration" in caplog.text


def test_logged_inputs_keep_each_columns_type_and_hold_nothing_the_gc_scans(
        acs_parts, acs: pd.DataFrame, tmp_path: Path) -> None:  # noqa: F811
    """What the prediction log keeps of a request until its next flush: the inputs as
    given (ints as int64, floats as float64, a 2-D tensor's FP32 as sent), in signature
    order, and no object the garbage collector must scan, neither in the record nor in
    the log's queue (thousands of queued records did bring full collections of ~100 ms
    every few seconds, the p99 of a busy server)."""
    import gc

    from cd4ml.serving.contracts import contract_for
    from cd4ml.predlog import PredictionLog

    spec, t, _X, pred = acs_parts
    m = TabularServable(pred, spec, t, name="m", version=1)
    recs = _records(acs[acs.year == 2016].head(5), INPUTS)
    raw = m.encode_records(recs).raw
    assert list(raw) == INPUTS and not gc.is_tracked(raw)
    for f in INPUTS:
        want = [r[f] for r in recs]
        assert raw[f].tolist() == want, f
        assert raw[f].dtype == (np.float64 if f == "AGEP" else np.int64), f
    M = np.asarray([[r[f] for f in INPUTS] for r in recs], np.float32)
    by_matrix = m.encode_matrix(M).raw
    assert list(by_matrix) == INPUTS and by_matrix["AGEP"].dtype == np.float32
    assert np.array_equal(np.column_stack(list(by_matrix.values())), M)
    # a missing value (imputed for the model) is logged as missing: null in the block
    imputed = [{**recs[0], "AGEP": None}]
    spec_i = tabular_spec([acs_schema()], acs[acs.year == 2015],
                          InputsConfig(drop=["year"], columns={"AGEP": {"missing": "impute"}}),
                          "employed", "id")
    t_i = TabularTransform.fit(spec_i, acs[acs.year == 2015])
    m_i = TabularServable(fit(t_i, acs[acs.year == 2015].head(3000), "lightgbm",
                              n_estimators=5, n_jobs=1), spec_i, t_i, name="m", version=1)
    from cd4ml.predlog.segments import dumps

    assert b'"AGEP":[null]' in dumps(m_i.encode_records(imputed).raw)

    c = contract_for(m, log=True)
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=60_000, max_unflushed=10_000)
    try:
        for k in range(100):  # fewer than half of max_unflushed: all still queued
            enc = c.check(recs[k % 5:k % 5 + 1])
            rec = c.log_record(f"r{k}", 1.0 + k, "/predict", 0.1, enc, c.predict(enc),
                               "application/json", b"{}")
            assert plog.append(rec)
        queued = [x for column in plog._buf.fields for x in column]
        assert len(queued) == 100 * len(plog._buf.fields)
        # nothing per record: at most the feature and output names, one tuple each that
        # every record shares (a collection untracks them)
        tracked = {id(x): x for x in queued if gc.is_tracked(x)}
        assert len(tracked) <= 2 and all(type(x) is tuple for x in tracked.values())
        assert plog.flush()
    finally:
        plog.close()
    logged = predlog.predictions(tmp_path / "log")
    assert len(logged) == 100
    assert logged["SCHL"].tolist()[:5] == [r["SCHL"] for r in recs]
    assert logged["AGEP"].tolist()[:5] == [r["AGEP"] for r in recs]
