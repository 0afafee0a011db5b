"""cd4ml.data.snapshot: deterministic Parquet bytes, round trip, id = file fingerprint."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cd4ml.config import SourceConfig
from cd4ml.data import file_fingerprint, make_snapshot, read_snapshot_bytes, read_source
from cd4ml.data.profile import profile
from cd4ml.errors import DataError


@pytest.fixture()
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "Store": rng.integers(1, 46, 300),
        "Date": pd.to_datetime("2010-02-05") + pd.to_timedelta(np.arange(300) * 7, "D"),
        "Weekly_Sales": np.where(rng.random(300) < 0.05, np.nan, rng.normal(1e4, 3e3, 300)),
        "Type": rng.choice(["A", "B", "C"], 300),
        "IsHoliday": rng.random(300) < 0.1,
    })


def test_round_trip_and_metadata(frame: pd.DataFrame) -> None:
    snap = make_snapshot("sales", frame, fingerprint="f" * 64)
    back = read_snapshot_bytes(snap.data)
    pd.testing.assert_frame_equal(back, frame)
    assert snap.id == "f" * 64 and snap.name == "sales" and snap.rows == 300
    assert [c["name"] for c in snap.columns] == list(frame.columns)
    assert snap.columns[0]["dtype"] == "int64" and snap.columns[4]["dtype"] == "bool"
    assert snap.data_sha256 == hashlib.sha256(snap.data).hexdigest()
    assert snap.profile == profile(frame)
    meta = json.loads(json.dumps(snap.metadata()))
    assert meta["bytes"] == len(snap.data) and meta["rows"] == 300
    assert snap.data[:4] == b"PAR1"


def test_bytes_are_deterministic(frame: pd.DataFrame) -> None:
    a = make_snapshot("sales", frame, fingerprint="1" * 64)
    b = make_snapshot("sales", frame.copy(), fingerprint="1" * 64)
    assert a.data == b.data and a.data_sha256 == b.data_sha256


def test_index_is_not_stored(frame: pd.DataFrame) -> None:
    shuffled = frame.iloc[::-1]
    back = read_snapshot_bytes(make_snapshot("s", shuffled, fingerprint="x").data)
    assert back.index.equals(pd.RangeIndex(300))
    assert back["Store"].tolist() == shuffled["Store"].tolist()


def test_unchanged_file_same_id_and_parse_errors_travel(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("k,Date,y\n1,2010-02-05,1.0\n2,05/02/2010,2.0\n")
    src = SourceConfig(path="s.csv", dates=["Date"])
    cache = tmp_path / "state.json"
    ids = []
    for _ in range(2):
        df = read_source("sales", src, tmp_path)
        snap = make_snapshot("sales", df, fingerprint=file_fingerprint(tmp_path / "s.csv", cache))
        ids.append((snap.id, snap.data))
    assert ids[0] == ids[1]
    assert ids[0][0] == hashlib.sha256((tmp_path / "s.csv").read_bytes()).hexdigest()
    back = read_snapshot_bytes(ids[0][1])
    assert back.attrs["parse_errors"] == {
        "Date": {"count": 1, "examples": [{"row": 1, "value": "05/02/2010"}]}}
    assert snap.metadata()["parse_errors"] == back.attrs["parse_errors"]


def test_errors() -> None:
    with pytest.raises(DataError, match="fingerprint is empty"):
        make_snapshot("s", pd.DataFrame({"a": [1]}), fingerprint="")
    with pytest.raises(DataError, match="cannot store as Parquet"):
        make_snapshot("s", pd.DataFrame({"a": [1, "x", 2.5]}), fingerprint="x")
    with pytest.raises(DataError, match="snapshot bytes are not Parquet"):
        read_snapshot_bytes(b"nope")
