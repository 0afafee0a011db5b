"""The router on a real `cd4ml serve` with two workers: a canary takes its share of the
requests within statistical tolerance, a split sticky by a request field sends each unit
to the same version on every worker (and as any other process computes it), a shadow's
answers are logged and never returned, a rollback under load loses no request and takes
effect on every worker within serving.poll_interval_s + 1 s, and moving the tracked
alias starts the deployment's strategy instead of swapping the version in."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import FAST, make_project, start_server, stop_server

from cd4ml import predlog

NAME = "walmart-weekly-sales"
DEPTS = (1, 3, 8, 13, 38, 93, 95)
POLL = 0.2


def _cli(proj: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cd4ml.cli", *args, "-p", str(proj)],
                          capture_output=True, text=True, timeout=120)


def _ok(proj: Path, *args: str) -> str:
    r = _cli(proj, *args)
    assert r.returncode == 0, r.stderr + r.stdout
    return r.stdout


@pytest.fixture(scope="module")
def served(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two versions (v2 holds the alias), served by two workers polling every 0.2 s."""
    from cd4ml.pipeline.run import run_pipeline

    proj = make_project(tmp_path_factory.mktemp("router"), sample_dir)
    assert run_pipeline(proj, FAST).registered
    other = [*FAST[:1], "models.candidates.0.params.n_estimators=40", *FAST[1:]]
    assert run_pipeline(proj, other).registered["version"] == 2
    proc, url = start_server(proj, "--workers", "2", "--no-ui", "--set",
                             f"serving.poll_interval_s={POLL}")
    yield proj, url, proc
    stop_server(proc)


