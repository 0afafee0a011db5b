"""Batch scoring of tabular models (``score_file``, ``cd4ml predict``) on real rows.

Reference: the HTTP ``/predict`` answer for the same rows (the server's path) and the
booster on independently encoded inputs. Row numbers in messages count data rows from 1.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from tabular_servables import (ACS_NAME, acs_parts, acs_reference_matrix, diabetes_parts,
                               proba, register, servable, write_project)

from cd4ml.errors import RequestError, SourceError
from cd4ml.serving.app import ModelHolder, create_app
from cd4ml.serving.batch import score_file


@pytest.fixture(scope="module")
def acs():
    parts, later = acs_parts()
    return parts, servable(parts, ACS_NAME), later


def _rows(later: pd.DataFrame, n: int = 700) -> pd.DataFrame:
    df = later.head(n).drop(columns=["employed", "year"]).reset_index(drop=True)
    return df.assign(note=[f"n{i}" for i in range(len(df))])  # passes through


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_every_row_gets_its_label_and_probabilities(acs, tmp_path: Path, kind: str) -> None:
    parts, m, later = acs
    rows = _rows(later)
    src = tmp_path / f"rows.{kind}"
    rows.to_parquet(src) if kind == "parquet" else rows.to_csv(src, index=False)
    out = tmp_path / "out.parquet"
    summary = score_file(m, src, out, chunk_rows=256)
    assert summary["rows"] == summary["predicted"] == len(rows) and summary["skipped"] == 0
    assert summary["task"] == "classification" and "forecast_table" not in summary
    got = pd.read_parquet(out)
    assert list(got.columns) == [*rows.columns, "label", "probability_0", "probability_1"]
    P = proba(parts[2].booster, acs_reference_matrix(rows))
    np.testing.assert_allclose(got[["probability_0", "probability_1"]], P, rtol=0, atol=1e-12)
    assert got["label"].tolist() == (P[:, 1] >= 0.5).astype(int).tolist()
    assert got["label"].dtype == np.int64
    assert got["AGEP"].dtype == np.float64 and got["SCHL"].dtype == np.int64  # typed
    assert got["note"].tolist() == rows["note"].tolist()
    meta = pq.read_schema(out).metadata
    assert meta[b"cd4ml.model"] == ACS_NAME.encode()
    # the server's answer for the same rows
    served = TestClient(create_app(ModelHolder(m), max_batch_rows=1000)).post(
        "/predict", json=rows[m.fields].to_dict("records")).json()["predictions"]
    assert [r["label"] for r in served] == got["label"].tolist()


def test_a_bad_row_stops_the_run_naming_row_and_field(acs, tmp_path: Path) -> None:
    _, m, later = acs
    rows = _rows(later, 300)
    rows["AGEP"] = rows["AGEP"].astype(object)
    rows.loc[200, "AGEP"] = -5
    rows.loc[250, "SCHL"] = 99
    src = tmp_path / "bad.csv"
    rows.to_csv(src, index=False)
    out = tmp_path / "out.parquet"
    with pytest.raises(RequestError) as exc:
        score_file(m, src, out, chunk_rows=1000)
    assert str(exc.value).startswith("bad.csv row 201: AGEP = -5.0: below the schema's minimum 0")
    assert "1 more bad row" in str(exc.value) and not out.exists()
    assert [(e["row"], e["field"], e["reason"]) for e in exc.value.errors] == [
        (201, "AGEP", "below_min"), (251, "SCHL", "unknown_category")]
    summary = score_file(m, src, out, skip_invalid=True)
    assert summary["skipped"] == 2 and summary["predicted"] == 298
    got = pd.read_parquet(out)
    assert got["error"].notna().sum() == 2
    assert got.loc[200, "error"].startswith("AGEP = ") and "minimum 0" in got.loc[200, "error"]
    assert "SCHL" in got.loc[250, "error"]
    assert got.loc[[200, 250], "label"].isna().all()
    assert got.loc[[200, 250], "probability_1"].isna().all()
    assert got["label"].notna().sum() == 298


def test_missing_inputs_and_clashing_columns_are_named(acs, tmp_path: Path) -> None:
    _, m, later = acs
    rows = _rows(later, 20)
    src = tmp_path / "r.parquet"
    rows.rename(columns={"AGEP": "agep"}).to_parquet(src)
    with pytest.raises(SourceError, match="no column 'AGEP'.*'agep' is not 'AGEP'"):
        score_file(m, src, tmp_path / "o.parquet")
    rows.assign(label=1).to_parquet(src)
    with pytest.raises(SourceError, match="already has a column 'label'"):
        score_file(m, src, tmp_path / "o.parquet")


def test_a_regressor_writes_its_prediction(tmp_path: Path) -> None:
    parts, df = diabetes_parts()
    m = servable(parts, "diabetes")
    src = tmp_path / "d.csv"
    df.drop(columns=["target"]).to_csv(src, index=False)
    score_file(m, src, tmp_path / "o.parquet")
    got = pd.read_parquet(tmp_path / "o.parquet")
    want = parts[2].booster.predict(df[m.fields].to_numpy(np.float32))
    np.testing.assert_allclose(got["prediction"], want, rtol=1e-12)


def test_cd4ml_predict_scores_a_registered_tabular_model(acs, tmp_path: Path) -> None:
    parts, m, later = acs
    proj = write_project(tmp_path / "proj", name=ACS_NAME, task="classification",
                         target="employed")
    register(proj, ACS_NAME, parts)
    rows = _rows(later, 50)
    src = tmp_path / "rows.csv"
    rows.to_csv(src, index=False)
    out = tmp_path / "scored.parquet"
    res = subprocess.run([sys.executable, "-m", "cd4ml.cli", "predict", "-p", str(proj),
                          "-i", str(src), "-o", str(out)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    got = pd.read_parquet(out)
    P = proba(parts[2].booster, acs_reference_matrix(rows))
    np.testing.assert_allclose(got["probability_1"], P[:, 1], rtol=0, atol=1e-12)
    rows.loc[3, "MAR"] = 9
    rows.to_csv(src, index=False)
    bad = subprocess.run([sys.executable, "-m", "cd4ml.cli", "predict", "-p", str(proj),
                          "-i", str(src), "-o", str(out)], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0 and "row 4: MAR = 9:" in bad.stderr, bad.stderr
