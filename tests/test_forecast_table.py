"""The forecast table: the model's answer for every servable (series, date), computed at
registration, verified against the live model at load, and used by every serving path
only when it matches; a table that disagrees, has the wrong shape or was tampered with is
never served."""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import start_server, stop_server

from cd4ml.errors import IntegrityError
from cd4ml.registry.bundle import load_forecasts, load_parts, read_manifest
from cd4ml.registry.loader import load_model, load_version
from cd4ml.registry.servable import TABLE_CHECK_ROWS, ServableModel

NAME = "walmart-weekly-sales"
ROWS = [{"store": 1, "dept": 1, "date": "2012-11-02"}, {"store": 1, "dept": 3, "date": "2011-03-04"},
        {"store": 1, "dept": 8, "date": "2010-02-05"}]


def _stores(proj: Path):  # type: ignore[no-untyped-def]
    from cd4ml.config import load_config
    from cd4ml.store import open_stores

    cfg, _ = load_config(proj)
    return open_stores(cfg.store, proj)


def test_the_table_holds_the_models_answer_for_every_servable_row(trained_project: Path,
                                                                  ) -> None:
    m = load_model(f"{NAME}@production", project_dir=trained_project)
    assert m.table is not None and m.table_status.startswith("verified")
    assert m.table.shape == (len(m.X),)
    # every row, against the live model: in one batch and one row at a time (fast path)
    assert np.array_equal(m.table, m.predictor.predict(m.X), equal_nan=True)
    for r in range(0, len(m.X), max(1, len(m.X) // 40)):
        assert m.table[r] == m.predictor.predict(m.X[r:r + 1])[0]
    assert np.array_equal(m.predict_records(ROWS), m.predictor.predict(m.X[m.rows_for(ROWS)]))
    with _stores(trained_project) as st:
        manifest = read_manifest(st.artifacts, st.metadata.resolve(NAME, "production")["digest"])
    assert manifest["forecasts"]["rows"] == len(m.X)


def test_off_runs_the_model_with_the_same_answers(trained_project: Path) -> None:
    on = load_model(f"{NAME}@production", project_dir=trained_project)
    off = load_model(f"{NAME}@production", project_dir=trained_project, forecast_table=False)
    assert off.table is None and off.table_status.startswith("off")
    assert np.array_equal(on.predict_records(ROWS), off.predict_records(ROWS))


def _servable(proj: Path, table: np.ndarray) -> ServableModel:
    with _stores(proj) as st:
        manifest = read_manifest(st.artifacts, st.metadata.resolve(NAME, "production")["digest"])
        predictor, spec, history = load_parts(st.artifacts, manifest)
    return ServableModel(predictor, spec, history, name=NAME, version=1, forecasts=table)


def test_a_table_that_disagrees_with_the_live_model_is_not_used(
        trained_project: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = load_model(f"{NAME}@production", project_dir=trained_project)
    bad = good.table.copy()
    n = len(bad)
    sampled = np.unique(np.linspace(0, n - 1, min(TABLE_CHECK_ROWS, n)).astype(np.int64))
    bad[sampled[3]] += 1.0  # as another LightGBM build might differ in one leaf
    m = _servable(trained_project, bad)
    assert m.table is None
    assert m.table_status.startswith(f"not used: 1 of {len(sampled)} sampled rows differ")
    assert "max |diff| 1" in m.table_status
    assert "forecast table not used" in caplog.text
    rows = np.array([sampled[3], 0, n - 1])
    assert np.array_equal(m.predict_rows(rows), good.predictor.predict(good.X[rows]))

    short = _servable(trained_project, good.table[:-1])
    assert short.table is None
    assert short.table_status.startswith(f"not used: {n - 1} forecasts for {n} servable rows")


def test_a_tampered_table_file_is_refused(trained_project: Path) -> None:
    with _stores(trained_project) as st:
        row = st.metadata.resolve(NAME, "production")
        manifest = read_manifest(st.artifacts, row["digest"])
        obj = manifest["forecasts"]["digest"]
        path = trained_project / ".cd4ml" / "artifacts" / "objects" / obj[:2] / obj[2:]
        original = path.read_bytes()
        values = np.load(io.BytesIO(original))
        values[0] += 1.0
        buf = io.BytesIO()
        np.save(buf, values)
        try:
            path.chmod(0o644)
            path.write_bytes(buf.getvalue())
            with pytest.raises(IntegrityError):
                load_forecasts(st.artifacts, manifest)
            with pytest.raises(IntegrityError):
                load_version(st.metadata, st.artifacts, NAME, "production")
        finally:
            path.write_bytes(original)
            os.utime(path)
        assert load_forecasts(st.artifacts, manifest) is not None


def test_servers_with_and_without_the_table_answer_the_same(trained_project: Path) -> None:
    on, url_on = start_server(trained_project)
    off, url_off = start_server(trained_project, "--set", "serving.forecast_table=false")
    try:
        h_on = httpx.get(f"{url_on}/health", timeout=10).json()
        h_off = httpx.get(f"{url_off}/health", timeout=10).json()
        assert h_on["forecast_table"].startswith("verified")
        assert h_off["forecast_table"].startswith("off")
        for body in (ROWS[0], ROWS, ROWS * 30):  # one row, a few, >= 64 (threaded model)
            a = httpx.post(f"{url_on}/predict", json=body, timeout=10).json()
            b = httpx.post(f"{url_off}/predict", json=body, timeout=10).json()
            key = "prediction" if isinstance(body, dict) else "predictions"
            assert a[key] == b[key]
    finally:
        stop_server(on)
        stop_server(off)
