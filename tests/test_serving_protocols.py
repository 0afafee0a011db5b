"""Open Inference Protocol v2 and MLflow's /invocations, driven by their real clients' payloads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, make_project
from fastapi.testclient import TestClient

import cd4ml
from cd4ml.pipeline.run import run_pipeline
from cd4ml.serving.app import ModelHolder, create_app

ROWS = [{"store": 1, "dept": 1, "date": "2012-11-02"}, {"store": 1, "dept": 3, "date": "2013-01-04"}]
NAME = "walmart-weekly-sales"


@pytest.fixture(scope="module")
def model(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    proj = make_project(tmp_path_factory.mktemp("proto"), sample_dir)
    assert run_pipeline(proj, FAST).registered
    return cd4ml.load_model(f"{NAME}@production", project_dir=proj)


@pytest.fixture(scope="module")
def client(model) -> TestClient:
    return TestClient(create_app(ModelHolder(model), max_batch_rows=100))


@pytest.fixture(scope="module")
def expected(model) -> list[float]:
    return model.predict_records(ROWS).tolist()


def _v2_json() -> dict:
    return {"id": "req-7", "inputs": [
        {"name": "store", "shape": [2], "datatype": "INT64", "data": [1, 1]},
        {"name": "dept", "shape": [2], "datatype": "INT64", "data": [1, 3]},
        {"name": "date", "shape": [2], "datatype": "BYTES", "data": ["2012-11-02", "2013-01-04"]}]}


def test_v2_metadata_and_health(client: TestClient, model) -> None:
    assert client.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    meta = client.get(f"/v2/models/{NAME}").json()
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("store", "INT64"), ("dept", "INT64"), ("date", "BYTES")]
    assert meta["outputs"] == [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    assert client.get(f"/v2/models/{NAME}/versions/{model.version}/ready").status_code == 200
    assert client.get("/v2/models/nope").status_code == 404
    missing = client.get(f"/v2/models/{NAME}/versions/99")
    assert missing.status_code == 404 and "not loaded" in missing.json()["error"]


def test_v2_json_infer(client: TestClient, expected) -> None:
    res = client.post(f"/v2/models/{NAME}/infer", json=_v2_json())
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["id"] == "req-7" and body["outputs"][0]["shape"] == [2]
    assert body["outputs"][0]["data"] == pytest.approx(expected)


@pytest.mark.parametrize("mutate, status, text", [
    (lambda r: r["inputs"][0].update(shape=[3]), 400, "shape [3] holds 3 values but 2"),
    (lambda r: r["inputs"].pop(2), 400, "missing: ['date']"),
    (lambda r: r["inputs"].append({"name": "price", "shape": [2], "datatype": "FP32",
                                   "data": [1, 2]}), 400, "unknown: ['price']"),
    (lambda r: r["inputs"][2].update(data=["2012-11-02", "2030-01-04"]), 422, "beyond"),
    (lambda r: r["inputs"][0].update(data=[1, 77]), 422, "never seen"),
])
def test_v2_bad_requests(client: TestClient, mutate, status, text) -> None:
    req = _v2_json()
    mutate(req)
    res = client.post(f"/v2/models/{NAME}/infer", json=req)
    assert res.status_code == status, res.text
    assert text in res.json()["error"]


def test_v2_with_tritonclient_defaults(server: str, expected) -> None:
    http = pytest.importorskip("tritonclient.http", reason="pip install 'tritonclient[http]'")
    client = http.InferenceServerClient(server.removeprefix("http://"))
    assert client.is_server_live() and client.is_model_ready(NAME)
    inputs = [http.InferInput("store", [2], "INT64"), http.InferInput("dept", [2], "INT64"),
              http.InferInput("date", [2], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([1, 1], dtype=np.int64))
    inputs[1].set_data_from_numpy(np.array([1, 3], dtype=np.int64))
    inputs[2].set_data_from_numpy(np.array([b"2012-11-02", b"2013-01-04"], dtype=object))
    result = client.infer(NAME, inputs, request_id="t-1")  # binary in and out by default
    np.testing.assert_allclose(result.as_numpy("prediction"), expected)
    assert result.get_response()["id"] == "t-1"


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"store": [1, 1], "dept": [1, 3], "date": ["2012-11-02", "2013-01-04"]})


@pytest.mark.parametrize("payload", [
    lambda df: {"dataframe_split": json.loads(df.to_json(orient="split"))},
    lambda df: {"dataframe_records": json.loads(df.to_json(orient="records"))},
    lambda df: {"instances": df.to_dict(orient="records")},
    lambda df: {"inputs": df.to_dict(orient="list"), "params": {}},
])
def test_invocations_json_formats(client: TestClient, expected, payload) -> None:
    res = client.post("/invocations", json=payload(_frame()))
    assert res.status_code == 200, res.text
    assert res.json()["predictions"] == pytest.approx(expected)


def test_invocations_csv_and_content_types(client: TestClient, expected) -> None:
    res = client.post("/invocations", content=_frame().to_csv(index=False),
                      headers={"content-type": "text/csv"})
    assert res.status_code == 200 and res.json()["predictions"] == pytest.approx(expected)
    assert client.post("/invocations", content=b"x", headers={"content-type":
                                                              "text/plain"}).status_code == 415
    bad = client.post("/invocations", json={"rows": []})
    # MLflow's error shape: {"error_code": ..., "message": ...}
    assert bad.status_code == 422 and "exactly one of" in bad.json()["message"]
    assert bad.json()["error_code"] == "BAD_REQUEST"
    assert client.get("/ping").status_code == 200 and client.get("/version").text


def test_every_protocol_refuses_an_oversized_body(model) -> None:
    small = TestClient(create_app(ModelHolder(model), max_body_bytes=2048))
    big = b"{" + b" " * 5000 + b"}"
    for path in ("/predict", f"/v2/models/{NAME}/infer", "/invocations"):
        res = small.post(path, content=big, headers={"content-type": "application/json"})
        assert res.status_code == 413, path
        assert "max_body_bytes" in json.dumps(res.json())
        chunked = small.post(path, content=iter([big]),  # no Content-Length: read, then refused
                             headers={"content-type": "application/json"})
        assert chunked.status_code == 413, path
        assert "max_body_bytes" in json.dumps(chunked.json())
