"""`cd4ml serve` as a real process on loopback: JSON over HTTP and the page in a browser."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest


def test_json_over_http(server: str) -> None:
    res = httpx.post(f"{server}/predict", json=[{"store": 1, "dept": 1, "date": "2013-07-26"},
                                               {"store": 1, "dept": 95, "date": "2012-11-02"}])
    assert res.status_code == 200, res.text
    assert len(res.json()["predictions"]) == 2
    bad = httpx.post(f"{server}/predict", content=b"store=1", headers={"content-type":
                                                                      "application/json"})
    assert bad.status_code == 422 and "not valid JSON" in bad.json()["detail"]
    # a text/plain body is what a web page can send cross-site without a preflight
    plain = httpx.post(f"{server}/predict", content=b"{}", headers={"content-type":
                                                                    "text/plain"})
    assert plain.status_code == 415 and "application/json" in plain.json()["detail"]


def test_form_in_a_headless_browser(server: str, tmp_path: Path) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        why = "no Chromium on this machine (apt-get install chromium)"
        if os.environ.get("CD4ML_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{why}, and CD4ML_REQUIRE_BROWSER=1")
        pytest.skip(why)
    dom = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         f"{server}/?store=1&dept=3&date=2013-03-01"],
        capture_output=True, text=True, timeout=60).stdout
    assert "<h1>Sales forecast</h1>" in dom
    assert 'id="forecast">$' in dom
