"""Monitoring windows by event time: the time a row is about, not the time it was logged.

A small ACS classifier (trained by the pipeline, with an input ``interviewed``: epoch
seconds, as a tabular model takes a date) is served in process by the real ASGI app,
writing the project's real prediction log. People of 2017 arrive within a few seconds
of log time, each request naming with ``X-Event-Time`` a day of January to April 2017
(one a day of 2099; one none), each row carrying its own ``interviewed`` time of May or
June 2017 (one request's in milliseconds, which is no time). By default the header is
the event time; with ``monitoring.event_time: interviewed`` the column is. A Walmart
forecast (the 1,001-row sample) is windowed by the date its requests name. The expected
windows come from pandas' own parsing of what was sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient
from tabular_projects import acs_project

from cd4ml.pipeline.monitor_timeline import timeline

INPUTS = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
          "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P", "interviewed"]
DAY = 86400.0
#: (request id, X-Event-Time or None, rows): the days the requests are about
SENT = [(f"m{m}-d{d}", f"2017-{m:02d}-{d:02d}T{8 + m:02d}:30:00Z", 150)
        for m in (1, 2, 3, 4) for d in (3, 17)]
SENT += [("noheader", None, 100), ("millis", "2017-04-25T12:00:00Z", 100),
         ("future", "2099-01-01", 50)]
#: the interview days the rows cycle through (the declared column's event times)
INTERVIEWED = ["2017-05-02", "2017-05-20", "2017-06-09"]
RULES = [{"name": "recent", "metric": "drift.columns", "threshold": 100, "min_rows": 50,
          "window": {"by": "event", "size": "30d"}},
         {"name": "logged", "metric": "drift.columns", "threshold": 100, "min_rows": 50,
          "window": "1d"}]
DECLARED = ["monitoring.event_time=interviewed"]


def _utc(text: str) -> pd.Timestamp:
    t = pd.Timestamp(text)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _with_interviewed(proj: Path) -> None:
    """The ACS rows with ``interviewed``: a moment of their survey year (epoch seconds),
    declared in the schema as a float input."""
    from cd4ml.data.schema import Column, Schema, load_schema, save_schema

    path = proj / "data" / "employment.parquet"
    df = pd.read_parquet(path)
    rng = np.random.default_rng(0)
    start = pd.to_datetime(df["year"].astype(str) + "-01-01", utc=True)
    df["interviewed"] = start.astype("int64").to_numpy() / 1e9 + rng.uniform(
        0, 360 * DAY, len(df))
    df.to_parquet(path, index=False)
    schema = load_schema(proj / "schema" / "acs.yaml")
    cols = [*schema.columns, Column(name="interviewed", type="float")]
    save_schema(Schema(name=schema.name, columns=cols, unique_keys=schema.unique_keys),
                proj / "schema" / "acs.yaml")


def _client(proj: Path, log_dir: Path) -> tuple[TestClient, object]:
    """The project's production version in the real app, logging to ``log_dir``."""
    from cd4ml import load_model
    from cd4ml.config import load_config
    from cd4ml.predlog import PredictionLog
    from cd4ml.serving.app import ModelHolder, create_app

    cfg, _ = load_config(proj)
    model = load_model(f"{cfg.models.name}@production", project_dir=proj)
    plog = PredictionLog(log_dir, flush_interval_ms=60_000)
    return TestClient(create_app(ModelHolder(model), plog=plog)), plog


