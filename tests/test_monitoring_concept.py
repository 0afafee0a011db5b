"""Residuals by input and concept drift, on real ACS data.

The statistics first, against an independent computation (NumPy's inverted-CDF deciles,
pandas' cut and scikit-learn's Brier score per bin); then a served model whose labels
change under stable inputs: 2017 people replayed with their true labels say "ok", the
same people with the employment of women turned around say "suspected" concept drift,
with no input drifted, and the residuals put the failure on SEX = 2.
"""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import start_server, stop_server
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss
from tabular_projects import acs_path, acs_project

from cd4ml.monitoring import ColumnSummary
from cd4ml.monitoring.residuals import concept_verdict, residuals_by_input
from cd4ml.pipeline.monitor import monitor
from cd4ml.pipeline.run import run_pipeline

INPUTS = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
          "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]


@pytest.fixture(scope="module")
def acs() -> pd.DataFrame:
    return pd.read_parquet(acs_path())


def test_residuals_by_input_equal_an_independent_computation(acs: pd.DataFrame) -> None:
    train, now = acs[acs.year == 2015], acs[acs.year == 2016].reset_index(drop=True)
    model = LogisticRegression(max_iter=500).fit(train[["AGEP", "SCHL"]], train.employed)
    p = model.predict_proba(now[["AGEP", "SCHL"]])[:, 1]
    y = now.employed.to_numpy(float)
    summaries = {"AGEP": ColumnSummary.of(train.AGEP, "numeric"),
                 "RAC1P": ColumnSummary.of(train.RAC1P, "categorical")}
    got = residuals_by_input(now, y, p, kinds={"AGEP": "numeric", "RAC1P": "categorical"},
                             summaries=summaries, binary=True)
    assert got["error"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    # AGEP on the training deciles (inverted CDF), values beyond them in the end bins
    edges = np.unique(np.quantile(train.AGEP.to_numpy(float), np.linspace(0.1, 0.9, 9),
                                  method="inverted_cdf"))
    cut = pd.cut(now.AGEP, [-np.inf, *edges, np.inf], right=False, labels=False)
    bins = got["inputs"]["AGEP"]["bins"]
    assert len(bins) == len(edges) + 1
    for i, b in enumerate(bins):
        at = (cut == i).to_numpy()
        assert b["rows"] == at.sum()
        assert b["error"] == pytest.approx(brier_score_loss(y[at], p[at]), abs=1e-12)
        assert b["mean_residual"] == pytest.approx(float(np.mean(y[at] - p[at])), abs=1e-12)
    # RAC1P by its ten most frequent categories in the window, the rest as (other)
    top = now.RAC1P.value_counts().index[:10]
    cats = {b["bin"]: b for b in got["inputs"]["RAC1P"]["bins"]}
    for c in top:
        at = (now.RAC1P == c).to_numpy()
        assert cats[str(c)]["rows"] == at.sum()
        assert cats[str(c)]["error"] == pytest.approx(brier_score_loss(y[at], p[at]),
                                                      abs=1e-12)
    assert cats["(other)"]["rows"] == (~now.RAC1P.isin(top)).sum()
    # the worst bin: the largest error among bins of 30 rows or more, above the window's
    ranked = sorted((b for b in bins if b["rows"] >= 30), key=lambda b: -b["error"])
    assert got["inputs"]["AGEP"]["worst"][0] == ranked[0]["bin"]
    assert ranked[0]["error"] > got["error"]


def test_concept_verdict_states() -> None:
    assert concept_verdict(degradation=None, drifted_inputs=0)["state"] == "not judged"
    assert concept_verdict(degradation=0.01, drifted_inputs=0)["state"] == "ok"
    got = concept_verdict(degradation=0.2, drifted_inputs=0)
    assert got["state"] == "suspected" and got["drifted"]
    assert "no input column drifted" in got["message"]
    assert concept_verdict(degradation=0.2, drifted_inputs=3)["state"] == "inputs drifted"
    gap = concept_verdict(degradation=0.0, drifted_inputs=0, estimated_gap=0.1)
    assert gap["state"] == "suspected" and "below the estimate" in gap["message"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    proj = acs_project(tmp_path_factory.mktemp("concept") / "acs", changes={
        "evaluation": {"bootstrap": 0}, "monitoring": {"interval_s": 0}})
    assert run_pipeline(proj).registered
    proc, url = start_server(proj)
    try:
        yield proj, url
    finally:
        stop_server(proc)


def _replay(url: str, frame: pd.DataFrame, labels: np.ndarray, tag: str) -> None:
    with httpx.Client(base_url=url, timeout=60) as c:
        sent = []
        for k, start in enumerate(range(0, len(frame), 500)):
            part = frame.iloc[start:start + 500]
            r = c.post("/predict", json=part[INPUTS].to_dict("records"),
                       headers={"X-Request-Id": f"{tag}-{k}"})
            assert r.status_code == 200, r.text
            sent.append({"request_id": f"{tag}-{k}",
                         "actuals": labels[start:start + 500].astype(int).tolist()})
        assert c.post("/feedback", json=sent).status_code == 200


def test_labels_turned_around_under_stable_inputs_are_concept_drift(served, acs) -> None:
    proj, url = served
    people = acs[acs.year == 2017].sample(4000, random_state=5).reset_index(drop=True)
    t0 = pd.Timestamp.now(tz="UTC").timestamp()
    _replay(url, people, people.employed.to_numpy(), "true")
    t1 = pd.Timestamp.now(tz="UTC").timestamp()
    plain = monitor(proj, log=True, since=t0, until=t1)["log"]
    assert plain["concept"]["state"] == "ok", plain["concept"]
    assert plain["metrics"]["concept.drift"] == 0.0
    assert plain["residuals"]["rows"] == 4000

    women = (people.SEX == 2).to_numpy()
    turned = np.where(women, 1 - people.employed.to_numpy(), people.employed.to_numpy())
    _replay(url, people, turned, "turned")
    doc = monitor(proj, log=True, since=t1)["log"]
    assert doc["drift"]["drifted"] == []  # the same people: the inputs did not move
    assert doc["concept"]["state"] == "suspected", doc["concept"]
    assert doc["metrics"]["concept.drift"] == 1.0
    assert doc["residuals"]["inputs"]["SEX"]["worst"][0] == "2"
    # cd4ml monitor's printed report says it, and where
    import io

    from rich.console import Console

    from cd4ml.monitoring.render import print_report

    buf = io.StringIO()
    print_report(Console(file=buf, width=200), monitor(proj, log=True, since=t1))
    out = buf.getvalue()
    assert "concept drift: suspected" in out and "SEX 2" in out, out
