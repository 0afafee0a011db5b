"""The HTTP app in-process: form, JSON predict, strict input, and the forecasting contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

import cd4ml
from cd4ml.features import compute_features
from cd4ml.pipeline.run import open_project
from cd4ml.registry.bundle import load_parts, read_manifest
from cd4ml.serving.app import ModelHolder, create_app


@pytest.fixture(scope="module")
def project(trained_project: Path) -> Path:
    return trained_project


@pytest.fixture(scope="module")
def model(project: Path):
    return cd4ml.load_model("walmart-weekly-sales@production", project_dir=project)


@pytest.fixture(scope="module")
def client(model) -> TestClient:
    return TestClient(create_app(ModelHolder(model), max_batch_rows=50, max_body_bytes=20_000))


def test_python_api_predicts_a_frame(model) -> None:
    frame = pd.DataFrame({"Store": [1, 1], "Dept": [1, 3], "Date": ["2012-11-02", "2011-03-04"]})
    out = model.predict(frame)
    assert list(out.columns) == ["Store", "Dept", "Date", "prediction"]
    assert np.isfinite(out["prediction"]).all()


def test_serving_uses_the_training_feature_code(project: Path, model) -> None:
    """The server's precomputed rows equal the shared feature function on the history."""
    _, _, stores, _ = open_project(project)
    with stores:
        manifest = read_manifest(stores.artifacts, model.digest)
        predictor, spec, history = load_parts(stores.artifacts, manifest)
    X = compute_features(history, spec)[predictor.feature_names].to_numpy(np.float32)
    np.testing.assert_array_equal(X, model.X)
    row = int(np.flatnonzero((history["Dept"] == 3) & (history["Date"] == "2012-11-02"))[0])
    got = model.predict_records([{"store": 1, "dept": 3, "date": "2012-11-02"}])
    assert got[0] == pytest.approx(predictor.predict(X[row:row + 1])[0])


def test_predict_one_and_many(client: TestClient, model) -> None:
    one = client.post("/predict", json={"store": 1, "dept": 1, "date": "2012-11-02"})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["model"] == "walmart-weekly-sales" and body["version"] == model.version
    assert body["request_id"] and isinstance(body["prediction"], float)
    many = client.post("/predict", json=[{"store": 1, "dept": d, "date": "2012-02-03"}
                                         for d in (1, 3, 8)])
    assert many.status_code == 200 and len(many.json()["predictions"]) == 3
    rid = client.post("/predict", json={"store": 1, "dept": 1, "date": "2012-11-02"},
                      headers={"X-Request-ID": "abc-123"})
    assert rid.json()["request_id"] == "abc-123" and rid.headers["x-request-id"] == "abc-123"


@pytest.mark.parametrize("payload, field, text", [
    ({"store": 99, "dept": 1, "date": "2012-11-02"}, "store,dept", "never seen"),
    ({"store": 1, "dept": 1, "date": "2014-01-03"}, "date", "beyond the forecast horizon"),
    ({"store": 1, "dept": 1, "date": "02/11/2012"}, "date", "YYYY-MM-DD"),
    ({"store": 1, "dept": 1, "date": "2012-11-01"}, "date", "nearest: 2012-10-26 or 2012-11-02"),
    ({"store": 1, "dept": 1}, "date", "field required"),
    ({"store": "one", "dept": 1, "date": "2012-11-02"}, "store", "expected a number"),
    ({"store": 1, "dept": 1, "date": "2012-11-02", "price": 3}, "price", "unknown field"),
    # json.dumps writes NaN, which is not JSON: refused as the body's problem
    ({"store": float("nan"), "dept": 1, "date": "2012-11-02"}, None, "NaN and Infinity"),
])
def test_bad_rows_get_422_naming_the_field(client: TestClient, payload, field, text) -> None:
    import json

    res = client.post("/predict", content=json.dumps(payload),
                      headers={"content-type": "application/json"})
    assert res.status_code == 422, res.text
    body = res.json()
    assert any(e["field"] == field for e in body["errors"]), body
    assert text in body["detail"]