@pytest.fixture(scope="module")
def acs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The served ACS project, its log (SENT), and a second log of requests without an
    event time (``plain``); what each request sent."""
    from cd4ml.config import load_config
    from cd4ml.pipeline.run import run_pipeline

    base = tmp_path_factory.mktemp("event-windows")
    proj = acs_project(base / "acs", rows_per_year=1000, changes={
        "evaluation": {"bootstrap": 0}, "monitoring": {"alerts": {"rules": RULES}}})
    _with_interviewed(proj)
    out = run_pipeline(proj)
    assert out.registered, out.message
    data = pd.read_parquet(proj / "data" / "employment.parquet")
    people = data[data.year.isin([2017, 2018])].sample(frac=1, random_state=0).reset_index(
        drop=True)
    cfg, _ = load_config(proj)
    client, plog = _client(proj, cfg.serving.log.folder_in(proj))
    sent, at = {}, 0
    hours = np.random.default_rng(1).uniform(0, 20 * 3600, len(people))
    for rid, header, n in SENT:
        part = people.iloc[at:at + n].copy()
        when = pd.Series(INTERVIEWED).map(_utc).to_numpy()[np.arange(at, at + n) % 3]
        part["interviewed"] = [t.timestamp() + h for t, h in zip(when, hours[at:at + n],
                                                                  strict=True)]
        if rid == "millis":
            part["interviewed"] *= 1000
        at += n
        headers = {"X-Request-Id": rid, **({"X-Event-Time": header} if header else {})}
        r = client.post("/predict", json=part[INPUTS].to_dict("records"), headers=headers)
        assert r.status_code == 200, r.text
        sent[rid] = part
    assert plog.flush()
    plog.close()
    plain = base / "plain-log"
    client, plog = _client(proj, plain)
    r = client.post("/predict", json=people.iloc[at:at + 200][INPUTS].to_dict("records"),
                    headers={"X-Request-Id": "plain"})
    assert r.status_code == 200, r.text
    assert plog.flush()
    plog.close()
    return {"project": proj, "sent": sent, "plain": plain}


def _header_times(acs: dict) -> pd.Series:
    """Each sent row's X-Event-Time (NaT without), by request id and row."""
    return pd.concat([pd.Series(_utc(h) if h else pd.NaT, index=pd.MultiIndex.from_product(
        [[rid], range(n)]), dtype="datetime64[ns, UTC]") for rid, h, n in SENT])


def _column_times(acs: dict) -> pd.Series:
    """Each sent row's ``interviewed`` as a time (NaT for the one in milliseconds)."""
    parts = []
    for rid, _, n in SENT:
        v = acs["sent"][rid]["interviewed"].to_numpy()
        t = pd.to_datetime(v, unit="s", utc=True) if rid != "millis" else [pd.NaT] * n
        parts.append(pd.Series(t, index=pd.MultiIndex.from_product([[rid], range(n)]),
                               dtype="datetime64[ns, UTC]"))
    return pd.concat(parts)


def _per_day_and_month(doc: dict) -> tuple[dict, dict]:
    days, months = {}, {}
    for w in doc["windows"]:
        start = pd.Timestamp(w["start"], unit="s", tz="UTC")
        assert w["end"] - w["start"] == DAY and w["start"] % DAY == 0  # aligned, UTC
        first, last = _utc(w["first_event"]), _utc(w["last_event"])
        assert start <= first <= last < start + pd.Timedelta(days=1), w
        days[str(start.date())] = w["rows"]
        months[start.strftime("%Y-%m")] = months.get(start.strftime("%Y-%m"), 0) + w["rows"]
    return days, months


def _expected(times: pd.Series) -> tuple[dict, dict]:
    t = times.dropna()
    return (t.dt.strftime("%Y-%m-%d").value_counts().sort_index().to_dict(),
            t.dt.strftime("%Y-%m").value_counts().sort_index().to_dict())


def test_the_header_times_cut_the_timeline_into_event_windows(acs: dict) -> None:
    proj, want = acs["project"], _header_times(acs)
    by_log = timeline(proj, by="time", size="1d")  # logged within seconds: one window
    assert [w["rows"] for w in by_log["windows"]] == [len(want)]
    doc = timeline(proj, by="event", size="1d")
    assert doc["event_time"] == "the X-Event-Time header"
    assert doc["without_event_time"] == 100  # the request without the header
    days, months = _per_day_and_month(doc)
    want_days, want_months = _expected(want)
    assert (days, months) == (want_days, want_months)
    assert months == {"2017-01": 300, "2017-02": 300, "2017-03": 300, "2017-04": 400,
                      "2099-01": 50}
    assert [w["start"] for w in doc["windows"]] == sorted(w["start"] for w in doc["windows"])
    # since/until bound event time; with them the header's window is read by batches()
    feb = _utc("2017-02-01").timestamp()
    part = timeline(proj, by="event", size="7d", since=feb, until=_utc("2017-04-01")
                    .timestamp())
    assert sum(w["rows"] for w in part["windows"]) == 600
    assert part["without_event_time"] == 100
    assert all(w["start"] % (7 * DAY) == 0 for w in part["windows"])


