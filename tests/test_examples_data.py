"""cd4ml example-data --dataset employment: copied from --shared, or rebuilt from the
nannyml==0.13.1 wheel (needs PyPI: runs in CI, skipped with the reason when offline),
and the rebuilt file equals the shared one in every value, dtype and column order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cd4ml.errors import SourceError
from cd4ml.examples_data import (EMPLOYMENT_COLUMNS, EMPLOYMENT_FILE, download_wheel,
                                 fetch_employment)

SHARED = Path(os.environ.get("CD4ML_SHARED_DATA")
              or Path(__file__).resolve().parents[2] / "shared" / "data")
ACS_DIR = SHARED / "acs-employment-ma"
CLI = [sys.executable, "-m", "cd4ml.cli"]
needs_shared = pytest.mark.skipif(not (ACS_DIR / EMPLOYMENT_FILE).is_file(), reason=(
    f"shared ACS file not found at {ACS_DIR / EMPLOYMENT_FILE} (set CD4ML_SHARED_DATA)"))


@pytest.fixture(scope="session")
def nannyml_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the nannyml wheel, downloaded once per test session."""
    d = tmp_path_factory.mktemp("wheels")
    try:
        download_wheel("nannyml==0.13.1", d)
    except SourceError as exc:
        pytest.skip(f"PyPI not reachable, cannot rebuild the ACS file: {exc}")
    return d


@pytest.fixture(scope="session")
def rebuilt(nannyml_wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    dest = tmp_path_factory.mktemp("acs-rebuilt")
    what = fetch_employment(dest, wheel_dir=nannyml_wheels)
    assert "277,677 rows" in what and "rebuilt from the nannyml==0.13.1 wheel" in what
    return pd.read_parquet(dest / EMPLOYMENT_FILE)


@pytest.mark.network
def test_rebuilt_file_has_the_documented_shape(rebuilt: pd.DataFrame) -> None:
    assert rebuilt.shape == (277_677, 19) and tuple(rebuilt.columns) == EMPLOYMENT_COLUMNS
    assert {c: str(t) for c, t in rebuilt.dtypes.items()} == {
        c: "float64" if c == "AGEP" else "int64" for c in EMPLOYMENT_COLUMNS}
    assert rebuilt["year"].value_counts().sort_index().to_dict() == {
        2015: 68_785, 2016: 69_126, 2017: 69_635, 2018: 70_131}
    assert rebuilt["id"].is_unique and set(rebuilt["employed"]) == {0, 1}
    assert not rebuilt.isna().any().any()
    assert sorted(rebuilt["SCHL"].unique()) == list(range(25))  # codes, not text


@pytest.mark.network
@needs_shared
def test_rebuilt_file_equals_the_shared_one(rebuilt: pd.DataFrame) -> None:
    shared = pd.read_parquet(ACS_DIR / EMPLOYMENT_FILE)
    pd.testing.assert_frame_equal(rebuilt, shared, check_exact=True)


@needs_shared
def test_cli_copies_from_shared(tmp_path: Path) -> None:
    res = subprocess.run([*CLI, "example-data", str(tmp_path / "data"), "--dataset",
                          "employment", "--shared", str(ACS_DIR)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "copied from" in res.stderr
    assert (tmp_path / "data" / EMPLOYMENT_FILE).read_bytes() == \
        (ACS_DIR / EMPLOYMENT_FILE).read_bytes()


def test_cli_refuses_an_unknown_dataset(tmp_path: Path) -> None:
    res = subprocess.run([*CLI, "example-data", str(tmp_path / "d"), "--dataset", "census"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr.strip() == ("error: --dataset = 'census': unknown dataset; choose one "
                                  "of walmart, employment, bike")
    assert not (tmp_path / "d").exists()
