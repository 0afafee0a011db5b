"""ACS employment served, 2017 and 2018 replayed as traffic, labels arriving later.

The example trained on 2015 (holdout 2016) serves as a real process; people of 2017 and
2018 arrive as /predict requests, their employment later as /feedback. What happened:
small input shifts and an unchanged quality (the realized ROC AUC stays 0.90-0.91). So
``cd4ml monitor`` must find no drifted column, no prediction drift, no skew, a quality
within a few thousandths of the holdout's and an estimate (without labels) near the
realized figure. Then the same 2018 with AGEP + 10 years (at most 99, the schema's bound) must drift, and vectors altered
between the training path and the log must show as skew.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import start_server, stop_server

from cd4ml.pipeline.monitor import monitor
from cd4ml.pipeline.run import open_project

pytestmark = pytest.mark.slow
INPUTS = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
          "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]
BATCH = 1000


def _replay(url: str, frame: pd.DataFrame, tag: str) -> None:
    """Every row as /predict traffic (BATCH rows a request), then its label as feedback."""
    with httpx.Client(base_url=url, timeout=60) as c:
        sent = []
        for k, start in enumerate(range(0, len(frame), BATCH)):
            part = frame.iloc[start:start + BATCH]
            rid = f"{tag}-{k}"
            r = c.post("/predict", json=part[INPUTS].to_dict("records"),
                       headers={"X-Request-Id": rid})
            assert r.status_code == 200, r.text
            sent.append((rid, part.employed.tolist()))
        for i in range(0, len(sent), 20):
            items = [{"request_id": rid, "actuals": ys} for rid, ys in sent[i:i + 20]]
            r = c.post("/feedback", json=items)
            assert r.status_code == 200, r.text


class _Receiver(BaseHTTPRequestHandler):
    """A webhook receiver on loopback: keeps every JSON body POSTed to it."""

    bodies: list = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        n = int(self.headers.get("Content-Length", 0))
        type(self).bodies.append(json.loads(self.rfile.read(n)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/alerts", _Receiver.bodies
    srv.shutdown()


@pytest.fixture(scope="module")
def replayed(employment_project: Path, receiver) -> dict:
    from cd4ml.pipeline.alerting import evaluate_alerts

    data = pd.read_parquet(employment_project / "data" / "employment.parquet")
    hook = [f"monitoring.alerts.webhook.url={receiver[0]}"]
    # the rules are evaluated here, between the phases (no evaluator inside the server)
    proc, url = start_server(employment_project, "--set", "monitoring.interval_s=0")
    marks, alerts = {}, {}
    try:
        marks["start"] = time.time()
        # 2017 and 2018 in a random order of arrival (the file is sorted by household)
        _replay(url, data[data.year.isin([2017, 2018])].sample(frac=1, random_state=0),
                "plain")
        time.sleep(1.0)  # the writer flushes every 200 ms
        marks["shifted"] = time.time()
        alerts["plain"] = evaluate_alerts(employment_project, hook, now=marks["shifted"])
        # aged ten years, at most the schema's 99 (the server refuses older: a 422)
        _replay(url, data[data.year == 2018].assign(AGEP=lambda d: (d.AGEP + 10).clip(
            upper=99)), "older")
        time.sleep(1.0)
        marks["end"] = time.time()
        alerts["older"] = evaluate_alerts(employment_project, hook, now=marks["end"])
    finally:
        stop_server(proc)
    return {"project": employment_project, "marks": marks, "data": data, "alerts": alerts,
            "hook": hook}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def test_replayed_years_raise_nothing_and_quality_holds(replayed) -> None:
    m = replayed["marks"]
    res = subprocess.run([sys.executable, "-m", "cd4ml.cli", "monitor", "-p",
                          str(replayed["project"]), "--json", "--since", _iso(m["start"]),
                          "--until", _iso(m["shifted"])], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    log = json.loads(res.stdout)["log"]
    d = replayed["data"]
    assert log["rows"] == int(d.year.isin([2017, 2018]).sum())
    assert log["drift"]["drifted"] == [], log["drift"]["drifted"]
    assert log["prediction"]["drifted"] == []
    metrics = log["metrics"]
    print(json.dumps(metrics))  # the figures of the issue note (pytest -s)
    assert 0.90 <= metrics["quality.roc_auc"] <= 0.915
    assert metrics["quality.degradation"] < 0.01
    assert abs(metrics["estimated.roc_auc"] - metrics["quality.roc_auc"]) < 0.02
    assert log["skew"]["state"] == "ok" and metrics["skew.share"] == 0.0
    groups = log["quality"]["report"]["groups"]
    assert {g["column"] for g in groups} >= {"SEX", "RAC1P"} if isinstance(groups, list) \
        else {"SEX", "RAC1P"} <= set(groups)


def test_an_aged_population_drifts(replayed) -> None:
    m = replayed["marks"]
    doc = monitor(replayed["project"], ["monitoring.drift.multivariate=true"], log=True,
                  since=m["shifted"], until=m["end"])
    log = doc["log"]
    assert log["drift"]["drifted"] == ["AGEP"]
    assert log["multivariate"]["state"] == "drifted"  # the columns together, too
    plain = monitor(replayed["project"], ["monitoring.drift.multivariate=true"], log=True,
                    since=m["start"], until=m["shifted"])["log"]
    assert plain["multivariate"]["state"] == "ok", plain["multivariate"]
    assert log["metrics"]["drift.columns"] == 1
    age = log["drift"]["columns"]["AGEP"]
    assert age["score"] > 0.4 and age["companion"]["score"] < 1e-12


def test_vectors_altered_after_the_training_path_are_skew(replayed, tmp_path) -> None:
    from cd4ml.predlog import LogRecord, PredictionLog
    from cd4ml.registry.bundle import load_tabular_parts

    proj = replayed["project"]
    cfg, _, stores, root = open_project(proj)
    with stores:
        v = stores.metadata.resolve(cfg.models.name, "production")
        predictor, spec, transform, _, _ = load_tabular_parts(
            stores.artifacts, stores.artifacts.get_json(v["digest"]))
    rows = replayed["data"][replayed["data"].year == 2018].head(300)
    X = transform.matrix(rows[INPUTS])
    j = transform.feature_names.index("SCHL")
    X[:100, j] += 1  # a server bug: one feature off by one code for a third of the rows
    P = np.asarray(predictor.predict(X), dtype=np.float64).reshape(len(X), -1)
    outs = np.column_stack([(P[:, 1] >= 0.5).astype(float), P[:, 0], P[:, 1]])
    t0 = time.time()
    plog = PredictionLog(cfg.serving.log.folder_in(root))
    plog.append(LogRecord(request_id="skewed", ts=t0, model=cfg.models.name,
                          version=v["version"], endpoint="/predict", latency_ms=1.0,
                          records={c: rows[c].tolist() for c in INPUTS}, features=X,
                          feature_names=transform.feature_names, outputs=outs,
                          output_names=("label", "probability_0", "probability_1")))
    plog.close()
    skew = monitor(proj, log=True, since=t0 - 1)["log"]["skew"]
    assert skew["state"] == "skewed", skew["message"]
    assert skew["skewed_features"] == ["SCHL"]
    assert skew["share"] == pytest.approx(100 / 300)
    ex = skew["features"]["SCHL"]["examples"][0]
    assert ex["request_id"] == "skewed" and ex["served"] == ex["training_path"] + 1


def test_default_rules_stay_quiet_then_fire_on_the_aged_population(replayed, receiver) -> None:
    plain = {r["rule"]: r for r in replayed["alerts"]["plain"]["rules"]}
    assert not [r for r in plain.values() if r["state"] in ("firing", "pending")], plain
    assert plain["input_drift"]["value"] == 0 and plain["skew"]["value"] == 0
    older = {r["rule"]: r for r in replayed["alerts"]["older"]["rules"]}
    assert older["input_drift"]["state"] == "firing", older["input_drift"]
    fired = [b for b in receiver[1] if b.get("status") == "firing"
             or any(a.get("status") == "firing" for a in b.get("alerts", []))]
    assert fired, receiver[1]
    # the states survive: a later `cd4ml monitor` (a new process) shows the alert firing
    res = subprocess.run([sys.executable, "-m", "cd4ml.cli", "monitor", "-p",
                          str(replayed["project"]), "--json", "--last", "1000",
                          *sum((["--set", h] for h in replayed["hook"]), [])],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)["alerts"]
    firing = [a["rule"] for a in doc["alerts"] if a["state"] == "firing"]
    assert "input_drift" in firing
