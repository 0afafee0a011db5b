"""cd4ml.data.sources: reading CSV/zip/gz/Parquet, strict dates, clear SourceErrors, fingerprints."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zipfile
from pathlib import Path

import pandas as pd
import pytest

import cd4ml.store.fingerprint as fingerprint_mod

import cd4ml.data
from cd4ml.config import SourceConfig
from cd4ml.data.sources import file_fingerprint, parse_dates, read_source, source_format
from cd4ml.errors import SourceError

GOOD = ("Store,Dept,Date,Weekly_Sales,IsHoliday\n"
        "1,1,2010-02-05,24924.5,FALSE\n"
        "1,1,2010-02-12,46039.49,TRUE\n"
        "1,2,2010-02-05,50605.27,FALSE\n")


def _src(path: str, **kw: object) -> SourceConfig:
    return SourceConfig(path=path, dates=["Date"], **kw)


def test_public_api_is_exported() -> None:
    for name in cd4ml.data.__all__:
        assert hasattr(cd4ml.data, name), name


def test_reads_csv_with_types_and_dates(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text(GOOD)
    df = read_source("sales", _src("s.csv"), tmp_path)
    assert df.shape == (3, 5)
    assert str(df["Date"].dtype).startswith("datetime64")
    assert df["IsHoliday"].dtype == bool
    assert df.attrs["parse_errors"] == {}
    assert df["Date"].iloc[1] == pd.Timestamp("2010-02-12")


@pytest.mark.parametrize("suffix", ["csv.zip", "csv.gz"])
def test_reads_compressed_csv(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"s.{suffix}"
    if suffix.endswith("zip"):
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("s.csv", GOOD)
    else:
        path.write_bytes(gzip.compress(GOOD.encode()))
    df = read_source("sales", _src(path.name), tmp_path)
    assert len(df) == 3 and df["Weekly_Sales"].sum() == pytest.approx(121569.26)


def test_reads_parquet_by_extension_and_declared_format(tmp_path: Path) -> None:
    df = pd.read_csv(pd.io.common.StringIO(GOOD))
    df.to_parquet(tmp_path / "s.parquet")
    df.to_parquet(tmp_path / "s.bin")
    a = read_source("sales", _src("s.parquet"), tmp_path)
    b = read_source("sales", _src("s.bin", format="parquet"), tmp_path)
    assert a.equals(b) and str(a["Date"].dtype).startswith("datetime64")
    assert a.attrs["parse_errors"] == {}


def test_absolute_path_ignores_root(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text(GOOD)
    df = read_source("sales", _src(str(tmp_path / "s.csv")), Path("/nonexistent"))
    assert len(df) == 3


def test_wrong_date_format_becomes_nat_and_is_recorded(tmp_path: Path) -> None:
    text = GOOD + "".join(f"2,1,{d},1.0,FALSE\n" for d in
                          ["05/02/2010", "2010-13-01", "", "Feb 5 2010", "2010/02/05", "x", "y"])
    (tmp_path / "s.csv").write_text(text)
    df = read_source("sales", _src("s.csv"), tmp_path)
    err = df.attrs["parse_errors"]["Date"]
    assert err["count"] == 6  # the empty value is missing, not unparseable
    assert err["examples"][0] == {"row": 3, "value": "05/02/2010"}
    assert [e["row"] for e in err["examples"]] == [3, 4, 6, 7, 8]
    assert df["Date"].isna().sum() == 7


def test_parse_dates_accepts_iso8601_with_time_and_zone() -> None:
    d, bad = parse_dates(pd.Series(["2010-02-05", "2010-02-05T10:00:00", None,
                                    "2010-02-05T10:00:00+01:00", "5.2.2010"]))
    assert bad.tolist() == [False, False, False, False, True]
    assert d.iloc[1] == pd.Timestamp("2010-02-05 10:00")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"^source 'sales': file not found: .*nope\.csv$"):
        read_source("sales", _src("nope.csv"), tmp_path)


def test_empty_file_zero_bytes(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_bytes(b"")
    with pytest.raises(SourceError, match=r"source 'sales': file is empty \(0 bytes\)"):
        read_source("sales", _src("s.csv"), tmp_path)


def test_blank_lines_only(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("\n\n")
    with pytest.raises(SourceError, match="file is empty"):
        read_source("sales", _src("s.csv"), tmp_path)


def test_header_only(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text(GOOD.splitlines()[0] + "\n")
    with pytest.raises(SourceError, match="source 'sales': file has a header but no rows"):
        read_source("sales", _src("s.csv"), tmp_path)


def test_empty_csv_inside_zip(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "s.csv.zip", "w") as z:
        z.writestr("s.csv", "")
    with pytest.raises(SourceError, match="empty"):
        read_source("sales", _src("s.csv.zip"), tmp_path)


def test_declared_date_column_absent(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text(GOOD.replace("Date", "Day"))
    with pytest.raises(SourceError, match="date column 'Date' is not in s.csv; columns: "
                                          "Store, Dept, Day, Weekly_Sales, IsHoliday"):
        read_source("sales", _src("s.csv"), tmp_path)


@pytest.mark.parametrize("name,content,match", [
    ("s.parquet", b"not parquet at all", "cannot read .* as parquet"),
    ("s.csv.zip", b"not a zip", "cannot read .* as csv"),
    ("s.csv", b'a,b\n1,"unterminated\n', "cannot read .* as csv"),
    ("s.xlsx", b"whatever", "cannot tell the format of s.xlsx"),
])
def test_unreadable_format(tmp_path: Path, name: str, content: bytes, match: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(SourceError, match=match) as info:
        read_source("sales", SourceConfig(path=name), tmp_path)
    assert "\n" not in str(info.value)


def test_source_format() -> None:
    assert source_format(Path("a.CSV.GZ")) == "csv"
    assert source_format(Path("a.pq")) == "parquet"
    assert source_format(Path("a.dat"), "csv") == "csv"


# -- fingerprints ---------------------------------------------------------------------

def test_fingerprint_is_sha256_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          ) -> None:
    f, cache = tmp_path / "data.csv", tmp_path / "state" / "hashes.json"
    f.write_bytes(b"a,b\n1,2\n")
    calls: list[Path] = []
    real = fingerprint_mod._hash_file
    monkeypatch.setattr(fingerprint_mod, "_hash_file", lambda p: calls.append(p) or real(p))

    first = file_fingerprint(f, cache)
    assert first == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert file_fingerprint(f, cache) == first
    assert len(calls) == 1  # the second call came from the cache
    entry = json.loads(cache.read_text())["entries"][str(f.resolve())]
    assert entry == {"size": 8, "mtime_ns": f.stat().st_mtime_ns, "sha256": first}

    f.write_bytes(b"a,b\n1,3\n")  # same size: the mtime tells the change
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    second = file_fingerprint(f, cache)
    assert second == hashlib.sha256(b"a,b\n1,3\n").hexdigest() != first
    assert len(calls) == 2


def test_fingerprint_survives_corrupt_cache_and_no_cache(tmp_path: Path) -> None:
    f, cache = tmp_path / "x.bin", tmp_path / "hashes.json"
    f.write_bytes(b"\x00" * 3_000_000)
    cache.write_text("{not json")
    expected = hashlib.sha256(b"\x00" * 3_000_000).hexdigest()
    assert file_fingerprint(f, cache) == expected
    assert file_fingerprint(f) == expected
    assert json.loads(cache.read_text())["version"] == 1


def test_fingerprint_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot fingerprint .*: file not found"):
        file_fingerprint(tmp_path / "nope.csv", tmp_path / "c.json")


def test_parquet_with_text_and_date_object_columns(tmp_path: Path) -> None:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"Date": pa.array(["2010-02-05", "05/02/2010"]),
                      "Day": pa.array([dt.date(2010, 2, 5), None], type=pa.date32())})
    pq.write_table(table, tmp_path / "s.parquet")
    df = read_source("s", SourceConfig(path="s.parquet", dates=["Date", "Day"]), tmp_path)
    assert df.attrs["parse_errors"] == {
        "Date": {"count": 1, "examples": [{"row": 1, "value": "05/02/2010"}]}}
    assert df["Day"].iloc[0] == pd.Timestamp("2010-02-05") and pd.isna(df["Day"].iloc[1])
