"""The dashboard in process (Starlette's TestClient) on a real project: two runs of the
ACS classifier, production on version 2, four days of log with labels (the fourth aged
ten years: AGEP drifts), and the alert rules evaluated once on it.

Every page answers 200 with its content; every chart of the monitoring page is drawn
with data (``data-points``), and a window's report charts where the model errs with the
figures ``cd4ml monitor`` gives; a query value that cannot be used is a 422 naming the
parameter, a run, model or version that does not exist a 404.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dashboard_project import DAY, logged_acs_project
from starlette.testclient import TestClient

from cd4ml.dashboard import Beside, create_dashboard
from cd4ml.dashboard.promtext import server_figures

MODEL = "acs-employment"
METRICS = """# TYPE cd4ml_http_requests counter
cd4ml_http_requests_total{endpoint="/predict",method="POST",status="200"} 40.0
cd4ml_http_requests_total{endpoint="/predict",method="POST",status="422"} 3.0
# TYPE cd4ml_http_errors counter
cd4ml_http_errors_total{endpoint="/predict",type="RequestError"} 3.0
# TYPE cd4ml_request_refusals counter
cd4ml_request_refusals_total{endpoint="/predict",field="AGEP",reason="wrong_type"} 2.0
cd4ml_request_refusals_total{endpoint="/predict",field="SCHL",reason="missing_field"} 1.0
# TYPE cd4ml_http_request_duration_seconds histogram
cd4ml_http_request_duration_seconds_bucket{endpoint="/predict",le="0.001"} 10.0
cd4ml_http_request_duration_seconds_bucket{endpoint="/predict",le="0.01"} 40.0
cd4ml_http_request_duration_seconds_bucket{endpoint="/predict",le="+Inf"} 43.0
cd4ml_http_request_duration_seconds_count{endpoint="/predict"} 43.0
cd4ml_http_request_duration_seconds_sum{endpoint="/predict"} 0.2
# TYPE cd4ml_prediction_log_queue_depth gauge
cd4ml_prediction_log_queue_depth 5.0
# TYPE cd4ml_prediction_log_records gauge
cd4ml_prediction_log_records{outcome="written"} 4000.0
cd4ml_prediction_log_records{outcome="dropped"} 7.0
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 3.3554432e+08
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    from cd4ml.pipeline.alerting import evaluate_alerts

    proj, t0 = logged_acs_project(tmp_path_factory.mktemp("dash") / "acs")
    # one evaluation of the shipped rules at the end of the aged day: input_drift fires
    evaluate_alerts(proj, now=t0 + 3 * DAY + 23 * 3600, send=False)
    return proj, t0


@pytest.fixture(scope="module")
def client(project: tuple[Path, float]) -> TestClient:
    return TestClient(create_dashboard(project[0], metrics_text=lambda: METRICS))


def charts(html: str) -> dict[str, int]:
    """data-chart -> data-points of every chart of a page."""
    return {k: int(n) for k, n in re.findall(r'data-chart="([^"]+)" data-points="(\d+)"',
                                             html)}


def test_runs_list_detail_and_compare(client: TestClient) -> None:
    res = client.get("/runs")
    assert res.status_code == 200
    ids = re.findall(r'name="a" value="([0-9a-f]+)"', res.text)
    assert len(ids) == 2 and charts(res.text)["runs-metric"] == 2
    one = client.get(f"/runs/{ids[0]}")
    assert one.status_code == 200 and "min_metric" in one.text and "leaderboard" in one.text
    assert charts(one.text)["leaderboard"] == 3  # lightgbm, logistic regression, prior
    cmp = client.get("/runs/compare", params={"a": ids[1], "b": ids[0]})
    assert cmp.status_code == 200
    # the one param changed, with both values, and the metrics of both runs charted
    assert "models.candidates.0.params.n_estimators" in cmp.text
    assert re.search(r"n_estimators</td><td>20</td><td>30</td>", cmp.text)
    assert charts(cmp.text)["compare-metrics"] >= 2 * 8


def test_models_versions_gate_reports_and_audit(client: TestClient) -> None:
    res = client.get("/models")
    assert res.status_code == 200 and "production→v2" in res.text
    assert charts(res.text)[f"versions-{MODEL}"] == 2
    v = client.get(f"/models/{MODEL}/2")
    assert v.status_code == 200
    for rule in ("min_metric", "beats_baseline", "max_group_gap"):
        assert rule in v.text
    assert "Not gated" in v.text and "reference" in v.text  # lineage's reference digest
    audit = client.get("/audit")
    assert audit.status_code == 200
    assert "set_alias" in audit.text and "register_version" in audit.text
    assert "alert_firing" in audit.text  # the alert evaluation is audited too
    only = client.get("/audit", params={"object": f"{MODEL}/1"})
    assert "register_version" in only.text and "set_alias" not in only.text
    home = client.get("/")
    assert home.status_code == 200 and "2 firing" in home.text  # input and prediction drift


