"""A tabular model served by a real ``cd4ml serve`` process on loopback: tritonclient
(binary and JSON, one tensor per column and MLServer's one 2-D tensor), MLServer's own
request bodies, refusals in ``/metrics``, feedback and ``cd4ml log export``, and hot
swaps from a forecast to a classifier and between classifiers.

Reference: the registered version's LightGBM booster on inputs encoded independently of
cd4ml; MLServer 1.7.1's recorded answers (tests/data/mlserver_lightgbm_response.json).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import start_server, stop_server, wait_version
from prometheus_client.parser import text_string_to_metric_families
from tabular_servables import (ACS_NAME, acs_parts, acs_reference_matrix, proba, records,
                               register, wine_parts, write_project)

RECORDED = Path(__file__).parent / "data" / "mlserver_lightgbm_response.json"
http = pytest.importorskip("tritonclient.http", reason="pip install 'tritonclient[http]'")


@pytest.fixture(scope="module")
def acs(tmp_path_factory: pytest.TempPathFactory):
    parts, later = acs_parts()
    proj = write_project(tmp_path_factory.mktemp("tabular-served") / "proj", name=ACS_NAME,
                         task="classification", target="employed")
    register(proj, ACS_NAME, parts)
    return proj, parts, later


@pytest.fixture(scope="module")
def server(acs):
    proc, url = start_server(acs[0])
    yield url
    stop_server(proc)


def _cli(proj: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cd4ml.cli", *args, "-p", str(proj)],
                          capture_output=True, text=True, timeout=120)


def test_tritonclient_one_tensor_per_column(acs, server: str) -> None:
    proj, parts, later = acs
    fields = parts[0].names
    frame = later.head(5)
    P = proba(parts[2].booster, acs_reference_matrix(frame))
    client = http.InferenceServerClient(server.removeprefix("http://"))
    assert client.is_server_live() and client.is_model_ready(ACS_NAME)
    meta = client.get_model_metadata(ACS_NAME)
    assert [i["name"] for i in meta["inputs"]] == fields
    inputs = []
    for f in fields:
        dtype, np_type = ("FP32", np.float32) if f == "AGEP" else ("INT64", np.int64)
        t = http.InferInput(f, [len(frame)], dtype)
        t.set_data_from_numpy(frame[f].to_numpy(np_type))
        inputs.append(t)
    result = client.infer(ACS_NAME, inputs, request_id="tc-1")  # binary in and out
    assert result.get_response()["id"] == "tc-1"
    np.testing.assert_allclose(result.as_numpy("probabilities"), P, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result.as_numpy("label"), (P[:, 1] >= 0.5).astype(int))
    as_json = client.infer(ACS_NAME, inputs, outputs=[
        http.InferRequestedOutput("label", binary_data=False)])
    assert [o["name"] for o in as_json.get_response()["outputs"]] == ["label"]
    np.testing.assert_array_equal(as_json.as_numpy("label"), (P[:, 1] >= 0.5).astype(int))


def test_one_2d_tensor_from_tritonclient_and_mlserver_bodies(acs, server: str) -> None:
    proj, parts, later = acs
    booster = parts[2].booster
    M = later[parts[0].names].head(7).to_numpy(np.float32)
    want = booster.predict(acs_reference_matrix(pd.DataFrame(M, columns=parts[0].names)))
    client = http.InferenceServerClient(server.removeprefix("http://"))
    for binary in (True, False):
        t = http.InferInput("input-0", list(M.shape), "FP32")
        t.set_data_from_numpy(M, binary_data=binary)
        res = client.infer(ACS_NAME, [t], outputs=[
            http.InferRequestedOutput("predict", binary_data=binary)])
        got = res.as_numpy("predict")
        assert got.shape == (7, 1) and got.dtype == np.float64
        np.testing.assert_array_equal(got[:, 0], want)
    rec = json.loads(RECORDED.read_text())
    for case in rec["cases"]:  # MLServer's own request bodies, answered as MLServer did
        r = httpx.post(f"{server}/v2/models/{ACS_NAME}/infer", json=case["request"],
                       timeout=10)
        assert r.status_code == case["status"], r.text
        got, w = r.json(), case["response"]
        assert got["model_name"] == w["model_name"] and got["parameters"] == w["parameters"]
        if "id" in case["request"]:
            assert got["id"] == w["id"]
        out, wout = got["outputs"][0], w["outputs"][0]
        assert {k: out[k] for k in ("name", "shape", "datatype", "parameters")} == \
            {k: wout[k] for k in ("name", "shape", "datatype", "parameters")}
        rows = np.asarray(case["request"]["inputs"][0]["data"], np.float32).reshape(
            wout["shape"][0], -1)
        np.testing.assert_array_equal(out["data"], booster.predict(acs_reference_matrix(
            pd.DataFrame(rows, columns=parts[0].names))))


def _refusals(url: str) -> dict[tuple[str, str, str], float]:
    out = {}
    for fam in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for s in fam.samples:
            if s.name == "cd4ml_request_refusals_total":
                out[(s.labels["endpoint"], s.labels["field"], s.labels["reason"])] = s.value
    return out


def test_refusals_are_counted_and_nothing_is_logged(acs, server: str) -> None:
    proj, parts, later = acs
    rec = records(later.head(1), parts[0].names)[0]
    before, logged = _refusals(server), httpx.get(f"{server}/health").json()["prediction_log"]
    for body in ({**rec, "AGEP": -5}, {**rec, "SCHL": 99}, {**rec, "AGEP": "forty"},
                 {k: v for k, v in rec.items() if k != "SEX"}, {**rec, "HOURS": 1}):
        r = httpx.post(f"{server}/predict", json=body, timeout=10)
        assert r.status_code == 422, r.text
    after = _refusals(server)
    for key in (("AGEP", "below_min"), ("SCHL", "unknown_category"), ("AGEP", "wrong_type"),
                ("SEX", "missing_field"), ("(other)", "unknown_field")):
        k = ("/predict", *key)
        assert after[k] - before.get(k, 0) == 1, k
    now = httpx.get(f"{server}/health").json()["prediction_log"]
    assert now["written"] + now["queue"] == logged["written"] + logged["queue"]


def test_feedback_then_cd4ml_log_export_joins_it(acs, tmp_path: Path) -> None:
    proj, parts, later = acs
    proc, url = start_server(proj)
    try:
        recs = records(later.iloc[30:33], parts[0].names)
        r = httpx.post(f"{url}/predict", json=recs, headers={"x-request-id": "srv-fb-1"})
        assert r.status_code == 200
        fb = httpx.post(f"{url}/feedback", json={"request_id": "srv-fb-1",
                                                  "actuals": [1, 0, 1]}, timeout=30)
        assert fb.status_code == 200 and fb.json() == {"accepted": 3}, fb.text
    finally:
        stop_server(proc)
    shown = _cli(proj, "log", "query", "--request-id", "srv-fb-1")
    assert shown.returncode == 0 and "srv-fb-1" in shown.stdout, shown.stderr
    listed = json.loads(_cli(proj, "log", "query", "--request-id", "srv-fb-1", "--json").stdout)
    assert listed[0]["output_names"] == ["label", "probability_0", "probability_1"]
    out = tmp_path / "log.parquet"
    res = _cli(proj, "log", "export", "-o", str(out))
    assert res.returncode == 0, res.stderr
    df = pd.read_parquet(out)
    mine = df[df.request_id == "srv-fb-1"].sort_values("row")
    assert mine["actual"].tolist() == [1.0, 0.0, 1.0]
    frame = later.iloc[30:33]
    P = proba(parts[2].booster, acs_reference_matrix(frame))
    np.testing.assert_allclose(mine[["probability_0", "probability_1"]], P, atol=1e-12)
    np.testing.assert_array_equal(mine[[f"feature.{f}" for f in parts[0].names]],
                                  acs_reference_matrix(frame))
    assert mine["AGEP"].tolist() == frame["AGEP"].tolist()


def test_hot_swap_from_a_forecast_to_classifiers_and_back(trained_project: Path) -> None:
    name = "walmart-weekly-sales"
    forecast_rows = [{"store": 1, "dept": 1, "date": "2012-11-02"}]
    acs_p, later = acs_parts(n_train=4_000, trees=10)
    wine_p, wine_df = wine_parts()
    proc, url = start_server(trained_project, "--set", "serving.poll_interval_s=0.2")
    try:
        assert httpx.post(f"{url}/predict", json=forecast_rows).json()["version"] == 1
        v2 = register(trained_project, name, acs_p)
        wait_version(url, v2)
        rec = records(later.head(1), acs_p[0].names)[0]
        r = httpx.post(f"{url}/predict", json=rec, timeout=10)
        assert r.status_code == 200 and r.json()["version"] == v2, r.text
        assert set(r.json()["prediction"]) == {"label", "probabilities"}
        assert httpx.post(f"{url}/predict", json=forecast_rows).status_code == 422
        assert 'id="in-AGEP"' in httpx.get(f"{url}/").text
        v3 = register(trained_project, name, wine_p)
        wait_version(url, v3)
        w = httpx.post(f"{url}/predict", json=records(wine_df.head(2), wine_p[0].names))
        assert w.status_code == 200 and len(w.json()["predictions"][0]["probabilities"]) == 3
        meta = httpx.get(f"{url}/v2/models/{name}").json()
        assert [i["name"] for i in meta["inputs"]] == wine_p[0].names
        assert _cli(trained_project, "promote", name, "1").returncode == 0
        wait_version(url, 1)
        back = httpx.post(f"{url}/predict", json=forecast_rows[0])
        assert back.status_code == 200 and isinstance(back.json()["prediction"], float)
        metrics = httpx.get(f"{url}/metrics").text
        assert "cd4ml_model_swaps_total 3.0" in metrics
    finally:
        stop_server(proc)
