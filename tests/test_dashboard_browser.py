"""The dashboard end to end in headless Chromium (Debian's ``chromium``, driven by
Playwright with ``executable_path``: no browser download): mounted at /ui by a real
``cd4ml serve`` process, and alone under ``cd4ml ui`` (with ``--metrics-url`` pointing at
that server, and for the Walmart forecast without one).

Each page's charts must be rendered with data (a window's report: where the model
errs, per input): every expected ``figure.chart`` has
``data-points`` above 0 and its SVG a drawn size in the page. Screenshots are saved under
``test-artifacts/dashboard/`` (or ``$CD4ML_TEST_ARTIFACTS/dashboard``), printed at the
start. Without a browser the tests skip, saying why; ``CD4ML_REQUIRE_BROWSER=1``
(``.ci/run``) turns that into a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FAST, make_project, start_server, stop_server
from dashboard_project import DAY, INPUTS, logged_acs_project

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
MODEL = "acs-employment"
#: the charts of the monitoring page of a classifier that must hold data
MONITOR_CHARTS = ("traffic", "traffic-rows", "latency", "drift", "feature-histogram",
                  "prediction-distribution", "prediction-drift", "quality", "groups-SEX",
                  "gaps-SEX")


def _need(why: str) -> None:
    if os.environ.get("CD4ML_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{why}, and CD4ML_REQUIRE_BROWSER=1")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        _need("no Chromium on this machine (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("Playwright is not installed (pip install 'cd4ml[test]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def shots(request: pytest.FixtureRequest) -> Path:
    """The screenshots' folder, printed in the test run's output."""
    base = Path(os.environ.get("CD4ML_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    d = base / "dashboard"
    d.mkdir(parents=True, exist_ok=True)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\ndashboard screenshots: {d}")
    return d


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, float]]:
    """The logged ACS project served by `cd4ml serve` (dashboard at /ui), with fresh
    traffic: 300 rows answered and two requests refused; and the log's first midnight."""
    proj, t0 = logged_acs_project(tmp_path_factory.mktemp("dash-browser") / "acs")
    import pandas as pd

    rows = pd.read_parquet(proj / "data" / "employment.parquet")
    rows = rows[rows.year == 2018].iloc[:300][INPUTS].to_dict("records")
    proc, url = start_server(proj)
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            for i in range(0, 300, 50):
                assert c.post("/predict", json=rows[i:i + 50]).status_code == 200
            bad = {**rows[0], "AGEP": "old"}
            assert c.post("/predict", json=[bad]).status_code == 422
            assert c.post("/predict", json=[{"AGEP": 30}]).status_code == 422
        time.sleep(0.5)  # the log's writer flushes every 200 ms
        yield proj, url, t0
    finally:
        stop_server(proc)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_ui(proj: Path, *args: str, timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """`cd4ml ui` as a real process on a free loopback port, once / answers 200."""
    port = _free_port()
    log = open(proj.parent / f"ui-{port}.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "cd4ml.cli", "ui", "-p", str(proj),
                             "--port", str(port), *args], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"cd4ml ui exited {proc.returncode}: "
                        f"{Path(log.name).read_text()[-3000:]}")
        try:
            if httpx.get(url + "/", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(proc)
    pytest.fail(f"cd4ml ui not up in {timeout} s")


def rendered(page: Any) -> dict[str, dict[str, float]]:
    """Each chart of the page as the browser laid it out: its data-points and the
    drawn size of its SVG (0 for a chart without one)."""
    return page.evaluate("""() => Object.fromEntries(
        [...document.querySelectorAll('figure.chart')].map(f => {
            const svg = f.querySelector('svg'); const r = svg ? svg.getBoundingClientRect()
                                                              : {width: 0, height: 0};
            return [f.dataset.chart, {points: +f.dataset.points, width: r.width,
                                      height: r.height,
                                      marks: svg ? svg.querySelectorAll(
                                          'path, circle, rect').length : 0}];
        }))""")


def open_page(browser: Any, url: str, shot: Path) -> tuple[Any, dict[str, Any]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    res = page.goto(url, wait_until="load")
    assert res is not None and res.status == 200, url
    page.screenshot(path=str(shot), full_page=True)
    return page, rendered(page)


def assert_drawn(charts: dict[str, Any], keys: tuple[str, ...]) -> None:
    for k in keys:
        c = charts.get(k)
        assert c is not None, f"chart {k} missing: {sorted(charts)}"
        assert c["points"] > 0 and c["marks"] > 0, (k, c)
        assert c["width"] > 200 and c["height"] > 20, (k, c)


def test_the_dashboard_beside_the_model_server(browser: Any,
                                                served: tuple[Path, str, float],
                                                shots: Path) -> None:
    proj, url, _ = served
    page, charts = open_page(browser, f"{url}/ui/monitor/{MODEL}/production?size=1d",
                             shots / "serve-monitoring.png")
    assert_drawn(charts, MONITOR_CHARTS + ("refusals", "errors"))
    text = page.inner_text("#server")
    assert "this server's /metrics" in text and "AGEP · wrong_type" in page.content()
    assert "acs-employment v2" in text  # the version the worker serves
    page.close()
    # the runs list, then compare two runs picked in the form, as a user would
    page, charts = open_page(browser, f"{url}/ui/runs", shots / "serve-runs.png")
    assert_drawn(charts, ("runs-metric",))
    page.locator('input[name="a"]').nth(1).check()
    page.locator('input[name="b"]').nth(0).check()
    page.get_by_role("button", name="Compare A and B").click()
    page.wait_for_load_state("load")
    assert page.inner_text("h1").startswith("Compare")
    assert "n_estimators" in page.content()
    page.screenshot(path=str(shots / "serve-compare.png"), full_page=True)
    assert_drawn(rendered(page), ("compare-metrics",))
    page.close()
    page, charts = open_page(browser, f"{url}/ui/models", shots / "serve-models.png")
    assert_drawn(charts, (f"versions-{MODEL}",))
    page.get_by_role("link", name="v2").first.click()
    page.wait_for_load_state("load")
    assert "Gate report" in page.content() and "max_group_gap" in page.content()
    page.screenshot(path=str(shots / "serve-version.png"), full_page=True)
    page.close()
    # the model server still answers as before, beside it
    assert httpx.post(f"{url}/predict", json={"AGEP": 1}).status_code == 422
    assert httpx.get(f"{url}/ready").json()["version"] == 2


def test_cd4ml_ui_alone_reads_a_servers_metrics(browser: Any,
                                                served: tuple[Path, str, float],
                                                shots: Path) -> None:
    proj, url, _ = served
    proc, ui = start_ui(proj, "--metrics-url", f"{url}/metrics")
    try:
        page, charts = open_page(browser, f"{ui}/monitor/{MODEL}/production",
                                 shots / "ui-monitoring.png")
        assert_drawn(charts, MONITOR_CHARTS + ("refusals",))
        assert f"{url}/metrics" in page.inner_text("#server")
        page.close()
        page, charts = open_page(browser, f"{ui}/", shots / "ui-overview.png")
        assert "production" in page.content()
        page.close()
    finally:
        stop_server(proc)


def test_a_windows_report_charts_where_the_model_errs(browser: Any,
                                                      served: tuple[Path, str, float],
                                                      shots: Path) -> None:
    from datetime import datetime, timezone
    from urllib.parse import urlencode

    _, url, t0 = served
    day = [datetime.fromtimestamp(t0 + d * DAY, timezone.utc).isoformat() for d in (3, 4)]
    query = urlencode({"since": day[0], "until": day[1]})  # the aged day, labelled
    page, charts = open_page(browser, f"{url}/ui/monitor/{MODEL}/production/window?{query}",
                             shots / "serve-window.png")
    errs = [k for k in charts if k.startswith("residuals-")]
    assert len(errs) == 6 and errs[0] == "residuals-AGEP", errs
    assert_drawn(charts, tuple(errs))
    assert "inputs drifted" in page.inner_text("#concept")
    section = page.locator("#residuals")
    age = section.locator('figure[data-chart="residuals-AGEP"]')
    assert age.locator('g[data-series="brier"] rect').count() == charts["residuals-AGEP"][
        "points"]
    line = age.locator('g[data-series="window\'s brier"] path')  # the window's, dashed
    assert line.count() == 1 and line.bounding_box()["width"] > 200
    assert section.locator("rect.faded").count() > 0  # bins of fewer than 30 rows
    section.screenshot(path=str(shots / "serve-window-residuals.png"))
    page.close()


def test_a_forecast_models_series_and_forecast(browser: Any, sample_dir: Path, shots: Path,
                                               tmp_path: Path) -> None:
    from cd4ml.pipeline.run import run_pipeline

    proj = make_project(tmp_path, sample_dir)
    run_pipeline(proj, FAST)
    proc, ui = start_ui(proj)
    try:
        page, charts = open_page(browser, f"{ui}/monitor/walmart-weekly-sales/production"
                                          f"?store=1&dept=3", shots / "ui-walmart-forecast.png")
        assert_drawn(charts, ("forecast",))
        fc = page.locator('figure[data-chart="forecast"]')
        assert fc.locator('g[data-series="history"] path').count() >= 1
        assert fc.locator('g[data-series="forecast"] path').count() >= 1
        assert charts["forecast"]["points"] > 100  # two years of weeks and 39 ahead
        assert "--metrics-url" in page.inner_text("#server")
        fc.screenshot(path=str(shots / "ui-walmart-forecast-chart.png"))
        page.close()
    finally:
        stop_server(proc)