def test_read_window_by_event_sorts_bounds_and_keeps_the_latest(acs: dict) -> None:
    from cd4ml.config import load_config
    from cd4ml.pipeline.monitor_log import read_window

    proj = acs["project"]
    cfg, _ = load_config(proj)
    d, kw = cfg.serving.log.folder_in(proj), {"model": cfg.models.name, "version": 1}
    df = read_window(d, since=_utc("2017-02-01").timestamp(),
                     until=_utc("2017-04-01").timestamp(), by="event", cfg=cfg, **kw)
    assert sorted(set(df["request_id"])) == ["m2-d17", "m2-d3", "m3-d17", "m3-d3"]
    assert df["event_time"].is_monotonic_increasing and (df["event_time"] == df["event_ts"]
                                                         ).all()
    assert df.attrs["without_event_time"] == 100
    latest = read_window(d, since=None, until=None, last=200, by="event", cfg=cfg, **kw)
    assert latest["request_id"].value_counts().to_dict() == {
        "millis": 100, "future": 50, "m4-d17": 50}  # the latest 50 of April 17
    assert latest["event_time"].iloc[-1] == _utc("2099-01-01")
    by_log = read_window(d, since=None, until=None, last=200, **kw)  # the latest logged
    assert by_log["request_id"].value_counts().to_dict() == {
        "millis": 100, "future": 50, "noheader": 50}
    assert "event_time" not in by_log


def test_a_declared_column_is_the_event_time_before_the_header(acs: dict) -> None:
    from cd4ml.pipeline.monitor import monitor

    proj = acs["project"]
    doc = timeline(proj, DECLARED, by="event", size="1d")
    assert doc["event_time"] == "the input interviewed (monitoring.event_time)"
    # the request in milliseconds holds no time (the header it sent is not used)
    assert doc["without_event_time"] == 100
    days, months = _per_day_and_month(doc)
    assert (days, months) == _expected(_column_times(acs))
    assert set(months) == {"2017-05", "2017-06"}
    assert len(doc["windows"]) == 3
    rep = monitor(proj, DECLARED, log=True, by="event", since=_utc("2017-06-01").timestamp())
    w = rep["log"]["window"]
    assert (w["by"], w["without_event_time"]) == ("event", 100)
    assert w["note"] == "100 rows without an event time (left out)"
    assert rep["log"]["rows"] == months["2017-06"]
    assert _utc(w["first_event"]) >= _utc("2017-06-09")
    from rich.console import Console

    from cd4ml.monitoring.render import print_report

    buf = StringIO()
    print_report(Console(file=buf, width=200), rep)
    assert "100 rows without an event time" in buf.getvalue()


def test_event_rules_end_at_the_watermark_not_the_wall_clock(acs: dict) -> None:
    from cd4ml.pipeline.alerting import evaluate_alerts

    proj = acs["project"]
    res = evaluate_alerts(proj, now=time.time(), send=False)  # years after the events
    rules = {r["rule"]: r for r in res["rules"]}
    recent = rules["recent"]
    mark = _utc("2017-04-25T12:00:00Z")  # the 2099 request is after now: not the mark
    assert recent["window"]["watermark"] == mark.isoformat()
    want = _header_times(acs)
    assert recent["rows"] == int(((want > mark - pd.Timedelta(days=30)) & (want <= mark))
                                 .sum()) == 400
    assert recent["state"] == "inactive" and "insufficient" not in recent["message"]
    assert rules["logged"]["rows"] == len(want)  # log time: everything, logged just now
    # a log without event times: the event window is empty, insufficient data
    plain = evaluate_alerts(proj, [f"serving.log.dir={acs['plain']}"], now=time.time(),
                            send=False)
    rules = {r["rule"]: r for r in plain["rules"]}
    assert rules["recent"]["rows"] == 0 and rules["recent"]["window"]["watermark"] is None
    assert rules["recent"]["window"]["without_event_time"] == 200
    assert rules["recent"]["message"].startswith("insufficient data")
    assert rules["recent"]["state"] == "inactive"
    assert rules["logged"]["rows"] == 200


def _cli(proj: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cd4ml.cli", "monitor", "-p", str(proj),
                           "--no-alerts", *args], capture_output=True, text=True, timeout=300)


def test_cli_monitor_by_event(acs: dict) -> None:
    res = _cli(acs["project"], "--by", "event", "--since", "2017-02-01", "--until",
               "2017-04-01", "--json")
    assert res.returncode == 0, res.stderr
    log = json.loads(res.stdout)["log"]
    assert log["rows"] == 600
    w = log["window"]
    assert (w["by"], w["without_event_time"]) == ("event", 100)
    assert w["since"] == _utc("2017-02-01").timestamp()
    assert _utc(w["first_event"]) == _utc(SENT[2][1])  # m2-d3
    assert _utc(w["last_event"]) == _utc(SENT[5][1])  # m3-d17


