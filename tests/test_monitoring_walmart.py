"""Walmart, trained on the weeks up to 2011-10-28; then the real files arrive cut later.

The MarkDown1-5 columns of features.csv are empty before November 2011 and filled after:
the new snapshots must show their onset (missing rate 100 % in the reference, low in the
new weeks), and a snapshot cut inside the training period must raise nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import EXAMPLE

from cd4ml.config import parse_yaml
from cd4ml.monitoring import reference_of
from cd4ml.pipeline.monitor import monitor
from cd4ml.pipeline.run import open_project, run_pipeline

pytestmark = [pytest.mark.full_data, pytest.mark.slow]
TRAIN_END = "2011-10-28"
MARKDOWNS = [f"MarkDown{k}" for k in range(1, 6)]


def _cut(full: Path, dest: Path, end: str) -> None:
    """The real files as they stood on ``end``: sales and features up to that week."""
    dest.mkdir(parents=True, exist_ok=True)
    sales = pd.read_csv(full / "train.csv.zip")
    sales[sales.Date <= end].to_csv(dest / "train.csv.zip", index=False,
                                    compression={"method": "zip", "archive_name": "train.csv"})
    feats = pd.read_csv(full / "features.csv")
    feats[feats.Date <= end].to_csv(dest / "features.csv", index=False)
    shutil.copyfile(full / "stores.csv", dest / "stores.csv")


@pytest.fixture(scope="module")
def project(full_walmart: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    proj = tmp_path_factory.mktemp("walmart-monitor") / "proj"
    _cut(full_walmart, proj / "data", TRAIN_END)
    cfg = parse_yaml((EXAMPLE / "cd4ml.yaml").read_text())  # YAML 1.2: `on:` stays a key
    cfg["split"] = {"holdout_periods": 8, "validation_periods": 8}
    lgb = cfg["models"]["candidates"][0]
    lgb["params"].update(n_estimators=60, learning_rate=0.2, num_leaves=15)
    cfg["models"]["candidates"] = [lgb]
    (proj / "cd4ml.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.copytree(EXAMPLE / "schema", proj / "schema", dirs_exist_ok=True)
    out = run_pipeline(proj)
    assert out.registered, out.message
    return proj


def test_reference_holds_the_empty_markdowns_and_holdout_forecasts(project) -> None:
    cfg, _, stores, _ = open_project(project)
    with stores:
        v = stores.metadata.resolve(cfg.models.name, "production")
        ref = reference_of(v, stores.artifacts).reference
    for md in MARKDOWNS:
        assert ref.features[md].n == 0 and ref.features[md].missing_rate == 1.0
    assert ref.features["Temperature"].n == ref.rows
    assert list(ref.outputs) == ["prediction"] and ref.outputs["prediction"].n > 0


def test_new_snapshots_show_the_markdown_onset(project, full_walmart) -> None:
    data = project / "data"
    keep = {p.name: p.read_bytes() for p in data.iterdir()}
    try:
        _cut(full_walmart, data, "2011-09-30")  # inside the training period
        inside = monitor(project, data=True)["data"]
        assert inside["state"] == "insufficient" and inside["drift"]["drifted"] == []

        _cut(full_walmart, data, "2012-01-27")  # 13 new weeks, the MarkDowns begin
        res = subprocess.run([sys.executable, "-m", "cd4ml.cli", "monitor", "-p", str(project),
                              "--data", "--json"], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        new = json.loads(res.stdout)["data"]
        assert new["rows_chosen"] == f"panel rows after the training end {TRAIN_END}"
        weeks = pd.to_datetime(pd.read_csv(full_walmart / "train.csv.zip").Date)
        assert new["rows"] == ((weeks > TRAIN_END) & (weeks <= "2012-01-27")).sum()
        cols = new["drift"]["columns"]
        for md in MARKDOWNS:
            c = cols[md]
            assert c["drifted"] and c["state"] == "not comparable", (md, c)
            assert c["missing"]["reference"] == 1.0 and c["missing"]["current"] < 0.5
        assert set(MARKDOWNS) <= set(new["drift"]["drifted"])
        assert not cols["Size"]["drifted"] and not cols["Type"]["drifted"]  # static columns
    finally:
        for name, b in keep.items():
            (data / name).write_bytes(b)


def _replay_weeks(url: str, sales: pd.DataFrame, weeks: list[str], tag: str) -> dict:
    """Each week's (store, dept) rows as one /predict request, then its sales as feedback;
    the log time of each week's request (for windows)."""
    import httpx

    marks = {}
    with httpx.Client(base_url=url, timeout=120) as c:
        for w in weeks:
            rows = sales[sales.Date == w]
            marks[w] = time.time()
            body = [{"store": int(s), "dept": int(d), "date": w}
                    for s, d in zip(rows.Store, rows.Dept, strict=True)]
            r = c.post("/predict", json=body, headers={"X-Request-Id": f"{tag}-{w}"})
            assert r.status_code == 200, r.text[:500]
            fb = c.post("/feedback", json=[{"request_id": f"{tag}-{w}",
                                            "actuals": rows.Weekly_Sales.tolist()}])
            assert fb.status_code == 200, fb.text[:500]
    time.sleep(1.0)  # the writer flushes every 200 ms
    marks["end"] = time.time()
    return marks


def test_replayed_weeks_show_the_holiday_quality_loss(project, full_walmart) -> None:
    from conftest import start_server, stop_server

    sales = pd.read_csv(full_walmart / "train.csv.zip")
    known = sales.loc[sales.Date <= TRAIN_END, ["Store", "Dept"]].drop_duplicates()
    sales = sales.merge(known, on=["Store", "Dept"])  # series the model has a history of
    inside = [str(d.date()) for d in pd.date_range("2011-06-03", "2011-08-26", freq="7D")]
    after = [str(d.date()) for d in pd.date_range("2011-11-04", "2012-01-27", freq="7D")]
    proc, url = start_server(project)
    try:
        m_in = _replay_weeks(url, sales, inside, "inside")
        m_after = _replay_weeks(url, sales, after, "after")
    finally:
        stop_server(proc)
    whole = monitor(project, log=True, since=m_in[inside[0]], until=m_in["end"])["log"]
    assert whole["drift"]["state"] == "not applicable"  # covariates: see --data
    assert whole["quality"]["state"] == "ok"
    assert whole["metrics"]["quality.degradation"] < 0.1  # weeks it was trained on
    per_week = {}
    for i, w in enumerate(after):
        end = m_after[after[i + 1]] if i + 1 < len(after) else m_after["end"]
        log = monitor(project, log=True, since=m_after[w], until=end)["log"]
        per_week[w] = log["metrics"]["quality.degradation"]
    print(json.dumps(per_week))
    holidays = ["2011-11-25", "2011-12-23", "2011-12-30"]  # Thanksgiving, Christmas
    assert all(per_week[w] > 0.1 for w in holidays), per_week
    assert sum(v > 0.1 for v in per_week.values()) >= 3
