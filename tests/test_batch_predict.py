"""Batch scoring (`cd4ml predict`, ``cd4ml.serving.batch.score_file``) with the real model.

Reference: ``model.predict_records`` and the HTTP ``/predict`` on the same rows. Row
numbers in messages are 1-based data rows (the first row after a CSV header is row 1).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import cd4ml
from cd4ml.errors import ConfigError, RequestError, SourceError
from cd4ml.serving.batch import score_file

MODEL = "walmart-weekly-sales"


@pytest.fixture(scope="module")
def project(trained_project: Path) -> Path:
    return trained_project


@pytest.fixture(scope="module")
def model(project: Path):
    return cd4ml.load_model(f"{MODEL}@production", project_dir=project)


def servable(model) -> pd.DataFrame:
    """Every servable (store, dept, date) of the model, as request values."""
    dates = [str((model.start + k * model.step).date()) for k in range(model.n_dates)]
    return pd.DataFrame([{"store": int(s), "dept": int(d), "date": dt}
                         for s, d in sorted(model.series_index) for dt in dates])


@pytest.fixture(scope="module")
def rows(model) -> pd.DataFrame:
    """All servable rows in a seeded order, 226 of them repeated; mixed-case headers and
    two pass-through columns."""
    base = servable(model)
    rng = np.random.default_rng(7)
    idx = np.concatenate([rng.permutation(len(base)), rng.integers(len(base), size=226)])
    df = base.iloc[idx].reset_index(drop=True)
    return pd.DataFrame({"Store": df["store"], "DEPT": df["dept"], "date": df["date"],
                         "row_id": np.arange(len(df)), "note": [f"n{i}" for i in range(len(df))]})


@pytest.fixture(scope="module")
def expected(model, rows: pd.DataFrame) -> np.ndarray:
    recs = rows[["Store", "DEPT", "date"]].rename(columns=str.lower).to_dict("records")
    return model.predict_records(recs)


def write(rows: pd.DataFrame, path: Path, variant: str = "") -> Path:
    t = pa.Table.from_pandas(rows, preserve_index=False)
    if variant == "csv":
        rows.to_csv(path, index=False)
    elif variant == "csv.gz":
        rows.to_csv(path, index=False, compression="gzip")
    elif variant == "date32":
        pq.write_table(t.set_column(2, "date", pc.cast(pc.strptime(t["date"], "%Y-%m-%d", "s"),
                                                      pa.date32())), path)
    elif variant == "timestamp":
        pq.write_table(t.set_column(2, "date", pc.strptime(t["date"], "%Y-%m-%d", "ns")), path)
    elif variant == "float-and-text-keys":
        t = t.set_column(0, "Store", pc.cast(t["Store"], pa.float64()))
        pq.write_table(t.set_column(1, "DEPT", pc.cast(t["DEPT"], pa.string())), path)
    else:
        pq.write_table(t, path, row_group_size=500)
    return path


@pytest.mark.parametrize("variant, suffix", [
    ("csv", "csv"), ("csv.gz", "csv.gz"), ("", "parquet"), ("date32", "parquet"),
    ("timestamp", "parquet"), ("float-and-text-keys", "parquet")])
def test_predictions_equal_predict_records(model, rows, expected, tmp_path: Path,
                                           variant: str, suffix: str) -> None:
    src = write(rows, tmp_path / f"rows.{suffix}", variant)
    seen: list[tuple[int, int | None]] = []
    summary = score_file(model, src, tmp_path / "out.parquet",
                         progress=lambda n, total: seen.append((n, total)))
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.column_names == ["Store", "DEPT", "date", "row_id", "note", "prediction"]
    assert out["prediction"].type == pa.float64()
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected)
    assert out["row_id"].to_pylist() == rows["row_id"].tolist()
    meta = out.schema.metadata
    assert meta[b"cd4ml.model"] == MODEL.encode()
    assert meta[b"cd4ml.model_version"] == str(model.version).encode()
    assert summary["rows"] == summary["predicted"] == len(rows) and summary["skipped"] == 0
    assert seen[-1] == (len(rows), None if suffix.startswith("csv") else len(rows))
    if suffix.startswith("csv"):  # CSV keys are written typed as the model's signature says
        assert out["Store"].type == pa.int64() and out["DEPT"].type == pa.int64()


def test_predictions_equal_the_http_api(model, rows, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from cd4ml.serving.app import ModelHolder, create_app

    score_file(model, write(rows, tmp_path / "rows.csv", "csv"), tmp_path / "out.parquet")
    recs = rows[["Store", "DEPT", "date"]].rename(columns=str.lower).to_dict("records")
    res = TestClient(create_app(ModelHolder(model))).post("/predict", json=recs)
    assert res.status_code == 200, res.text
    got = pq.read_table(tmp_path / "out.parquet")["prediction"].to_numpy()
    np.testing.assert_array_equal(got, np.asarray(res.json()["predictions"]))


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_small_chunks_give_identical_output(model, rows, tmp_path: Path, suffix: str) -> None:
    src = write(rows, tmp_path / f"rows.{suffix}", "csv" if suffix == "csv" else "")
    one = score_file(model, src, tmp_path / "one.parquet")
    many = score_file(model, src, tmp_path / "many.parquet", chunk_rows=7)
    assert one["rows"] == many["rows"] == len(rows)
    assert pq.read_table(tmp_path / "many.parquet").equals(pq.read_table(tmp_path / "one.parquet"))
    assert pq.ParquetFile(tmp_path / "many.parquet").metadata.num_row_groups == -(-len(rows) // 7)


def bad_csv(rows: pd.DataFrame, path: Path) -> Path:
    """Data row 100 has a date that is not a week date, row 103 a department 'one'."""
    df = rows.astype({"DEPT": object})
    df.loc[99, "date"] = "2012-11-01"
    df.loc[102, "DEPT"] = "one"
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("chunk_rows", [7, 100_000])
def test_bad_row_fails_naming_row_field_value_and_leaves_no_file(
        model, rows, tmp_path: Path, chunk_rows: int) -> None:
    src = bad_csv(rows, tmp_path / "rows.csv")
    (tmp_path / "kept.parquet").write_bytes(b"an older result")
    for dst in (tmp_path / "out.parquet", tmp_path / "kept.parquet"):
        with pytest.raises(RequestError) as info:
            score_file(model, src, dst, chunk_rows=chunk_rows)
        msg = str(info.value)
        assert msg.startswith("rows.csv row 100: date = '2012-11-01': not a week date"), msg
        assert "\n" not in msg
        first = info.value.errors[0]
        assert (first["row"], first["loc"], first["field"]) == (100, "row 100.date", "date")
        assert {e["row"] for e in info.value.errors} == {100, 103}
    assert not (tmp_path / "out.parquet").exists()
    assert (tmp_path / "kept.parquet").read_bytes() == b"an older result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.parquet", "rows.csv"]


def test_skip_invalid_writes_nulls_and_the_problem(model, rows, expected,
                                                   tmp_path: Path) -> None:
    src = bad_csv(rows, tmp_path / "rows.csv")
    summary = score_file(model, src, tmp_path / "out.parquet", chunk_rows=50, skip_invalid=True)
    assert (summary["rows"], summary["skipped"]) == (len(rows), 2)
    out = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert list(out.columns)[-2:] == ["prediction", "error"]
    bad = out["prediction"].isna()
    assert list(np.flatnonzero(bad)) == [99, 102]
    assert out.loc[99, "error"].startswith("date = '2012-11-01': not a week date")
    assert out.loc[102, "error"] == "dept = 'one': expected a number"
    assert pd.isna(out.loc[102, "DEPT"])  # typed int64 in the output; "one" is not one
    assert out["error"].isna().sum() == len(rows) - 2
    np.testing.assert_array_equal(out["prediction"][~bad].to_numpy(), expected[~bad.to_numpy()])


def test_missing_or_ambiguous_column(model, rows, tmp_path: Path) -> None:
    src = write(rows.rename(columns={"date": "week"}), tmp_path / "rows.parquet")
    with pytest.raises(SourceError, match=r"no column 'date' .*columns found: \['Store', "
                                          r"'DEPT', 'week', 'row_id', 'note'\]"):
        score_file(model, src, tmp_path / "out.parquet")
    src = write(rows.assign(STORE=rows["Store"]), tmp_path / "two.parquet")
    with pytest.raises(SourceError, match=r"columns \['Store', 'STORE'\] all match .*'store'"):
        score_file(model, src, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_bad_paths_and_files(model, rows, tmp_path: Path) -> None:
    good = write(rows, tmp_path / "rows.parquet")
    (tmp_path / "rows.xlsx").write_text("x")
    (tmp_path / "junk.parquet").write_text("not parquet")
    (tmp_path / "empty.csv").write_text("")
    cases = [
        (tmp_path / "rows.xlsx", "out.parquet", SourceError, "unsupported input type '.xlsx'"),
        (tmp_path / "nope.csv", "out.parquet", SourceError, "input file not found"),
        (tmp_path / "junk.parquet", "out.parquet", SourceError, "not a readable PARQUET file"),
        (tmp_path / "empty.csv", "out.parquet", SourceError, "not a readable CSV file"),
        (good, "out.csv", ConfigError, "must end in .parquet"),
        (good, "no/such/dir/out.parquet", ConfigError, "does not exist"),
    ]
    for src, dst, exc, text in cases:
        with pytest.raises(exc, match=text):
            score_file(model, src, tmp_path / dst)
    with pytest.raises(ConfigError, match="chunk_rows = 0: must be >= 1"):
        score_file(model, good, tmp_path / "out.parquet", chunk_rows=0)
    clash = write(rows.assign(prediction=1.0), tmp_path / "clash.parquet")
    with pytest.raises(SourceError, match="already has a column 'prediction'"):
        score_file(model, clash, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cd4ml.cli", "predict", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli(project: Path, rows, expected, tmp_path: Path) -> None:
    src = write(rows, tmp_path / "rows.csv", "csv")
    res = cli("--input", str(src), "--output", str(tmp_path / "out.parquet"), "-p", str(project))
    assert res.returncode == 0, res.stderr
    assert f"scored {len(rows):,} rows" in res.stdout and f"{MODEL}@v1" in res.stdout
    got = pq.read_table(tmp_path / "out.parquet")["prediction"].to_numpy()
    np.testing.assert_array_equal(got, expected)

    bad = bad_csv(rows, tmp_path / "bad.csv")
    res = cli("-i", str(bad), "-o", str(tmp_path / "bad.parquet"), "-p", str(project),
              "--chunk-rows", "7")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bad.csv row 100: date = "), res.stderr
    assert "--skip-invalid" in lines[0]
    assert not (tmp_path / "bad.parquet").exists()

    res = cli("-i", str(bad), "-o", str(tmp_path / "bad.parquet"), "-p", str(project),
              "--skip-invalid", "--model", f"{MODEL}/1", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert (doc["rows"], doc["skipped"], doc["version"]) == (len(rows), 2, 1)
    assert "skipped 2 invalid row(s)" in res.stderr

    res = cli("-i", str(tmp_path / "rows.csv"), "-o", str(tmp_path / "x.txt"), "-p", str(project))
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"error: output = '{tmp_path / 'x.txt'}': must end in .parquet (batch scoring writes "
        f"Parquet)"]


_MEASURE = """
import gc, json, sys
import cd4ml
from cd4ml.serving.batch import score_file