def test_horizon_message_names_history_end_and_horizon(client: TestClient, model) -> None:
    res = client.post("/predict", json={"store": 1, "dept": 1, "date": "2014-01-03"})
    assert f"history ends {model.history_end.date()}, horizon 39 weeks" in res.json()["detail"]


def test_malformed_empty_and_oversized_bodies(client: TestClient) -> None:
    assert client.post("/predict", content=b"{not json",
                       headers={"content-type": "application/json"}).status_code == 422
    assert client.post("/predict", json=[]).status_code == 422
    assert client.post("/predict", json="hello").status_code == 422
    big = [{"store": 1, "dept": 1, "date": "2012-11-02"}] * 51
    assert client.post("/predict", json=big).status_code == 413
    huge = b"[" + b" " * 30_000 + b"]"
    assert client.post("/predict", content=huge,
                       headers={"content-type": "application/json"}).status_code == 413
    assert client.get("/health").json()["status"] == "ok"  # still up


def test_web_form(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "Sales forecast" in page.text
    res = client.get("/", params={"store": 1, "dept": 1, "date": "2012-11-02"})
    assert res.status_code == 200 and 'id="forecast"' in res.text
    bad = client.get("/", params={"store": 1, "dept": 1, "date": "2030-01-04"})
    assert bad.status_code == 422 and "beyond the forecast horizon" in bad.text


def test_openapi_describes_predict(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/predict" in spec["paths"] and "ForecastRow" in spec["components"]["schemas"]


def test_tampered_artifact_is_refused(project: Path, model) -> None:
    from cd4ml.errors import IntegrityError

    _, _, stores, _ = open_project(project)
    with stores:
        manifest = read_manifest(stores.artifacts, model.digest)
        digest = next(iter(manifest["predictor"]["files"].values()))
        path = stores.artifacts.local_path(digest)
        original = path.read_bytes()
        path.chmod(0o644)
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        try:
            with pytest.raises(IntegrityError):
                load_parts(stores.artifacts, manifest)
        finally:
            path.write_bytes(original)


def test_fast_paths_agree_with_the_general_ones(model) -> None:
    """The date lookup gives the general parser's row on every servable date (a lookup
    that disagreed is caught), and the forecast table gives the model's own 1-row answer."""
    dates = [str(d.date()) for d in pd.date_range(model.start, model.last, freq=model.step)]
    series = list(model.series_index)
    keys = [{"store": int(k[0]), "dept": int(k[1])} for k in (series[0], series[-1])]
    recs = [{**k, "date": d} for k in keys for d in dates]
    fast = model._rows_plain(recs)  # the lookup: dict of date string -> index
    assert fast is not None, "plain records must take the fast path"

    def general(index: dict[str, int]) -> np.ndarray:
        kept, model._date_index = model._date_index, index
        try:  # an empty index: every date goes through the general parser
            return model._rows_checked(recs)
        finally:
            model._date_index = kept

    slow = general({})
    s0, s1 = model.series_index[series[0]], model.series_index[series[-1]]
    expected = [s * model.n_dates + k for s in (s0, s1) for k in range(len(dates))]
    assert fast.tolist() == slow.tolist() == expected
    # the comparison has teeth: a lookup with two dates swapped disagrees on those rows
    wrong = dict(model._date_index)
    wrong[dates[1]], wrong[dates[2]] = wrong[dates[2]], wrong[dates[1]]
    kept, model._date_index = model._date_index, wrong
    try:
        bad = model._rows_plain(recs)
    finally:
        model._date_index = kept
    assert bad is not None and np.flatnonzero(bad != slow).tolist() == [
        1, 2, len(dates) + 1, len(dates) + 2]
    # the forecast table (a memo over every row) equals the model's 1-row answers
    assert model.table is not None, model.table_status
    rows = np.random.default_rng(0).integers(0, len(model.X), 300)
    one_by_one = [model.predictor.predict(model.X[r:r + 1])[0] for r in rows]
    np.testing.assert_array_equal(one_by_one, model.table[rows])
