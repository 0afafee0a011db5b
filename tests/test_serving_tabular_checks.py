"""What a tabular server refuses, counts and keeps, in process, on real ACS rows.

Every bad input of issue 12 (a column missing or extra, a category never seen, a string
where a number belongs, NaN or infinity, an age of -5) through every protocol that can
carry it: a 4xx naming the field, one count in ``cd4ml_request_refusals`` for its
(endpoint, field, reason), and nothing added to the prediction log. Then what the log
keeps of a tabular request (the inputs as sent, the encoded vector, label and
probabilities), feedback by request id, and the export joining them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from tabular_servables import (ACS_NAME, acs_parts, acs_reference_matrix, proba, records,
                               servable)

from cd4ml.serving.app import ModelHolder, create_app
from cd4ml.predlog import PredictionLog, export_parquet, predictions, query

INFER = f"/v2/models/{ACS_NAME}/infer"
V2_LABEL = "/v2/models/{name}/infer"


@pytest.fixture(scope="module")
def acs():
    parts, later = acs_parts()
    return servable(parts, ACS_NAME), later, parts[2].booster


@pytest.fixture(scope="module")
def served(acs, tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("tabular-log")
    plog = PredictionLog(d)
    client = TestClient(create_app(ModelHolder(acs[0]), plog=plog, max_batch_rows=500))
    yield client, plog, d
    plog.close()


def refusals(client: TestClient) -> dict[tuple[str, str, str], float]:
    out = {}
    for fam in text_string_to_metric_families(client.get("/metrics").text):
        if fam.name == "cd4ml_request_refusals":
            for s in fam.samples:
                if s.name.endswith("_total"):
                    out[(s.labels["endpoint"], s.labels["field"], s.labels["reason"])] = \
                        s.value
    return out


def _row(acs) -> dict:
    m, later, _ = acs
    return records(later.head(1), m.fields)[0]


def _binary_v2(tensors: list[tuple[str, str, np.ndarray]]) -> tuple[bytes, dict]:
    """A v2 request in the binary tensor extension (as tritonclient sends it)."""
    head = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": dt,
                        "parameters": {"binary_data_size": a.nbytes}} for n, dt, a in tensors]}
    text = json.dumps(head).encode()
    return text + b"".join(a.tobytes() for _, _, a in tensors), {
        "Inference-Header-Content-Length": str(len(text)),
        "content-type": "application/octet-stream"}


def _columns(m, rec: dict, change: dict) -> list[tuple[str, str, np.ndarray]]:
    rec = {**rec, **change}
    return [(f, "FP32" if f == "AGEP" else "INT64",
             np.array([rec[f]], np.float32 if f == "AGEP" else np.int64)) for f in m.fields]


def _matrix(m, rec: dict, change: dict) -> list[tuple[str, str, np.ndarray]]:
    rec = {**rec, **change}
    return [("input-0", "FP32", np.array([[rec[f] for f in m.fields]], np.float32))]


def _cases(acs):
    """(case, endpoint label, request kwargs, field named, metric field, reason, status)."""
    m = acs[0]
    r = _row(acs)
    no_sex = {k: v for k, v in r.items() if k != "SEX"}
    csv_head = ",".join(m.fields)

    def csv(**change: str) -> dict:
        vals = {**{k: str(v) for k, v in r.items()}, **change}
        return {"content": f"{csv_head}\n{','.join(vals[f] for f in m.fields)}\n",
                "headers": {"content-type": "text/csv"}}

    def binary(tensors: list) -> dict:
        body, headers = _binary_v2(tensors)
        return {"content": body, "headers": headers}

    P, MLF = "/predict", "/invocations"
    return [
        ("predict: missing column", P, {"json": no_sex}, "SEX", "SEX", "missing_field", 422),
        ("predict: extra column", P, {"json": {**r, "HOURS": 40}}, "HOURS", "(other)",
         "unknown_field", 422),
        ("predict: unseen category", P, {"json": {**r, "SCHL": 99}}, "SCHL", "SCHL",
         "unknown_category", 422),
        ("predict: string for a number", P, {"json": {**r, "AGEP": "forty"}}, "AGEP", "AGEP",
         "wrong_type", 422),
        ("predict: age -5", P, {"json": {**r, "AGEP": -5}}, "AGEP", "AGEP", "below_min", 422),
        ("predict: 1e308", P, {"json": {**r, "AGEP": 1e308}}, "AGEP", "AGEP", "above_max",
         422),
        ("mlflow csv: inf", MLF, csv(AGEP="inf"), "AGEP", "AGEP", "not_finite", 422),
        ("mlflow csv: nan", MLF, csv(AGEP="nan"), "AGEP", "AGEP", "not_finite", 422),
        ("mlflow csv: empty cell", MLF, csv(AGEP=""), "AGEP", "AGEP", "missing_value", 422),
        ("mlflow csv: string for a number", MLF, csv(SCHL="some college"), "SCHL", "SCHL",
         "wrong_type", 422),
        ("mlflow split: unseen category", MLF, {"json": {"dataframe_split": {
            "columns": m.fields, "data": [[{**r, "RAC1P": 10}[f] for f in m.fields]]}}},
         "RAC1P", "RAC1P", "unknown_category", 422),
        ("mlflow records: missing column", MLF, {"json": {"dataframe_records": [no_sex]}},
         "SEX", "SEX", "missing_field", 422),
        ("v2: missing tensor", V2_LABEL, {"json": {"inputs": [
            {"name": f, "shape": [1], "datatype": "INT64", "data": [r[f]]}
            for f in m.fields if f != "SEX"]}}, "SEX", "SEX", "missing_field", 400),
        ("v2: extra tensor", V2_LABEL, {"json": {"inputs": [
            {"name": f, "shape": [1], "datatype": "FP64", "data": [v]}
            for f, v in {**r, "HOURS": 40}.items()]}}, "HOURS", "(other)", "unknown_field",
         400),
        ("v2: string tensor for a number", V2_LABEL, {"json": {"inputs": [
            {"name": f, "shape": [1], "datatype": "BYTES" if f == "AGEP" else "INT64",
             "data": ["forty" if f == "AGEP" else r[f]]} for f in m.fields]}}, "AGEP", "AGEP",
         "wrong_type", 400),
        ("v2 binary: inf", V2_LABEL, binary(_columns(m, r, {"AGEP": np.inf})), "AGEP", "AGEP",
         "not_finite", 422),
        ("v2 binary: NaN", V2_LABEL, binary(_columns(m, r, {"AGEP": np.nan})), "AGEP", "AGEP",
         "not_finite", 422),  # a value sent as NaN (null is the missing one)
        ("v2 matrix: NaN", V2_LABEL, binary(_matrix(m, r, {"AGEP": np.nan})), "AGEP", "AGEP",
         "missing_value", 422),  # a matrix has no null: NaN is missing
        ("v2 binary: unseen category", V2_LABEL, binary(_columns(m, r, {"MAR": 9})), "MAR",
         "MAR", "unknown_category", 422),
        ("v2 matrix: inf", V2_LABEL, binary(_matrix(m, r, {"AGEP": -np.inf})), "AGEP", "AGEP",
         "not_finite", 422),
        ("v2 matrix: age -5", V2_LABEL, binary(_matrix(m, r, {"AGEP": -5})), "AGEP", "AGEP",
         "below_min", 422),
        ("v2 matrix: unseen category", V2_LABEL, {"json": {"inputs": [
            {"name": "input-0", "shape": [1, 16], "datatype": "FP32",
             "data": [{**r, "SCHL": 99}[f] for f in m.fields]}]}}, "SCHL", "SCHL",
         "unknown_category", 422),
    ]


def test_every_bad_input_is_refused_naming_its_field_and_counted(acs, served) -> None:
    client, plog, d = served
    assert client.post("/predict", json=_row(acs)).status_code == 200
    plog.flush()
    logged = len(query(d))
    for case, endpoint, kwargs, field, label, reason, status in _cases(acs):
        before = refusals(client)
        path = INFER if endpoint == V2_LABEL else endpoint
        res = client.post(path, **kwargs)
        assert res.status_code == status, (case, res.text)
        assert field in res.text, (case, res.text)
        after = refusals(client)
        key = (endpoint, label, reason)
        assert after.get(key, 0) - before.get(key, 0) == 1, (case, key, after)
        assert sum(after.values()) - sum(before.values()) == 1, case  # that pair only
    plog.flush()
    assert len(query(d)) == logged  # nothing refused was logged


def test_every_bad_field_of_a_request_is_listed_and_counted_once(acs, served) -> None:
    client = served[0]
    r = _row(acs)
    bad = {**{k: v for k, v in r.items() if k != "SEX"}, "AGEP": -5, "SCHL": 99,
           "MAR": "x", "HOURS": 1}
    before = refusals(client)
    res = client.post("/predict", json=[bad, bad])
    assert res.status_code == 422
    errors = res.json()["errors"]
    assert {(e["loc"], e["reason"]) for e in errors} == {
        (f"rows[{i}].{f}", why) for i in (0, 1) for f, why in (
            ("AGEP", "below_min"), ("SCHL", "unknown_category"), ("MAR", "wrong_type"),
            ("SEX", "missing_field"), ("HOURS", "unknown_field"))}
    assert res.json()["detail"].startswith("rows[0].AGEP = -5: below the schema's minimum 0")
    after = refusals(client)
    for key in (("/predict", "AGEP", "below_min"), ("/predict", "SCHL", "unknown_category"),
                ("/predict", "MAR", "wrong_type"), ("/predict", "SEX", "missing_field"),
                ("/predict", "(other)", "unknown_field")):
        assert after[key] - before.get(key, 0) == 1, key


def test_the_log_keeps_inputs_the_encoded_vector_and_the_answer(acs, served) -> None:
    client, plog, d = served
    m, later, booster = acs
    frame = later.iloc[10:13].reset_index(drop=True)
    res = client.post("/predict", json=records(frame, m.fields), headers={"x-request-id":
                                                                          "tab-log-1"})
    M = frame[m.fields].to_numpy(np.float32)
    mat = client.post(INFER, json={"id": "m1", "inputs": [
        {"name": "input-0", "shape": [3, 16], "datatype": "FP32", "data": M.tolist()}]},
        headers={"x-request-id": "tab-log-2"})
    assert res.status_code == mat.status_code == 200
    plog.flush()
    df = predictions(d)
    P = proba(booster, acs_reference_matrix(frame))
    for rid, endpoint in (("tab-log-1", "/predict"), ("tab-log-2", "/v2/infer")):
        got = df[df.request_id == rid].sort_values("row")
        assert got["endpoint"].unique().tolist() == [endpoint]
        for f in m.fields:
            np.testing.assert_array_equal(got[f].astype(float), frame[f].astype(float))
        np.testing.assert_array_equal(got[[f"feature.{f}" for f in m.fields]].to_numpy(),
                                      acs_reference_matrix(frame))
        np.testing.assert_allclose(got[["probability_0", "probability_1"]], P, atol=1e-12)
        assert got["label"].tolist() == (P[:, 1] >= 0.5).astype(float).tolist()
        assert "prediction" not in got or got["prediction"].isna().all()
    q = query(d, request_id="tab-log-1")[0]
    assert q["output_names"] == ["label", "probability_0", "probability_1"]
    assert q["inputs"]["AGEP"] == frame["AGEP"].tolist()  # names as sent (case kept)
    np.testing.assert_allclose([o[1:] for o in q["outputs"]], P, atol=1e-12)


def test_feedback_by_request_id_and_the_export_joins_it(acs, served, tmp_path: Path) -> None:
    client, plog, d = served
    m, later, _ = acs
    recs = records(later.iloc[20:22], m.fields)
    rid = client.post("/predict", json=recs, headers={"x-request-id": "tab-fb-1"}).json()[
        "request_id"]
    plog.flush()
    bad = client.post("/feedback", json={"request_id": rid, "row": 0, "actual": 7})
    assert bad.status_code == 422 and "actual" in bad.text and "[0, 1]" in bad.text
    keyed = client.post("/feedback", json={**recs[0], "actual": 1})
    assert keyed.status_code == 422 and "request_id" in keyed.json()["detail"], keyed.text
    ok = client.post("/feedback", json={"request_id": rid, "actuals": [1, 0]})
    assert ok.status_code == 200 and ok.json() == {"accepted": 2}, ok.text
    out = tmp_path / "log.parquet"
    n = export_parquet(d, out)
    exported = pd.read_parquet(out)
    assert len(exported) == n
    mine = exported[exported.request_id == "tab-fb-1"].sort_values("row")
    assert mine["actual"].tolist() == [1.0, 0.0]
    assert {"label", "probability_0", "probability_1", "feature.AGEP", "AGEP"} <= set(
        exported.columns)


def test_a_2d_tensor_is_decoded_to_one_array_and_its_lists_let_go() -> None:
    """The nested lists of a numeric 2-D tensor are replaced by one array as soon as it
    is decoded (alive across the request's awaits, a 1,000-row tensor's lists reached the
    collector's oldest generation, whose full passes stall a server ~100 ms), and the
    answer is written by orjson with the numbers exact."""
    import json as _json

    import numpy as _np

    from cd4ml.serving.v2_tensors import decode_request, encode_response

    M = _np.arange(12, dtype=_np.float64).reshape(3, 4) / 7
    body = _json.dumps({"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64",
                                    "data": M.tolist()}]}).encode()
    req, values = decode_request(body, None, ("predict",), lambda r: True)
    data = req["inputs"][0]["data"]
    assert isinstance(data, _np.ndarray) and data is values["input-0"]
    assert _np.array_equal(data.reshape(3, 4), M)
    # per-column requests keep lists (their values become records)
    req2, values2 = decode_request(body, None, ("predict",))
    assert isinstance(req2["inputs"][0]["data"], list) and isinstance(values2["input-0"], list)
    out = encode_response({"model_name": "m"}, [(("p", "FP64", [3], M[:, 0]), False),
                                                (("l", "INT64", [3], _np.array([1, 0, 1])), False)])
    doc = _json.loads(out.body)
    assert out.media_type == "application/json"
    assert doc["outputs"][0]["data"] == M[:, 0].tolist()
    assert doc["outputs"][1] == {"name": "l", "datatype": "INT64", "shape": [3], "data": [1, 0, 1]}
