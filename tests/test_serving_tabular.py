"""Tabular models through every protocol, in process (the ASGI app), on real rows.

ACS employment (binary; skipped without ../shared/data), wine (3 classes) and diabetes
(regression). Reference: the LightGBM booster itself on inputs encoded independently of
cd4ml (:func:`acs_reference_matrix`: each PUMS code's position among the declared
codes), and the threshold 0.5 for the label. MLServer's answer to one 2-D tensor is
compared with what MLServer 1.7.1's LightGBM runtime really answered
(tests/data/mlserver_lightgbm_response.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from tabular_servables import (ACS_NAME, acs_parts, acs_reference_matrix, diabetes_parts,
                               proba, records, servable, wine_parts)

from cd4ml.serving.app import ModelHolder, create_app

RECORDED = Path(__file__).parent / "data" / "mlserver_lightgbm_response.json"


@pytest.fixture(scope="module")
def acs():
    parts, later = acs_parts()
    m = servable(parts, ACS_NAME)
    return m, later, parts[2].booster


@pytest.fixture(scope="module")
def acs_client(acs) -> TestClient:
    return TestClient(create_app(ModelHolder(acs[0]), max_batch_rows=500))


@pytest.fixture(scope="module")
def wine():
    parts, df = wine_parts()
    return servable(parts, "wine"), df, parts[2].booster


@pytest.fixture(scope="module")
def diabetes():
    parts, df = diabetes_parts()
    return servable(parts, "diabetes"), df, parts[2].booster


def _expected_acs(acs, frame: pd.DataFrame) -> np.ndarray:
    return proba(acs[2], acs_reference_matrix(frame))


def test_predict_one_record_and_many(acs, acs_client: TestClient) -> None:
    m, later, _ = acs
    recs = records(later.head(5), m.fields)
    P = _expected_acs(acs, later.head(5))
    one = acs_client.post("/predict", json=recs[0])
    assert one.status_code == 200, one.text
    body = one.json()
    assert set(body) == {"model", "version", "request_id", "predictions", "prediction",
                         "latency_ms"}
    assert body["model"] == ACS_NAME and body["version"] == 1
    row = body["prediction"]
    assert row["label"] == int(P[0, 1] >= 0.5)
    assert row["probabilities"] == {"0": pytest.approx(P[0, 0], abs=1e-12),
                                    "1": pytest.approx(P[0, 1], abs=1e-12)}
    for payload in (recs, {"rows": recs}):
        many = acs_client.post("/predict", json=payload).json()
        assert "prediction" not in many
        got = np.array([[r["probabilities"]["0"], r["probabilities"]["1"]]
                        for r in many["predictions"]])
        np.testing.assert_allclose(got, P, rtol=0, atol=1e-12)
        assert [r["label"] for r in many["predictions"]] == (P[:, 1] >= 0.5).astype(
            int).tolist()


def test_predict_multiclass_and_regression(wine, diabetes) -> None:
    m, df, booster = wine
    c = TestClient(create_app(ModelHolder(m)))
    rows = df.sample(20, random_state=0)  # of every class
    res = c.post("/predict", json=records(rows, m.fields)).json()["predictions"]
    P = proba(booster, rows[m.fields].to_numpy(np.float32))
    assert len(set(P.argmax(axis=1))) == 3
    assert [r["label"] for r in res] == P.argmax(axis=1).tolist()
    np.testing.assert_allclose([[r["probabilities"][k] for k in ("0", "1", "2")] for r in res],
                               P, rtol=0, atol=1e-12)
    m, df, booster = diabetes
    c = TestClient(create_app(ModelHolder(m)))
    res = c.post("/predict", json=records(df.head(20), m.fields)).json()
    np.testing.assert_allclose(res["predictions"],
                               booster.predict(df[m.fields].head(20).to_numpy(np.float32)),
                               rtol=1e-12)


def _tensors(m, frame: pd.DataFrame) -> list[dict]:
    return [{"name": f, "shape": [len(frame)], "datatype": "FP64" if f == "AGEP" else "INT64",
             "data": frame[f].tolist()} for f in m.fields]


def test_v2_one_tensor_per_column(acs, acs_client: TestClient) -> None:
    m, later, _ = acs
    frame = later.head(4)
    P = _expected_acs(acs, frame)
    res = acs_client.post(f"/v2/models/{ACS_NAME}/infer",
                          json={"id": "q1", "inputs": _tensors(m, frame)})
    assert res.status_code == 200, res.text
    out = res.json()
    assert out["id"] == "q1" and out["model_version"] == "1"
    label, proba = out["outputs"]
    assert (label["name"], label["datatype"], label["shape"]) == ("label", "INT64", [4])
    assert label["data"] == (P[:, 1] >= 0.5).astype(int).tolist()
    assert (proba["name"], proba["datatype"], proba["shape"]) == ("probabilities", "FP64",
                                                                  [4, 2])
    np.testing.assert_allclose(np.reshape(proba["data"], (4, 2)), P, rtol=0, atol=1e-12)
    only = acs_client.post(f"/v2/models/{ACS_NAME}/infer", json={
        "inputs": _tensors(m, frame), "outputs": [{"name": "probabilities"}]}).json()
    assert [o["name"] for o in only["outputs"]] == ["probabilities"]
    wrong = acs_client.post(f"/v2/models/{ACS_NAME}/infer", json={
        "inputs": _tensors(m, frame), "outputs": [{"name": "prediction"}]})
    assert wrong.status_code == 400 and "'label', 'probabilities'" in wrong.json()["error"]
    meta = acs_client.get(f"/v2/models/{ACS_NAME}").json()
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        (f, "FP64" if f == "AGEP" else "INT64") for f in m.fields]
    assert meta["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [-1]},
                               {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]}]


def test_v2_two_d_tensor_is_answered_as_mlserver_answers(acs, acs_client) -> None:
    m, later, booster = acs
    c = acs_client
    rec = json.loads(RECORDED.read_text())
    assert rec["inputs_in_order"] == m.fields
    for case in rec["cases"]:
        req, want = case["request"], case["response"]
        res = c.post(f"/v2/models/{ACS_NAME}/infer", json=req)
        assert res.status_code == case["status"], res.text
        got = res.json()
        # MLServer's keys, plus the version cd4ml always knows (MLServer gives it when
        # model-settings names one)
        assert list(got) == ["model_name", "model_version", "id", "parameters", "outputs"]
        assert set(want) <= set(got) and got["parameters"] == want["parameters"] == {}
        assert got["id"] == (req["id"] if "id" in req else res.headers["x-request-id"])
        assert len(got["outputs"]) == len(want["outputs"]) == 1
        g, w = got["outputs"][0], want["outputs"][0]
        assert list(g) == list(w) == ["name", "shape", "datatype", "parameters", "data"]
        assert {k: g[k] for k in ("name", "shape", "datatype", "parameters")} == \
            {k: w[k] for k in ("name", "shape", "datatype", "parameters")}
        M = np.asarray(req["inputs"][0]["data"], np.float32).reshape(w["shape"][0], -1)
        frame = pd.DataFrame(M, columns=m.fields)
        np.testing.assert_array_equal(g["data"],
                                      booster.predict(acs_reference_matrix(frame)))


def test_v2_two_d_tensor_multiclass_and_regression(wine, diabetes) -> None:
    for (m, df, booster), shape in ((wine, [6, 3]), (diabetes, [6, 1])):
        c = TestClient(create_app(ModelHolder(m)))
        # FP64: the data's own decimals (as FP32, a value at the schema's minimum, such
        # as hue 0.48, rounds below it and is refused: reported to features/tabular)
        M = df[m.fields].sample(6, random_state=0).to_numpy(np.float64)
        res = c.post(f"/v2/models/{m.name}/infer", json={"inputs": [
            {"name": "input-0", "shape": list(M.shape), "datatype": "FP64",
             "data": M.reshape(-1).tolist()}]})
        assert res.status_code == 200, res.text
        out = res.json()["outputs"][0]
        assert (out["name"], out["shape"], out["datatype"]) == ("predict", shape, "FP64")
        np.testing.assert_allclose(np.reshape(out["data"], shape),
                                   booster.predict(M.astype(np.float32)).reshape(shape),
                                   rtol=1e-12)


def test_v2_fp32_values_at_the_schema_bounds_are_taken(wine) -> None:
    """Every wine row as FP32, as MLServer clients send it: a value at a bound of the
    schema (hue 0.48 arrives as 0.4799999893) is compared as the model sees it."""
    m, df, booster = wine
    lows = [i.get("minimum") for i in m.signature["inputs"]]
    M = df[m.fields].to_numpy(np.float32)
    assert any(lo is not None and np.float32(lo) == M[:, j].min() and lo != float(M[:, j].min())
               for j, lo in enumerate(lows)), "no float32-rounded bound in the data"
    res = TestClient(create_app(ModelHolder(m))).post(
        f"/v2/models/{m.name}/infer", json={"inputs": [
            {"name": "input-0", "shape": list(M.shape), "datatype": "FP32",
             "data": M.reshape(-1).tolist()}]})
    assert res.status_code == 200, res.text
    np.testing.assert_allclose(np.reshape(res.json()["outputs"][0]["data"], (len(M), 3)),
                               booster.predict(M), rtol=1e-12)


def test_v2_two_d_tensor_of_another_width_or_type_is_refused(acs, acs_client) -> None:
    m = acs[0]
    for t, why in (({"name": "input-0", "shape": [1, 3], "datatype": "FP32",
                     "data": [1, 2, 3]}, "shape [n, 16]"),
                   ({"name": "input-0", "shape": [2], "datatype": "BYTES",
                     "data": ["a", "b"]}, "shape [n, 16]")):
        res = acs_client.post(f"/v2/models/{m.name}/infer", json={"inputs": [t]})
        assert res.status_code == 400 and why in res.json()["error"], res.text
    res = acs_client.post(f"/v2/models/{m.name}/infer", json={"inputs": [
        {"name": "input-0", "shape": [1, 16], "datatype": "FP32", "data": [0] * 16}],
        "outputs": [{"name": "label"}]})
    assert res.status_code == 400 and "'predict'" in res.json()["error"]


def _frames(m, frame: pd.DataFrame) -> list[dict]:
    f = frame[m.fields]
    return [{"dataframe_split": json.loads(f.to_json(orient="split", index=False))},
            {"dataframe_records": json.loads(f.to_json(orient="records"))},
            {"instances": records(f, m.fields)},
            {"instances": {k: f[k].tolist() for k in m.fields}},
            {"inputs": {k: f[k].tolist() for k in m.fields}, "params": {}},
            {"inputs": records(f, m.fields)}]


def test_invocations_every_shape_answers_labels_or_values(acs, acs_client, diabetes) -> None:
    m, later, _ = acs
    frame = later.head(6)
    labels = (_expected_acs(acs, frame)[:, 1] >= 0.5).astype(int).tolist()
    for payload in _frames(m, frame):
        res = acs_client.post("/invocations", json=payload)
        assert res.status_code == 200, (payload, res.text)
        assert res.json() == {"predictions": labels}
    res = acs_client.post("/invocations", content=frame[m.fields].to_csv(index=False),
                          headers={"content-type": "text/csv"})
    assert res.status_code == 200 and res.json() == {"predictions": labels}, res.text
    dm, df, booster = diabetes
    c = TestClient(create_app(ModelHolder(dm)))
    want = booster.predict(df[dm.fields].head(6).to_numpy(np.float32))
    for payload in _frames(dm, df.head(6)):
        np.testing.assert_allclose(c.post("/invocations", json=payload).json()["predictions"],
                                   want, rtol=1e-12)
    csv = c.post("/invocations", content=df[dm.fields].head(6).to_csv(index=False),
                 headers={"content-type": "text/csv"})
    np.testing.assert_allclose(csv.json()["predictions"], want, rtol=1e-12)


def test_health_names_the_task_and_predictor(acs, acs_client) -> None:
    h = acs_client.get("/health").json()
    assert h["task"] == "classification" and h["predictor"].startswith("plain predictor")
    assert "forecast_table" not in h