@pytest.mark.parametrize(("args", "names"), [
    (["--by", "events"], ["--by 'events'", "'time'", "'event'"]),
    (["--by", "event", "--since", "2017-13-01"], ["--since '2017-13-01'", "ISO date"]),
    (["--by", "event", "--until", "soon"], ["--until 'soon'", "ISO date"]),
    (["--by", "event", "--since", "2017-07-01", "--until", "2017-01-01"],
     ["--until '2017-01-01'", "after --since '2017-07-01'"]),
])
def test_cli_bad_values_are_one_line(tmp_path: Path, args: list[str],
                                     names: list[str]) -> None:
    res = _cli(tmp_path, *args)  # refused before the project is opened
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert all(n in lines[0] for n in names), lines[0]


def test_config_event_time_is_strict() -> None:
    from cd4ml.config import validate_config
    from cd4ml.errors import ConfigError

    tab = {"project": "p", "task": "classification", "data": {"sources": {"s": {
        "path": "s.csv"}}, "main": "s", "target": "y", "id": "row"},
        "inputs": {"drop": ["when"]}, "split": {"by": "random", "holdout_share": 0.2}}
    assert validate_config({**tab, "monitoring": {"event_time": "seen"}}
                           ).monitoring.event_time == "seen"
    assert validate_config(tab).monitoring.event_time is None
    with pytest.raises(ConfigError, match=r"monitoring.event_tme.*did you mean 'event_time'"):
        validate_config({**tab, "monitoring": {"event_tme": "seen"}})
    for col in ("y", "row", "when"):
        with pytest.raises(ConfigError, match=f"event_time = '{col}': not a request field"):
            validate_config({**tab, "monitoring": {"event_time": col}})
    fc = {"project": "p", "data": {"sources": {"s": {"path": "s.csv"}}, "main": "s",
                                   "target": "y", "time": "Date", "series": ["k"]},
          "monitoring": {"event_time": "Date"}}
    with pytest.raises(ConfigError, match="a forecast's event time is the date"):
        validate_config(fc)


# -- a forecast: its event time is the date its request names ---------------------------

WEEKS = [str(d.date()) for d in pd.date_range("2012-03-02", "2012-04-27", freq="7D")]


@pytest.fixture(scope="module")
def forecast(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Walmart sample trained (one small LightGBM), a request per week served in
    process, each with an X-Event-Time a year off (the date wins)."""
    import shutil

    from conftest import EXAMPLE

    from cd4ml.config import load_config, parse_yaml
    from cd4ml.pipeline.run import run_pipeline

    proj = tmp_path_factory.mktemp("event-forecast") / "proj"
    shutil.copytree(sample_dir, proj / "data")
    shutil.copytree(EXAMPLE / "schema", proj / "schema")
    cfg = parse_yaml((EXAMPLE / "cd4ml.yaml").read_text())
    lgb = cfg["models"]["candidates"][0]
    lgb["params"].update(n_estimators=30, learning_rate=0.2, num_leaves=15,
                         min_child_samples=5, n_jobs=1)
    cfg["models"]["candidates"] = [lgb]
    cfg["evaluation"]["slices"] = ["Dept"]
    (proj / "cd4ml.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = run_pipeline(proj)
    assert out.registered, out.message
    with zipfile.ZipFile(proj / "data" / "train.csv.zip") as z:
        sales = pd.read_csv(z.open("train.csv"))
    depts = sorted(sales.Dept.unique().tolist())
    loaded, _ = load_config(proj)
    client, plog = _client(proj, loaded.serving.log.folder_in(proj))
    for k, w in enumerate(WEEKS):
        body = [{"store": 1, "dept": int(d), "date": w} for d in depts[:3 + k % 3]]
        r = client.post("/predict", json=body, headers={
            "X-Request-Id": f"week-{w}", "X-Event-Time": "2011-01-01"})
        assert r.status_code == 200, r.text
    assert plog.flush()
    plog.close()
    return proj


def test_forecast_requests_are_windowed_by_their_date(forecast: Path) -> None:
    from cd4ml.pipeline.monitor import monitor

    doc = timeline(forecast, by="event", size="7d")
    assert doc["event_time"] == "the forecast date (date)"
    assert doc["without_event_time"] == 0
    got = {str(_utc(w["first_event"]).date()): w["rows"] for w in doc["windows"]}
    assert got == {w: 3 + k % 3 for k, w in enumerate(WEEKS)}
    assert all(w["first_event"] == w["last_event"] for w in doc["windows"])
    rep = monitor(forecast, log=True, by="event", since=_utc(WEEKS[2]).timestamp(),
                  until=_utc(WEEKS[4]).timestamp())["log"]
    assert rep["rows"] == (3 + 2 % 3) + (3 + 3 % 3)
    assert rep["window"]["event_time"] == "the forecast date (date)"
    assert str(_utc(rep["window"]["last_event"]).date()) == WEEKS[3]