def test_the_monitoring_page_draws_every_chart_with_data(client: TestClient) -> None:
    res = client.get(f"/monitor/{MODEL}/production", params={"size": "1d"})
    assert res.status_code == 200, res.text
    got = charts(res.text)
    # one window per day, traffic in 15-minute steps of one bucket per day
    assert got["quality"] >= 4 * 2  # realized and estimated in each of 4 windows
    assert got["traffic"] == 4 and got["traffic-rows"] == 4 and got["latency"] == 3 * 4
    assert got["drift"] == 16 * 4  # 16 inputs x 4 windows
    assert got["prediction-distribution"] == 20 * 5  # 20 bins, the reference + 4 windows
    assert got["prediction-drift"] == 4
    assert got["groups-SEX"] >= 2 * 4 and got["gaps-SEX"] >= 4
    assert got["feature-histogram"] == 2 * 20  # AGEP, reference and window, 20 bins
    assert "AGEP: reference (training rows) vs this window" in res.text  # the most drifted
    # the aged day's AGEP cell is flagged, the first day's is not
    assert re.search(r'class="cell alarm"[^>]*><title>AGEP [^<]*drifted', res.text)
    assert "4,000" in res.text  # rows in the log
    # software metrics from the scrape: refusals by field and reason, the log's drops
    assert got["refusals"] == 2 and got["errors"] == 1
    assert "AGEP · wrong_type" in res.text and "4,000 / 7 / –" in res.text
    assert "320 MiB" in res.text
    # the alert fired by the evaluation of the shipped rules
    assert re.search(r'<table class="alerts">.*input_drift', res.text, re.S)


def test_count_windows_a_chosen_feature_and_the_window_report(client: TestClient) -> None:
    res = client.get(f"/monitor/{MODEL}/2", params={"by": "count", "size": "500",
                                                    "feature": "SCHL", "window": "0"})
    assert res.status_code == 200
    got = charts(res.text)
    assert got["drift"] == 16 * 8 and got["feature-histogram"] > 0
    assert "SCHL: reference" in res.text
    link = re.search(r'href="([^"]*/window\?[^"]*)"', res.text).group(1).replace("&amp;", "&")
    rep = client.get(link)
    assert rep.status_code == 200
    hist = charts(rep.text)
    assert len([k for k in hist if k.startswith("hist-")]) == 16
    assert all(n > 0 for k, n in hist.items() if k.startswith("hist-"))
    assert "Training-serving skew" in rep.text and "jensenshannon" in rep.text


def test_the_window_report_says_concept_drift_and_where_the_model_errs(
        client: TestClient, project: tuple[Path, float]) -> None:
    from html import escape

    import pandas as pd

    from cd4ml.dashboard.html import fmt
    from cd4ml.pipeline.monitor import monitor

    proj, t0 = project
    since, until = t0 + 3 * DAY, t0 + 4 * DAY  # the aged day: AGEP and RELP drift
    log = monitor(proj, model=MODEL, version="production", log=True, since=since,
                  until=until)["log"]
    concept, res = log["concept"], log["residuals"]
    assert concept["state"] == "inputs drifted"  # worse than the holdout, inputs moved
    iso = {k: pd.Timestamp(v, unit="s", tz="UTC").isoformat()
           for k, v in (("since", since), ("until", until))}
    page = client.get(f"/monitor/{MODEL}/production/window", params=iso)
    assert page.status_code == 200
    html = page.text
    line = re.search(r'<p id="concept">(.*?)</p>', html).group(1)
    assert f'<span class="badge warn">{concept["state"]}</span>' in line
    assert escape(concept["message"]) in line
    # the six inputs whose worst bin is furthest above the window's Brier score, in order
    ranked = sorted(res["inputs"].items(), key=lambda kv: -kv[1]["excess"])[:6]
    got = [(k, n) for k, n in charts(html).items() if k.startswith("residuals-")]
    assert [k for k, _ in got] == [f"residuals-{c}" for c, _ in ranked]
    assert ranked[0][0] == "AGEP"  # the aged input: the old are predicted worst
    for (c, d), (_, points) in zip(ranked, got, strict=True):
        drawn = [b for b in d["bins"] if b["error"] is not None]
        assert points == len(drawn) > 0
        fig = re.search(rf'<figure[^>]*data-chart="residuals-{c}".*?</figure>', html).group(0)
        for b in drawn:  # each bar: its error, rows and mean residual, faded under 30 rows
            title = (f"brier {b['bin']}: {b['error']:.4g} · {b['rows']:,} rows, mean "
                     f"residual {fmt(b['mean_residual'])}")
            pale = ' class="faded"' if b["rows"] < 30 else ""
            assert re.search(rf"<rect{pale} [^>]*><title>{re.escape(escape(title))}</title>",
                             fig), (c, title)
        assert f"<title>window&#x27;s brier: {res['error']:.4g}</title>" in fig
    assert 'class="faded"' in html  # RAC1P's small groups
    # the served model's page gives the latest window's verdict from its metrics
    served = client.get(f"/monitor/{MODEL}/production", params={"size": "1d"})
    assert log["metrics"]["concept.drift"] == 0.0
    assert re.search(r'<p id="concept-latest">[^<]*<span class="badge ok">not suspected',
                     served.text)


