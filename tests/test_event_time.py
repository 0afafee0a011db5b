"""A request's event time: sent as ``X-Event-Time``, logged with its predictions, read
back by the log's readers (``event_ts``), and a window by it.

Through the real ASGI app in process (a wine classifier fitted by the adapters, a real
PredictionLog): /predict, OIP v2 infer and /invocations with and without the header;
malformed values refused with a 400 naming the header and not logged. The log side
with a real PredictionLog: a segment of log format 2 (records without event times, as
that writer made them) reads as null, and is raised to format 3 by a writer appending
to it; the event window of batches() and predictions(). The expected times come from
pandas' own parsing of the same text.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from tabular_servables import records, servable, wine_parts, write_project

from cd4ml import predlog
from cd4ml.predlog import PredictionLog
from cd4ml.predlog.segments import LOG_FORMAT, M_EVENT, segments
from cd4ml.serving.app import ModelHolder, create_app

UTC_TS = pa.timestamp("ns", tz="UTC")


def _at(text: str) -> pd.Timestamp:
    """The instant ``text`` names, as pandas reads it (UTC unless it gives an offset)."""
    t = pd.Timestamp(text)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


@pytest.fixture(scope="module")
def wine():
    parts, df = wine_parts()
    return servable(parts, "wine"), df


@pytest.fixture()
def served(wine, tmp_path: Path):
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=60_000)
    client = TestClient(create_app(ModelHolder(wine[0]), plog=plog))
    yield client, plog, tmp_path / "log"
    plog.close()


def _calls(m, df: pd.DataFrame) -> dict[str, tuple[str, dict]]:
    """One request of each predicting protocol: (path, JSON body), 3 rows each."""
    rows = df.sample(3, random_state=0)
    M = rows[m.fields].to_numpy(np.float64)
    return {"predict": ("/predict", records(rows, m.fields)),
            "v2": (f"/v2/models/{m.name}/infer", {"inputs": [
                {"name": "input-0", "shape": list(M.shape), "datatype": "FP64",
                 "data": M.reshape(-1).tolist()}]}),
            "mlflow": ("/invocations", {"dataframe_records": records(rows, m.fields)})}


def _logged(d: Path) -> pd.DataFrame:
    return predlog.batches(d).read_all().to_pandas()


SENT = {"date": "2018-03-01", "utc": "2018-03-01T10:00:00Z",
        "offset": "2018-03-01T12:00:00+02:00", "naive": "2018-03-01 10:30",
        "epoch": "1519898400.5"}


def test_the_header_is_logged_with_every_protocols_predictions(served, wine) -> None:
    client, plog, d = served
    calls = _calls(*wine)
    want: dict[str, pd.Timestamp | None] = {}
    for proto, (path, body) in calls.items():
        for form, value in SENT.items():
            rid = f"{proto}-{form}"
            res = client.post(path, json=body,
                              headers={"x-request-id": rid, "X-Event-Time": value})
            assert res.status_code == 200, res.text
            want[rid] = pd.Timestamp(float(value), unit="s", tz="UTC") \
                if form == "epoch" else _at(value)
        res = client.post(path, json=body, headers={"x-request-id": f"{proto}-none"})
        assert res.status_code == 200, res.text
        want[f"{proto}-none"] = None
    assert plog.flush()
    reader = predlog.batches(d)
    assert reader.schema.field("event_ts").type == UTC_TS
    got = reader.read_all().to_pandas()
    assert sorted(set(got["request_id"])) == sorted(want)
    for rid, when in want.items():
        ev = got.loc[got["request_id"] == rid, "event_ts"]
        assert len(ev) == 3, rid
        assert (ev.isna().all() if when is None else (ev == when).all()), (rid, ev.tolist())
    assert want["predict-offset"] == want["predict-utc"]  # the offset is honoured
    # predictions() and query() give the same times
    p = predlog.predictions(d)
    assert str(p["event_ts"].dtype) == "datetime64[ns, UTC]"
    for rid, when in want.items():
        ev = p.loc[p["request_id"] == rid, "event_ts"]
        assert (ev.isna().all() if when is None else (ev == when).all()), rid
    q = {r["request_id"]: r["event_ts"] for r in predlog.query(d)}
    assert q["predict-epoch"] == 1519898400.5 and q["v2-none"] is None
    assert q["mlflow-date"] == _at("2018-03-01").timestamp()


BAD = ["yesterday", "2018-13-01", "2018-03-01T25:00", "", "nan", "inf",
       "1519898400000",  # milliseconds: the year 50,000
       "1e300", "0x5a9"]


def test_a_malformed_header_is_refused_naming_it_and_nothing_is_logged(served,
                                                                        wine) -> None:
    client, plog, d = served
    calls = _calls(*wine)
    for k, value in enumerate(BAD):
        for proto, (path, body) in calls.items():
            res = client.post(path, json=body, headers={
                "x-request-id": f"bad-{proto}-{k}", "X-Event-Time": value})
            assert res.status_code == 400, (proto, value, res.text)
            out = res.json()
            msg = {"predict": lambda o: o["detail"], "v2": lambda o: o["error"],
                   "mlflow": lambda o: o["message"]}[proto](out)
            assert f"X-Event-Time = {value!r}" in msg, msg
            assert "ISO 8601" in msg and "epoch seconds" in msg, msg
            if proto == "predict":  # the house list of errors: field, value, problem
                (err,) = out["errors"]
                assert (err["field"], err["value"], err["loc"]) == (
                    "x-event-time", value, "header.x-event-time")
    ok = client.post("/predict", json=calls["predict"][1],
                     headers={"x-request-id": "good", "X-Event-Time": "2018-03-01"})
    assert ok.status_code == 200
    assert plog.flush()
    assert set(_logged(d)["request_id"]) == {"good"}
    assert plog.counts()["written"] == 1


def _record(rid: str, ts: float, *, event: float | None = None, classes: bool = False,
            body: bytes = b"{}") -> predlog.LogRecord:
    n = 2
    outputs = np.column_stack([np.ones(n), np.full(n, 0.25), np.full(n, 0.75)]) if classes \
        else np.array([1.5, 2.5])
    return predlog.LogRecord(
        request_id=rid, ts=ts, model="tab", version=1, endpoint="/predict", latency_ms=0.5,
        records=[{"x": 1}, {"x": 2}], features=np.ones((n, 2), np.float32),
        feature_names=["f1", "f2"], outputs=outputs, content_type="application/json",
        request=body, output_names=["label", "p0", "p1"] if classes else (), event_ts=event)


T0 = 1_790_000_000.0  # when the records were logged (2026)


def test_a_segment_of_log_format_2_reads_as_without_event_times(tmp_path: Path) -> None:
    d = tmp_path / "log"
    now = [T0 + 10]
    with PredictionLog(d, flush_interval_ms=60_000, clock=lambda: now[0]) as plog:
        plog.append(_record("old-1", T0 + 10))
        plog.append(_record("old-2", T0 + 11, classes=True, body=b"x" * 100))
        assert plog.flush()
    ((_, seg),) = segments(d)
    with closing(sqlite3.connect(seg)) as con:
        (meta,) = con.execute("SELECT meta FROM blocks").fetchone()
        # the lists a format-2 writer made (no M_EVENT), and its format
        assert [len(m) for m in json.loads(meta)] == [13, 15]
        con.execute("PRAGMA user_version = 2")
    b = predlog.batches(d).read_all().to_pandas()
    assert b["request_id"].tolist() == ["old-1"] * 2 + ["old-2"] * 2
    assert b["event_ts"].isna().all()
    assert b["output.p1"].tolist()[2:] == [0.75, 0.75]  # the M_OUT record still decodes
    assert predlog.predictions(d)["event_ts"].isna().all()
    assert [r["event_ts"] for r in predlog.query(d)] == [None, None]
    assert predlog.batches(d, event_since=0).read_all().num_rows == 0
    # a writer appending to it raises it to format 3; both kinds of record read
    now[0] = T0 + 20
    with PredictionLog(d, flush_interval_ms=60_000, clock=lambda: now[0]) as plog:
        plog.append(_record("new", T0 + 20, event=1519862400.0))
        assert plog.flush()
    assert [p for _, p in segments(d)] == [seg]
    with closing(sqlite3.connect(seg)) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == LOG_FORMAT == 3
    b = predlog.batches(d).read_all().to_pandas()
    ev = dict(zip(b["request_id"], b["event_ts"], strict=False))
    assert pd.isna(ev["old-1"]) and pd.isna(ev["old-2"])
    assert ev["new"] == _at("2018-03-01")


def test_the_event_window_of_batches_and_predictions(tmp_path: Path) -> None:
    proj = write_project(tmp_path / "proj", name="tab", task="classification",
                         target="y")
    d = proj / ".cd4ml" / "predictions"  # the project's log (serving.log.dir's default)
    now = [T0]
    day = 86_400.0
    e0 = _at("2018-03-01").timestamp()
    # (request id, logged at, event time): two hourly segments, event times unrelated to
    # the log's order; a classifier's record (M_OUT) and a truncated body among them
    recs = [("a", 10, e0), ("b", 20, None), ("c", 30, e0 + day),
            ("d", 3600 + 10, e0 + 2 * day), ("e", 3600 + 20, e0 - day),
            ("f", 3600 + 30, None), ("g", 3600 + 40, e0 + day)]
    body = b'{"x": "' + b"y" * 200 + b'"}'
    with PredictionLog(d, flush_interval_ms=60_000, rotate_hours=1, max_stored_body_bytes=64,
                       clock=lambda: now[0]) as plog:
        for k, (rid, t, ev) in enumerate(recs):
            now[0] = T0 + t
            plog.append(_record(rid, T0 + t, event=ev, classes=k % 2 == 0,
                                body=body if rid == "c" else b"{}"))
            if rid in ("c", "g"):
                assert plog.flush()
    assert len(segments(d)) == 2

    def ids(**window) -> list[str]:
        got = predlog.batches(d, **window).read_all().to_pandas()
        p = predlog.predictions(d, **window)
        assert sorted(set(p["request_id"])) == sorted(set(got["request_id"]))
        return sorted(set(got["request_id"]))

    assert ids() == list("abcdefg")
    assert ids(event_since=e0, event_until=e0 + 2 * day) == ["a", "c", "g"]
    assert ids(event_since=e0 + day) == ["c", "d", "g"]
    assert ids(event_until=e0) == ["e"]  # the bound is exclusive; no event time: out
    assert ids(event_since=e0 - 10 * day) == list("acdeg")
    assert ids(event_since=e0, since=T0 + 3600) == ["d", "g"]
    assert ids(event_since=e0 + 5 * day) == []
    b = predlog.batches(d, event_since=e0).read_all().to_pandas()
    assert b.groupby("request_id")["event_ts"].first().to_dict() == {
        "a": _at("2018-03-01"), "c": _at("2018-03-02"), "d": _at("2018-03-03"),
        "g": _at("2018-03-02")}
    # the records padded to M_EVENT decode as before: outputs, truncated bodies
    c = b[b["request_id"] == "c"]
    assert c["output.label"].tolist() == [1.0, 1.0] and c["output.p1"].tolist() == [.75, .75]
    assert b.loc[b["request_id"] == "d", "output.prediction"].tolist() == [1.5, 2.5]
    p = predlog.predictions(d, event_since=e0, with_request=True)
    pc = p[p["request_id"] == "c"].iloc[0]
    assert pc["request_length"] == len(body)
    assert pc["request_sha256"] == hashlib.sha256(body).hexdigest()
    assert M_EVENT == 15
    # cd4ml log query shows it (a column of its own when any request has one)
    cli = [sys.executable, "-m", "cd4ml.cli", "log", "query", "-p", str(proj)]
    env = {**os.environ, "COLUMNS": "300"}
    shown = subprocess.run(cli, capture_output=True, text=True, timeout=60, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "event time (UTC)" in shown.stdout and "2018-03-03 00:00:00" in shown.stdout
    listed = subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=60)
    assert {r["request_id"]: r["event_ts"] for r in json.loads(listed.stdout)} == {
        rid: ev for rid, _, ev in recs}
