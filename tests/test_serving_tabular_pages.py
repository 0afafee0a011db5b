"""A tabular model's web form and OpenAPI document, built from its signature; and a
swap between a forecast and a tabular model in one app (in process, real ACS rows)."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from tabular_servables import (ACS_NAME, acs_frame, acs_parts, diabetes_parts, records,
                              servable, wine_parts)

from cd4ml.serving.app import ModelHolder, create_app
from cd4ml.serving.form_tabular import form_record


@pytest.fixture(scope="module")
def acs():
    parts, later = acs_parts()
    return servable(parts, ACS_NAME), later


@pytest.fixture(scope="module")
def client(acs) -> TestClient:
    return TestClient(create_app(ModelHolder(acs[0])))


def test_the_form_has_one_input_per_column_with_categories_and_bounds(acs, client) -> None:
    m = acs[0]
    page = client.get("/")
    assert page.status_code == 200
    text = page.text
    assert re.findall(r'id="in-([A-Za-z0-9_]+)"', text) == m.fields
    df = acs_frame()
    for c in ("SCHL", "RAC1P", "SEX"):
        sel = re.search(rf'<select name="{c}" id="in-{c}">(.*?)</select>', text).group(1)
        assert re.findall(r'<option value="(-?\d+)"', sel) == [
            str(v) for v in sorted(df[c].unique())]
    agep = re.search(r'<input name="AGEP" id="in-AGEP"([^>]*)>', text).group(1)
    assert 'type="number"' in agep and 'min="0"' in agep and 'max="99"' in agep
    assert 'class="result"' not in text and "Classifier" in text and "<b>employed</b>" in text


def test_the_form_answers_with_the_label_and_each_probability(acs, client) -> None:
    m, later = acs
    rec = records(later.iloc[[3]], m.fields)[0]
    page = client.get("/", params={k: str(v) for k, v in rec.items()})
    assert page.status_code == 200, page.text
    row = client.post("/predict", json=rec).json()["prediction"]
    assert re.search(r'<b id="label">(\w+)</b>', page.text).group(1) == str(row["label"])
    for k, p in row["probabilities"].items():
        shown = re.search(rf'<td id="probability-{k}">([0-9.]+)</td>', page.text).group(1)
        assert shown == f"{p:.4f}"
    # a field left out takes the value the form shows for it
    inputs = list(m.signature["inputs"])
    _, asked = form_record(inputs, {"AGEP": "40"})
    partial = client.get("/", params={"AGEP": "40"})
    want = client.post("/predict", json=asked).json()["prediction"]
    assert f'<b id="label">{want["label"]}</b>' in partial.text


def _refused(c: TestClient, key: tuple[str, str, str]) -> float:
    for fam in text_string_to_metric_families(c.get("/metrics").text):
        for s in fam.samples:
            if s.name == "cd4ml_request_refusals_total" and \
                    (s.labels["endpoint"], s.labels["field"], s.labels["reason"]) == key:
                return s.value
    return 0.0


def test_the_form_shows_why_it_cannot_answer(client) -> None:
    key = ("/", "AGEP", "below_min")
    before = _refused(client, key)
    page = client.get("/", params={"AGEP": "-5", "SCHL": "abc"})
    assert page.status_code == 422
    err = html.unescape(re.search(r'<div class="error" id="error">(.*?)</div>',
                                  page.text, re.S).group(1))
    assert "AGEP" in err and "minimum 0" in err and "SCHL" in err
    assert _refused(client, key) - before == 1


def test_the_openapi_document_is_the_signature(acs, client) -> None:
    m = acs[0]
    doc = client.get("/openapi.json").json()
    sch = doc["components"]["schemas"]
    row = sch["TabularRow"]
    assert row["required"] == m.fields and row["additionalProperties"] is False
    df = acs_frame()
    assert row["properties"]["SCHL"] == {"type": "integer",
                                         "enum": sorted(int(v) for v in df.SCHL.unique())}
    assert row["properties"]["AGEP"] == {"type": "number", "minimum": 0, "maximum": 99}
    item = sch["PredictResponse"]["properties"]["predictions"]["items"]
    assert item["properties"]["label"] == {"enum": [0, 1]}
    assert item["properties"]["probabilities"]["required"] == ["0", "1"]
    assert sch["MlflowResponse"]["properties"]["predictions"]["items"] == {"enum": [0, 1]}
    per_column, matrix = sch["InferenceRequest"]["oneOf"]
    assert [t["properties"]["name"]["const"] for t in
            per_column["properties"]["inputs"]["prefixItems"]] == m.fields
    tensor = matrix["properties"]["inputs"]["prefixItems"][0]["properties"]
    assert tensor["shape"]["prefixItems"] == [{"const": 1}, {"const": 16}]
    assert tensor["name"]["not"] == {"enum": m.fields}
    assert [p["name"] for p in doc["paths"]["/"]["get"]["parameters"]] == m.fields
    pattern = doc["paths"]["/invocations"]["post"]["requestBody"]["content"]["text/csv"][
        "schema"]["pattern"]
    rows = acs[1][m.fields].head(2)
    assert re.fullmatch(pattern, rows.to_csv(index=False))
    assert not re.fullmatch(pattern, rows.assign(AGEP=-5).to_csv(index=False))
    assert "ForecastRow" not in sch


def test_the_regression_document_answers_numbers() -> None:
    parts, _ = diabetes_parts()
    c = TestClient(create_app(ModelHolder(servable(parts, "diabetes"))))
    sch = c.get("/openapi.json").json()["components"]["schemas"]
    assert sch["PredictResponse"]["properties"]["prediction"] == {"type": "number"}
    assert sch["TabularRow"]["properties"]["bmi"]["type"] == "number"
    assert c.get("/v2/models/diabetes").json()["outputs"] == [
        {"name": "prediction", "datatype": "FP64", "shape": [-1]}]


def test_one_app_swaps_between_tabular_models_of_other_kinds(acs) -> None:
    m, later = acs
    wine_parts_, wine_df = wine_parts()
    wine = servable(wine_parts_, "wine", version=2)
    holder = ModelHolder(m)
    c = TestClient(create_app(holder))
    assert c.post("/predict", json=records(later.head(1), m.fields)[0]).status_code == 200
    first = c.get("/openapi.json").json()
    holder.swap(wine)
    res = c.post("/predict", json=records(wine_df.head(2), wine.fields))
    assert res.status_code == 200 and res.json()["model"] == "wine"
    assert set(res.json()["predictions"][0]["probabilities"]) == {"0", "1", "2"}
    again = c.post("/predict", json=records(later.head(1), m.fields)[0])
    assert again.status_code == 422 and "unknown field" in again.text
    doc = c.get("/openapi.json").json()
    assert doc != first and "alcohol" in doc["components"]["schemas"]["TabularRow"][
        "properties"]
    assert 'id="in-alcohol"' in c.get("/").text
    meta = c.get("/v2/models/wine").json()
    assert meta["outputs"][1] == {"name": "probabilities", "datatype": "FP64",
                                  "shape": [-1, 3]}
    M = wine_df[wine.fields].head(2).to_numpy(np.float64)
    out = c.post("/v2/models/wine/infer", json={"inputs": [
        {"name": "x", "shape": [2, 13], "datatype": "FP64", "data": M.tolist()}]}).json()
    assert out["outputs"][0]["shape"] == [2, 3]