def test_a_version_without_traffic_says_why(client: TestClient) -> None:
    res = client.get(f"/monitor/{MODEL}/1")
    assert res.status_code == 200
    got = charts(res.text)
    assert got["traffic"] == 0 and got["drift"] == 0 and got["quality"] == 0
    assert "no logged request in this range" in res.text


@pytest.mark.parametrize(("query", "param"), [
    ({"by": "hour"}, "by"), ({"size": "soon"}, "size"), ({"by": "count", "size": "0"}, "size"),
    ({"since": "yesterday-ish"}, "since"), ({"since": "1d", "until": "2d"}, "until"),
    ({"window": "x"}, "window"), ({"window": "99", "size": "1d"}, "window"),
    ({"feature": "SHOE_SIZE"}, "feature")])
def test_bad_query_values_are_refused_naming_the_parameter(client: TestClient, query: dict,
                                                           param: str) -> None:
    res = client.get(f"/monitor/{MODEL}/production", params=query)
    assert res.status_code == 422, res.text
    assert f"query parameter &#x27;{param}&#x27;" in res.text


def test_other_bad_requests(client: TestClient) -> None:
    assert client.get("/runs", params={"limit": "0"}).status_code == 422
    res = client.get("/runs/compare", params={"a": "x"})
    assert res.status_code == 422 and "&#x27;b&#x27;" in res.text
    assert client.get("/runs/nosuchrun").status_code == 404
    assert client.get(f"/models/{MODEL}/9").status_code == 404
    assert client.get(f"/models/{MODEL}/latest").status_code == 422
    assert client.get("/monitor/nosuchmodel/production").status_code == 404
    assert client.get(f"/monitor/{MODEL}/canary").status_code == 404


def test_without_metrics_the_page_says_where_they_come_from(project) -> None:
    c = TestClient(create_dashboard(project[0]))
    res = c.get(f"/monitor/{MODEL}/production")
    assert res.status_code == 200
    assert 'id="server-none"' in res.text and "--metrics-url" in res.text

    def down() -> str:
        raise RuntimeError("could not scrape http://127.0.0.1:1/metrics: refused")

    down.source = "http://127.0.0.1:1/metrics"  # type: ignore[attr-defined]
    res = TestClient(create_dashboard(project[0], metrics_text=down)).get(
        f"/monitor/{MODEL}/production")
    assert res.status_code == 200 and "could not read the server&#x27;s metrics" in res.text


def test_an_async_metrics_source_and_a_prefix(project) -> None:
    async def scrape() -> str:
        return METRICS

    c = TestClient(create_dashboard(project[0], metrics_text=scrape, prefix="/ui"))
    res = c.get(f"/ui/monitor/{MODEL}/production")
    assert res.status_code == 200 and charts(res.text)["refusals"] == 2
    assert 'href="/ui/assets/dashboard.css"' in res.text
    css = c.get("/ui/assets/dashboard.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert c.get("/ui", follow_redirects=False).headers["location"] == "/ui/"


def test_beside_sends_only_the_prefix_to_the_dashboard() -> None:
    seen: list[tuple[str, str]] = []

    def app_named(name: str):
        async def app(scope, receive, send):
            seen.append((name, scope.get("path", scope["type"])))
            if scope["type"] == "http":
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": name.encode()})
        return app

    c = TestClient(Beside(app_named("server"), app_named("ui"), "/ui"))
    assert c.get("/predict").text == "server" and c.get("/uix").text == "server"
    assert c.get("/ui").text == "ui" and c.get("/ui/runs").text == "ui"
    with pytest.raises(ValueError, match="prefix"):
        Beside(app_named("a"), app_named("b"), "/ui/")


def test_prometheus_figures() -> None:
    f = server_figures(METRICS)
    assert f.refusals == [("AGEP · wrong_type", 2.0), ("SCHL · missing_field", 1.0)]
    assert f.log == {"queue": 5.0, "written": 4000.0, "dropped": 7.0}
    lat = f.latency["/predict"]
    # 43 requests: 10 under 1 ms, 30 more under 10 ms; the median is in the second bucket
    assert lat["count"] == 43 and lat["p50_ms"] == pytest.approx(1 + 9 * (21.5 - 10) / 30)
    with pytest.raises(ValueError):
        server_figures("this is { not prometheus")


def test_cd4ml_ui_refuses_a_bad_metrics_url_in_one_line(project) -> None:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "cd4ml.cli", "ui", "-p", str(project[0]),
                          "--metrics-url", "ftp://host/metrics"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "error: --metrics-url 'ftp://host/metrics': expected http://host:port/metrics"]