def _revision(url: str) -> set[int]:
    """The revisions the workers route by now (the gauge keeps each live worker's)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
            if line.startswith("cd4ml_deployment_revision{")}


def _wait_revision(url: str, revision: int, timeout: float = 10) -> float:
    """Seconds until a request to each worker routes by ``revision`` (asked through
    /health, answered by whichever worker the kernel picks: 40 answers in a row)."""
    t0 = time.monotonic()
    with httpx.Client(base_url=url, timeout=10) as c:
        streak = 0
        while streak < 40:
            assert time.monotonic() - t0 < timeout, f"revision {revision} not served"
            got = c.get("/health", headers={"connection": "close"}).json()
            streak = streak + 1 if got["deployment"]["revision"] == revision else 0
    return time.monotonic() - t0


def _predict(c: httpx.Client, dept: int = 1, **extra: object) -> dict:
    r = c.post("/predict", json={"store": 1, "dept": dept, "date": "2012-11-02", **extra},
               headers={"connection": "close"})  # a new connection: either worker
    assert r.status_code == 200, r.text
    return r.json()


def _state(proj: Path) -> dict:
    import json

    return json.loads(_ok(proj, "rollout", "status", NAME, "--json"))


def test_the_default_deployment_is_the_alias(served) -> None:
    proj, url, _ = served
    health = httpx.get(f"{url}/health", timeout=10).json()
    assert health["version"] == 2
    assert health["deployment"]["routes"] == [{"version": 2, "role": "stable", "share": 1.0}]


def test_an_alias_move_starts_a_canary_and_it_takes_its_share(served) -> None:
    proj, url, _ = served
    _ok(proj, "deploy", NAME, "--strategy", "canary", "--steps", "0.3,1",
        "--automation", "manual")
    moved = _ok(proj, "promote", NAME, "1", "--alias", "production")
    assert "canary v1 at 30 %" in moved  # the alias moved; v1 is a candidate, not live
    state = _state(proj)
    _wait_revision(url, state["revision"])
    n = 600
    with httpx.Client(base_url=url, timeout=10) as c:
        got = [_predict(c)["version"] for _ in range(n)]
    share = got.count(1) / n
    sd = math.sqrt(0.3 * 0.7 / n)
    assert abs(share - 0.3) < 4 * sd, f"canary share {share:.3f}, expected 0.3 ± {4 * sd:.3f}"
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'cd4ml_routed_requests_total{deployment="walmart-weekly-sales",outcome="ok",' \
           'role="canary",version="1"}' in metrics
    # the log says which role answered each request
    time.sleep(1.0)
    df = predlog.predictions(proj / ".cd4ml" / "predictions", with_features=False)
    roles = df.groupby("version")["arm"].agg(set).to_dict()
    assert roles[1] == {"canary"} and roles[2] == {"stable"}
    _ok(proj, "rollout", "abort", NAME, "--reason", "test over")


def test_a_sticky_split_keeps_each_unit_on_one_version(served) -> None:
    from cd4ml.serving.sticky import arm_for

    proj, url, proc = served
    _ok(proj, "deploy", NAME, "--strategy", "ab", "--split", "0.5", "--key", "dept")
    _ok(proj, "rollout", "candidate", NAME, "1")
    state = _state(proj)
    _wait_revision(url, state["revision"])
    seen: dict[int, set[int]] = {d: set() for d in DEPTS}
    with httpx.Client(base_url=url, timeout=10) as c:
        for _ in range(8):
            for d in DEPTS:
                seen[d].add(_predict(c, d)["version"])
        # a forecast's fields match in any case, and so does the key: Dept is dept
        cased = {d: c.post("/predict", json={"Store": 1, "Dept": d, "Date": "2012-11-02"},
                           headers={"connection": "close"}).json()["version"] for d in DEPTS}
        # without the key: the documented fallback (by request id), not an error
        no_key = c.post("/predict", json={"store": 1, "date": "2012-11-02"})
    assert all(len(v) == 1 for v in seen.values()), seen
    assert cased == {d: next(iter(v)) for d, v in seen.items()}
    shares = {f"v{a['version']}": a["share"] for a in state["arms"]}
    salt = f"{NAME}:v1"
    # what another process computes (a restart, another machine) is what was served
    assert {d: f"v{v.pop()}" for d, v in seen.items()} == \
        {d: arm_for(str(d), shares, salt) for d in DEPTS}
    assert no_key.status_code == 422 and "dept" in no_key.text  # dept is an input too
    pids = {line.split('"pid":')[1].split(",")[0]
            for line in Path(proc.log_path).read_text().splitlines()
            if '"path":"/predict"' in line}
    assert len(pids) == 2, "both workers answered"
    _ok(proj, "rollout", "abort", NAME)


def test_a_shadow_answers_copies_that_never_reach_the_client(served, sample_dir: Path,
                                                            ) -> None:
    proj, url, _ = served
    _ok(proj, "deploy", NAME, "--strategy", "shadow")
    _ok(proj, "rollout", "candidate", NAME, "1")
    _wait_revision(url, _state(proj)["revision"])
    with httpx.Client(base_url=url, timeout=10) as c:
        answers = [_predict(c, d) for d in DEPTS for _ in range(3)]
    assert {a["version"] for a in answers} == {2}
    ids = {a["request_id"] for a in answers}
    deadline = time.monotonic() + 10
    while True:
        df = predlog.predictions(proj / ".cd4ml" / "predictions", with_features=False)
        shadow = df[(df.arm == "shadow") & df.request_id.isin(ids)]
        if len(shadow) == len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert set(shadow.request_id) == ids and set(shadow.version) == {1}
    live = df[(df.arm == "stable") & df.request_id.isin(ids)]
    assert set(live.version) == {2} and len(live) == len(ids)
    text = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'cd4ml_shadow_requests_total{deployment="walmart-weekly-sales",outcome="ok",' \
           'version="1"}' in text
    # the copies were scored by a process of their own, which wrote the shadow records
    health = httpx.get(f"{url}/health", timeout=10).json()
    sh = health["shadows"]
    assert sh["runs_in"] == "process" and sh["alive"] and sh["pid"] != health["pid"]
    assert list((proj / ".cd4ml" / "predictions").rglob(f"seg-*-p{sh['pid']}.db")), \
        "the shadow process writes the log itself"
    # labels arrive (the real sales of the same week a year before stand in for them)
    import pandas as pd
    from sklearn.metrics import mean_absolute_error

    tr = pd.read_csv(sample_dir / "train.csv.zip")
    week = tr[(tr.Store == 1) & (tr.Date == "2011-11-04")].set_index("Dept")["Weekly_Sales"]
    actual = {a["request_id"]: float(week[d]) for a, d in
              zip(answers, [d for d in DEPTS for _ in range(3)], strict=True)}
    with httpx.Client(base_url=url, timeout=10) as c:
        r = c.post("/feedback", json=[{"request_id": i, "actual": y} for i, y in actual.items()])
        assert r.status_code == 200 and r.json()["accepted"] == len(actual), r.text
    import json

    doc = json.loads(_ok(proj, "rollout", "shadow", NAME, "--json"))
    assert doc["pairs"] >= len(ids) and doc["unpaired"] == 0 and doc["output"] == "number"
    mine = live.merge(shadow, on=["request_id", "row"], suffixes=("_l", "_s"))
    y = mine.request_id.map(actual)
    assert doc["labelled"] == len(ids)
    assert doc["quality"]["live_mae"] == pytest.approx(mean_absolute_error(y, mine.prediction_l))
    assert doc["quality"]["shadow_mae"] == pytest.approx(
        mean_absolute_error(y, mine.prediction_s))
    assert doc["agreement"]["mean_abs_difference"] == pytest.approx(
        mean_absolute_error(mine.prediction_l, mine.prediction_s))
    text = _ok(proj, "rollout", "shadow", NAME)
    assert f"shadow v1 of {NAME}: {doc['pairs']} answers paired" in text
    _ok(proj, "rollout", "abort", NAME)


def _load(url: str, stop: threading.Event, seen: list) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            try:
                r = c.post("/predict", json={"store": 1, "dept": 3, "date": "2012-11-02"})
                seen.append((r.status_code, r.json().get("version")
                             if r.status_code == 200 else r.text))
            except httpx.HTTPError as exc:
                seen.append((0, repr(exc)))


def test_switch_and_rollback_under_load_lose_nothing(served) -> None:
    proj, url, _ = served
    _ok(proj, "deploy", NAME, "--strategy", "bluegreen")
    _ok(proj, "rollout", "candidate", NAME, "1")  # green v1 loaded and warm, no traffic
    _wait_revision(url, _state(proj)["revision"])
    stop = threading.Event()
    seen: list[list] = [[] for _ in range(3)]
    threads = [threading.Thread(target=_load, args=(url, stop, s)) for s in seen]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        _ok(proj, "rollout", "promote", NAME)  # the switch: v1 takes everything
        switched = _wait_revision(url, _state(proj)["revision"])
        time.sleep(0.3)
        _ok(proj, "rollback", NAME)  # back to blue v2, still loaded
        t0 = time.monotonic()
        back = _wait_revision(url, _state(proj)["revision"])
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    every = [x for s in seen for x in s]
    failed = [x for x in every if x[0] != 200]
    assert not failed, failed[:5]
    assert {v for _, v in every} == {1, 2}
    assert switched < POLL + 1 and back < POLL + 1, (switched, back, time.monotonic() - t0)
    assert _state(proj)["arms"][0]["version"] == 2