def status_mb(key):  # VmRSS: now; VmHWM: the peak (ru_maxrss also counts the parent's
    with open("/proc/self/status") as f:  # RSS at fork, and cannot be reset)
        return next(int(x.split()[1]) for x in f if x.startswith(key + ":")) / 1024

model = cd4ml.load_model("{model}@production", project_dir=sys.argv[1])
gc.collect()
with open("/proc/self/clear_refs", "w") as f:  # Linux: the peak restarts from now
    f.write("5")
before, after_chunk = status_mb("VmRSS"), []
summary = score_file(model, sys.argv[2], sys.argv[3], chunk_rows=100_000,
                     progress=lambda n, total: after_chunk.append(status_mb("VmRSS")))
peak = status_mb("VmHWM")
print(json.dumps({{"growth_mb": peak - before, "rss_mb": after_chunk, **summary}}))
""".format(model=MODEL)


def test_memory_stays_bounded(project: Path, model, tmp_path: Path) -> None:
    """3M rows (~500 MB as Arrow, the input's most compact form in memory) scored in
    chunks of 100,000: peak RSS grows by well under half of that, and stops growing
    after the first chunks (a leak or an accumulating buffer grows it every chunk)."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to reset and read the peak RSS")
    n = 3_000_000
    base = servable(model)
    rng = np.random.default_rng(0)
    src, in_memory = tmp_path / "big.parquet", 0.0
    schema = pa.schema([("store", pa.int64()), ("dept", pa.int64()), ("date", pa.string()),
                        ("note", pa.string())])
    with pq.ParquetWriter(src, schema) as w:
        for lo in range(0, n, 500_000):
            pick = base.iloc[rng.integers(len(base), size=min(500_000, n - lo))]
            ids = pc.cast(pa.array(np.arange(lo, lo + len(pick))), pa.string())
            note = pc.binary_join_element_wise("order ", ids, ": " + "x" * 120, "")
            t = pa.Table.from_pandas(pick, preserve_index=False).append_column("note", note)
            in_memory += t.nbytes / 2**20
            w.write_table(t.cast(schema), row_group_size=100_000)
    res = subprocess.run([sys.executable, "-c", _MEASURE, str(project), str(src),
                          str(tmp_path / "out.parquet")], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["rows"] == n and doc["skipped"] == 0
    assert pq.ParquetFile(tmp_path / "out.parquet").metadata.num_rows == n
    rss = doc["rss_mb"]  # once before the first chunk, then after each of the 30
    assert doc["growth_mb"] < 0.5 * in_memory, (doc["growth_mb"], in_memory)
    assert max(rss[len(rss) // 2:]) - max(rss[2:6]) < 0.15 * in_memory, (rss, in_memory)
