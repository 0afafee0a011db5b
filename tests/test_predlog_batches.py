"""The log's Arrow reader, cd4ml.predlog.batches: the rows predictions() gives for the
same window, a schema fixed for the call, feedback joined from the rows that can match
the window only (counted, and the SQL plans checked to go through the index).

The log is written by a real PredictionLog (a forecast's feature table and inline
tabular records, three hourly segments, feedback by request id and by keys arriving in
later segments); no model is trained for it."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cd4ml import predlog
from cd4ml.predlog import FeedbackRead, PredictionLog
from cd4ml.predlog.feedback import BY_ID, BY_KEYS, KEY_FIELDS

T0 = 1_790_000_000.0
HOUR = 3600.0
DATES = ["2012-06-01", "2012-06-08"]
SERIES = [(1, 1), (1, 2), (2, 1)]  # (store, dept); table row r: series r // 2, date r % 2
NOISE = 300  # feedback for requests that are in no window of these tests


def _table() -> predlog.FeatureTable:
    X = np.arange(6 * 3, dtype="<f4").reshape(6, 3) / 4
    return predlog.FeatureTable("fc", 1, X, ["f_a", "f_b", "f_c"], ["store", "dept", "date"],
                                SERIES, DATES)


def _fc(table: predlog.FeatureTable, rid: str, rows: list[int], ts: float) -> predlog.LogRecord:
    return predlog.LogRecord(
        request_id=rid, ts=ts, model="fc", version=1, endpoint="/predict", latency_ms=1.5,
        records=(), features=None, feature_names=table.names,
        outputs=np.asarray(rows, dtype=float) * 10, table=table,
        rows=np.asarray(rows, dtype=np.int64))


def _tab(rid: str, version: int, rows: list[dict], ts: float) -> predlog.LogRecord:
    n = len(rows)
    names = ["g1", "g2"] if version == 1 else ["g1", "g3"]
    return predlog.LogRecord(
        request_id=rid, ts=ts, model="tab", version=version, endpoint="/predict",
        latency_ms=0.5, records=rows, features=np.full((n, 2), version, np.float32),
        feature_names=names, outputs=np.column_stack(
            [np.ones(n), np.full(n, 0.25), np.full(n, 0.75)]),
        output_names=["label", "p0", "p1"], arm="canary" if version == 2 else "main")


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("batches") / "log"
    now = [T0]
    table = _table()
    plog = PredictionLog(d, flush_interval_ms=60_000, rotate_hours=1, clock=lambda: now[0])

    def at(t: float) -> None:
        now[0] = T0 + t

    # hour 0: one flush holding a table record and an inline one (one mixed block)
    at(10)
    plog.append(_fc(table, "fc-0", [0, 1], T0 + 10))
    plog.append(_tab("tab-0", 1, [{"age": 30, "income": 1000.5, "city": "a"},
                                  {"age": 40, "income": 2000, "city": "b"}], T0 + 20))
    assert plog.flush()
    at(100)
    plog.add_feedback([{"request_id": "fc-0", "row": 0, "actual": 5.0},
                       {"request_id": "tab-0", "row": 1, "actual": 1.0}])
    plog.add_feedback([{"request_id": f"noise-{i}", "row": 0, "actual": float(i)}
                       for i in range(NOISE)])
    # hour 1: a block each
    at(HOUR + 10)
    plog.append(_fc(table, "fc-1", [2, 3, 4], T0 + HOUR + 10))
    assert plog.flush()
    at(HOUR + 20)
    plog.append(_tab("tab-1", 2, [{"age": 50, "income": 3, "city": 7}], T0 + HOUR + 20))
    assert plog.flush()
    at(HOUR + 100)
    plog.add_feedback([
        {"request_id": "fc-0", "row": 0, "actual": 6.0},  # later: wins over 5.0
        {"request_id": "ghost", "row": 0, "actual": 9.0},  # a prediction never made
        {"keys": {"store": 1, "dept": 2, "date": DATES[1]}, "actual": 42.0},  # fc-1 row 1
        {"keys": {"store": 2, "dept": 1, "date": DATES[1]}, "actual": 43.0},  # fc-2 row 0
        {"keys": {"store": 9, "dept": 9, "date": "2099-01-01"}, "actual": 1.0}])  # nothing
    # hour 2
    at(2 * HOUR + 10)
    plog.append(_fc(table, "fc-2", [5], T0 + 2 * HOUR + 10))
    plog.append(_tab("tab-2", 2, [{"age": 60, "income": 4.5, "city": "c"}], T0 + 2 * HOUR + 20))
    assert plog.flush()
    at(2 * HOUR + 100)
    plog.add_feedback([
        {"request_id": "tab-2", "row": 0, "reward": 0.5},
        {"request_id": "fc-1", "row": 0, "reward": 1.0},  # a window's request, fed back later
        {"keys": {"store": "1", "dept": "1", "date": DATES[0]}, "actual": 7.0},  # id wins
        {"keys": {"store": 1, "dept": 1, "date": DATES[1]}, "actual": 8.0}])  # fc-0 row 1
    plog.close()
    assert len(predlog.segments(d)) == 3
    return d


def _arrow(d: Path, **kw) -> tuple[pa.Schema, list[pa.RecordBatch], pd.DataFrame]:
    reader = predlog.batches(d, **kw)
    got = list(reader)
    table = pa.Table.from_batches(got, schema=reader.schema)
    return reader.schema, got, table.to_pandas().sort_values(
        ["request_id", "row"], ignore_index=True)


def _by_row(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["request_id", "row"], ignore_index=True)


def _same(a: pd.Series, b: pd.Series, name: str) -> None:
    if pd.api.types.is_numeric_dtype(a) and not pd.api.types.is_bool_dtype(a):
        np.testing.assert_array_equal(a.to_numpy(float, na_value=np.nan),
                                      b.to_numpy(float, na_value=np.nan), err_msg=name)
    else:
        def text(s: pd.Series) -> list:
            return [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                    for v in s.astype(object)]
        assert text(a) == text(b), name


WINDOWS = [{}, {"since": T0 + HOUR, "until": T0 + 2 * HOUR}, {"model": "tab", "version": 2},
           {"model": "fc"}, {"since": T0 + 15, "until": T0 + HOUR + 15}]


@pytest.mark.parametrize("window", WINDOWS, ids=repr)
def test_batches_hold_the_rows_predictions_gives(log_dir: Path, window: dict) -> None:
    schema, got, b = _arrow(log_dir, **window)
    p = _by_row(predlog.predictions(log_dir, **window))
    assert len(b) == len(p) > 0
    assert all(batch.schema == schema for batch in got)
    for c in ("request_id", "row", "model", "version", "arm", "endpoint", "latency_ms",
              "actual", "reward"):
        _same(b[c], p[c], c)
    assert b["ts"].tolist() == p["ts"].tolist()
    assert b["event_ts"].isna().all() and p["event_ts"].isna().all()  # none sent one
    names = schema.names
    assert [n for n in names if n.startswith("input.")]
    assert [n for n in names if n.startswith("output.")]
    for n in names:
        kind, _, field = n.partition(".")
        if kind in ("input", "output"):
            _same(b[n], p[field], n)
        elif kind == "feature":
            np.testing.assert_array_equal(b[n].to_numpy("<f4"), p[n].to_numpy("<f4"),
                                          err_msg=n)


def test_the_schema_is_fixed_for_the_call_and_typed_by_the_window(log_dir: Path) -> None:
    schema, got, b = _arrow(log_dir)
    assert len(got) == 4  # a batch per block that holds the window's records
    assert schema.names[:8] == ["request_id", "row", "ts", "model", "version", "arm",
                                "endpoint", "latency_ms"]
    assert schema.names[-3:] == ["actual", "reward", "feedback_ts"]
    types = {f.name: f.type for f in schema}
    assert types["ts"] == types["feedback_ts"] == pa.timestamp("ns", tz="UTC")
    # an int column, ints and reals (float), text and an int (string); table keys too
    assert types["input.age"] == pa.int64() and types["input.income"] == pa.float64()
    assert types["input.city"] == pa.string() and types["input.date"] == pa.string()
    assert types["input.store"] == pa.int64()
    assert {n for n in schema.names if n.startswith(("feature.", "output."))} == {
        "feature.f_a", "feature.f_b", "feature.f_c", "feature.g1", "feature.g2",
        "feature.g3", "output.prediction", "output.label", "output.p0", "output.p1"}
    assert b.loc[b.request_id == "tab-1", "input.city"].tolist() == ["7"]
    # a version without a feature has NaN there, a record without an input null
    fc = b[b.model == "fc"]
    assert fc["feature.g1"].isna().all() and fc["input.age"].isna().all()
    np.testing.assert_array_equal(fc["feature.f_a"].to_numpy(), _table().X[[0, 1, 2, 3, 4, 5], 0])
    # a model and version: its own fields and features only, typed by its values alone
    schema, _, b = _arrow(log_dir, model="tab", version=2)
    assert sorted(b["request_id"].unique()) == ["tab-1", "tab-2"]
    assert "input.store" not in schema.names and "feature.f_a" not in schema.names
    assert "feature.g2" not in schema.names and "output.prediction" not in schema.names
    assert {f.name: f.type for f in schema}["input.city"] == pa.string()


def test_feedback_is_joined_within_the_window_only(log_dir: Path) -> None:
    read = FeedbackRead()
    _, _, b = _arrow(log_dir, since=T0 + HOUR, until=T0 + 2 * HOUR, feedback_read=read)
    assert sorted(b["request_id"].unique()) == ["fc-1", "tab-1"]
    fc1 = b[b.request_id == "fc-1"].set_index("row")
    # fed back by keys in its own hour; by id from the next hour's segment
    assert fc1.loc[1, "actual"] == 42.0 and fc1.loc[0, "reward"] == 1.0
    assert pd.isna(fc1.loc[0, "actual"]) and pd.isna(fc1.loc[2, "actual"])  # 43.0: fc-2's
    assert fc1.loc[0, "feedback_ts"] == pd.Timestamp(T0 + 2 * HOUR + 100, unit="s", tz="UTC")
    assert b.loc[b.request_id == "tab-1", ["actual", "reward"]].isna().all().all()
    assert pd.isna(fc1.loc[2, "feedback_ts"])
    # only the rows that can match were read: fc-1's reward and four keyed items whose
    # every value is one the window holds, of the 300 + 11 in the log
    assert read.rows == 5 and read.segments == 3
    with_all = predlog.predictions(log_dir, since=T0 + HOUR, until=T0 + 2 * HOUR)
    assert sorted(with_all["actual"].dropna().tolist()) == [42.0]


def test_the_whole_log_joins_latest_feedback_by_id_then_keys(log_dir: Path) -> None:
    _, _, b = _arrow(log_dir)
    got = {(r.request_id, r.row): (r.actual, r.reward) for r in b.itertuples()}
    want = {("fc-0", 0): (6.0, None), ("fc-0", 1): (8.0, None), ("tab-0", 0): (None, None),
            ("tab-0", 1): (1.0, None), ("fc-1", 0): (None, 1.0), ("fc-1", 1): (42.0, None),
            ("fc-1", 2): (None, None), ("tab-1", 0): (None, None), ("fc-2", 0): (43.0, None),
            ("tab-2", 0): (None, 0.5)}
    assert {k: tuple(None if pd.isna(x) else x for x in v) for k, v in got.items()} == want
    fc0 = b[b.request_id == "fc-0"].set_index("row")["feedback_ts"]
    assert fc0[0] == pd.Timestamp(T0 + HOUR + 100, unit="s", tz="UTC")  # the 6.0
    assert fc0[1] == pd.Timestamp(T0 + 2 * HOUR + 100, unit="s", tz="UTC")


def test_feedback_for_predictions_never_made_is_ignored(log_dir: Path, tmp_path: Path) -> None:
    _, _, b = _arrow(log_dir)
    assert "ghost" not in set(b["request_id"]) and not any(
        b["request_id"].str.startswith("noise-"))
    # a log of feedback alone: no batch, no error
    with PredictionLog(tmp_path / "fb", clock=lambda: T0) as plog:
        plog.add_feedback([{"request_id": "ghost", "row": 0, "actual": 1.0},
                           {"keys": {"store": 1, "date": DATES[0]}, "actual": 2.0}])
    reader = predlog.batches(tmp_path / "fb")
    assert list(reader) == [] and len(predlog.predictions(tmp_path / "fb")) == 0


def test_an_empty_window_gives_no_batch_and_the_fixed_columns(log_dir: Path,
                                                               tmp_path: Path) -> None:
    for d, kw in [(log_dir, {"since": T0 + 10 * HOUR}), (log_dir, {"model": "nope"}),
                  (log_dir, {"since": T0 + 30, "until": T0 + 30}), (tmp_path / "none", {})]:
        reader = predlog.batches(d, **kw)
        assert list(reader) == []
        assert reader.schema.names == ["request_id", "row", "ts", "model", "version", "arm",
                                       "endpoint", "latency_ms", "event_ts", "actual",
                                       "reward", "feedback_ts"]
    assert predlog.batches(log_dir, since=T0 + 10 * HOUR).read_all().num_rows == 0


def test_inputs_features_and_feedback_can_be_left_out(log_dir: Path) -> None:
    schema, _, b = _arrow(log_dir, with_inputs=False, with_features=False)
    assert not [n for n in schema.names if n.startswith(("input.", "feature."))]
    # keyed feedback still matches: the inputs are read for the keys, not returned
    assert b.loc[(b.request_id == "fc-1") & (b.row == 1), "actual"].tolist() == [42.0]
    read = FeedbackRead()
    schema, _, b = _arrow(log_dir, feedback=False, feedback_read=read)
    assert "actual" not in schema.names and "feedback_ts" not in schema.names
    assert read == FeedbackRead()  # no feedback read at all
    assert len(b) == 10


def test_feedback_is_read_through_the_index_not_by_a_scan(log_dir: Path) -> None:
    """With 311 feedback rows in the log, a window of one request reads one; and every
    query on the feedback table searches the feedback_request index."""
    total = 0
    for _, path in predlog.segments(log_dir):
        with closing(sqlite3.connect(path)) as con:
            total += con.execute("SELECT count(*) FROM feedback").fetchone()[0]
    assert total == NOISE + 11
    for reader in (lambda r: list(predlog.batches(log_dir, model="tab", version=2,
                                                  since=T0 + 2 * HOUR, feedback_read=r)),
                   lambda r: predlog.predictions(log_dir, model="tab", version=2,
                                                 since=T0 + 2 * HOUR, feedback_read=r)):
        read = FeedbackRead()
        reader(read)
        assert read.rows == 1  # tab-2's reward; no field of keyed feedback is an input here
    path = predlog.segments(log_dir)[1][1]
    with closing(sqlite3.connect(path)) as con:
        for sql, args in [(BY_ID, ('["fc-1"]',)), (KEY_FIELDS, ()),
                          (BY_KEYS, ('["store"]', '[["store", "1"]]'))]:
            plan = " | ".join(r[3] for r in con.execute(f"EXPLAIN QUERY PLAN {sql}", args))
            assert "USING INDEX feedback_request" in plan or \
                "USING COVERING INDEX feedback_request" in plan, plan
            assert "SCAN feedback" not in plan and "SCAN f " not in f"{plan} ", plan


def test_a_call_reads_the_blocks_it_planned_while_the_log_grows(tmp_path: Path) -> None:
    """The schema is fixed by the first pass; a block written before the batches are
    read (a server still logging) is not in them, and changes no column."""
    now = [T0]
    with PredictionLog(tmp_path / "log", flush_interval_ms=60_000, clock=lambda: now[0]) as plog:
        plog.append(_tab("a", 1, [{"age": 1, "income": 2.0, "city": "x"}], T0 + 1))
        assert plog.flush()
        reader = predlog.batches(tmp_path / "log", until=T0 + 100)
        plog.append(_tab("b", 1, [{"age": "old", "zip": 2}], T0 + 2))
        plog.add_feedback([{"request_id": "a", "row": 0, "actual": 1.0}])
        assert plog.flush()
        got = reader.read_all()
    assert got["request_id"].to_pylist() == ["a"] and "input.zip" not in got.schema.names
    assert got.schema.field("input.age").type == pa.int64()
    assert got["actual"].to_pylist() == [None]  # the feedback came after the call's read
    assert predlog.batches(tmp_path / "log").read_all()["actual"].to_pylist() == [1.0, None]
