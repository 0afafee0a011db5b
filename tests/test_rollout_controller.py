"""The rollout controller on a trained ACS project (two versions, the real store): its
log written by a real PredictionLog from each version's real answers in the role the
router would give them, the router's metrics as prometheus_client exposes them, the
clock injected. Automatic canaries advance on Successful, abort on Failed (a candidate
that raises, or is slow), pause on Inconclusive (too few labels); manual runs nothing;
assisted proposes and waits for a person; a bandit's shares move toward the better arm;
an A/B test's comparison is recorded and shown by `cd4ml rollout status`; a deployment
changed meanwhile is retried on the next tick; and `cd4ml serve` runs one controller per
project that walks a real canary."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import start_server, stop_server
from tabular_projects import acs_project

from cd4ml.cli import main

INPUTS = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
          "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]
STEP_S = 600.0
#: small enough for a test's few hundred rows
FAST = ["rollout.analysis.error_rate.min_samples=20", "rollout.analysis.latency.min_samples=20",
        # a p99 of 30 in-process requests is their slowest, read from a histogram bucket
        # (0.1-0.25 s holds a 0.11 s pause): a pause of the test's process on a busy machine
        # is not the canary's regression (the slow canary below is 2 s slower)
        "rollout.analysis.latency.min_increase_ms=1000",
        "rollout.analysis.drift.min_samples=100", "rollout.analysis.quality.min_samples=100",
        "rollout.analysis.estimated.min_samples=100", f"rollout.step_s={STEP_S}",
        "rollout.bandit.update_s=60", "rollout.ab.look_s=60", "rollout.ab.min_n=50"]
ROWS = 10  # rows per request


class Traffic:
    """Each version as cd4ml serve loads it, answering ACS people in process, logged by a
    real PredictionLog in the role the router gave; the router's counters and latency
    histogram as prometheus_client keeps and exposes them."""

    def __init__(self, proj: Path) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        from cd4ml.pipeline.run import open_project
        from cd4ml.predlog import PredictionLog
        from cd4ml.registry.loader import load_version
        from cd4ml.serving.contracts import contract_for
        from cd4ml.serving.ops import _LATENCY_BUCKETS

        cfg, _, stores, _ = open_project(proj)
        with stores:
            self.contracts = {v: contract_for(load_version(stores.metadata, stores.artifacts,
                                                           cfg.models.name, v), log=True)
                              for v in (1, 2)}
        self.plog = PredictionLog(cfg.serving.log.folder_in(proj), flush_interval_ms=60_000)
        data = pd.read_parquet(proj / "data" / "employment.parquet")
        self.people = data[data.year.isin([2017, 2018])].reset_index(drop=True)
        self.rng = np.random.default_rng(0)
        self.registry = CollectorRegistry()
        self.requests = Counter("cd4ml_routed_requests", "r",
                                ["deployment", "version", "role", "outcome"],
                                registry=self.registry)
        self.latency = Histogram("cd4ml_routed_latency_seconds", "l",
                                 ["deployment", "version", "role"], buckets=_LATENCY_BUCKETS,
                                 registry=self.registry)
        self.sent = 0

    def text(self) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()

    def send(self, deployment: str, version: int, role: str, rows: int, *,
             labelled: int | None = None, slow_s: float = 0.0, errors: int = 0,
             reward: Any = None) -> list[str]:
        """``rows`` people (``ROWS`` a request) answered by ``version`` in ``role``;
        labels for the first ``labelled`` rows (default all); ``errors`` more requests
        that raised (counted, never logged: the incumbent answered them); ``reward``:
        a callable of the rng giving each row's reward instead of labels."""
        c = self.contracts[version]
        pick = self.people.iloc[self.rng.choice(len(self.people), rows, replace=False)]
        feedback, ids = [], []
        left = rows if labelled is None else labelled
        for start in range(0, rows, ROWS):
            part = pick.iloc[start:start + ROWS]
            rid = f"{deployment}-{self.sent}"
            self.sent += 1
            t0 = time.perf_counter()
            enc = c.check(part[INPUTS].to_dict("records"))
            out = c.predict(enc)
            took = time.perf_counter() - t0 + slow_s
            self.plog.append(c.log_record(rid, time.time(), "/predict", took * 1000, enc, out,
                                          "application/json", b"{}", arm=role))
            self.requests.labels(deployment, str(version), role, "ok").inc()
            self.latency.labels(deployment, str(version), role).observe(took)
            ids.append(rid)
            for j, y in enumerate(part.employed):
                if reward is not None:
                    feedback.append({"request_id": rid, "row": j, "reward": reward(self.rng)})
                elif left > 0:
                    feedback.append({"request_id": rid, "row": j, "actual": float(y)})
                    left -= 1
        self.requests.labels(deployment, str(version), role, "error").inc(errors)
        assert self.plog.flush()
        if feedback:
            self.plog.add_feedback(feedback)
        return ids

    def close(self) -> None:
        self.plog.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    """v1 and v2 of ACS employment (production: v2), and traffic to send."""
    from cd4ml.pipeline.run import run_pipeline

    proj = acs_project(tmp_path_factory.mktemp("controller") / "acs", changes={
        "evaluation": {"bootstrap": 0}, "monitoring": {"interval_s": 0}})
    assert run_pipeline(proj).registered["version"] == 1
    assert run_pipeline(proj, ["models.candidates.0.params.n_estimators=30"]
                        ).registered["version"] == 2
    traffic = Traffic(proj)
    yield proj, traffic
    traffic.close()


class World:
    """The project's stores open, a controller with an injected clock and metrics."""

    def __init__(self, proj: Path, traffic: Traffic, *, metrics: Any = "traffic") -> None:
        from cd4ml.pipeline.run import open_project
        from cd4ml.rollout.controller import Controller

        self.cfg, _, self.stores, self.root = open_project(proj, FAST)
        self.stores.__enter__()
        self.now = [time.time()]
        self.traffic = traffic
        source = traffic.text if metrics == "traffic" else metrics
        self.ctl = Controller(self.cfg, self.root, self.stores, metrics_source=source,
                              clock=lambda: self.now[0])

    def deploy(self, name: str, strategy: str, automation: str, **kw: Any) -> Any:
        from cd4ml.rollout import manage

        manage.deploy(self.stores, self.cfg, name, alias="production", strategy=strategy,
                      automation=automation, who="ann", **kw)
        return manage.offer_candidate(self.stores, self.cfg, name, 1, who="ann")

    def state(self, name: str) -> Any:
        from cd4ml.rollout import manage

        return manage.effective_deployment(self.stores, self.cfg, name)

    def tick(self, name: str, advance: float = 0.0) -> dict[str, Any]:
        self.now[0] += advance
        got = [e for e in self.ctl.tick() if e["deployment"] == name]
        assert len(got) <= 1
        return got[0] if got else {"action": "not visited"}

    def events(self, name: str) -> list[dict[str, Any]]:
        return self.stores.metadata.list_audit(object=f"deployment:{name}")

    def close(self) -> None:
        self.stores.__exit__(None, None, None)


@pytest.fixture()
def world(project):
    w = World(*project)
    yield w
    w.close()


def _step_traffic(w: World, name: str, *, canary: int = 300, **kw: Any) -> None:
    w.traffic.send(name, 2, "stable", 600)
    w.traffic.send(name, 1, "canary", canary, **kw)


# -- canary ------------------------------------------------------------------------------

def test_automatic_canary_walks_its_steps_on_successful_analyses(world: World) -> None:
    state = world.deploy("auto", "canary", "automatic", steps=[0.1, 0.5, 1.0])
    assert (state.step, state.shares()) == (0, {"v2": 0.9, "v1": 0.1})
    assert world.tick("auto")["action"] == "step began"
    _step_traffic(world, "auto")
    wait = world.tick("auto", STEP_S - 1)
    assert wait["action"] == "wait" and world.state("auto").revision == state.revision
    done = world.tick("auto", 1)
    assert done["action"] == "promote", done
    results = {r["metric"]: r for r in done["analysis"]["results"]}
    assert set(results) == {"error_rate", "latency_p99", "drift", "quality", "estimated"}
    assert all(r["result"] == "Successful" for r in results.values()), results
    assert results["quality"]["samples"] == 300 and results["error_rate"]["samples"] == 30
    assert results["drift"]["samples"] == 300  # the canary's rows of this step only
    now = world.state("auto")
    assert (now.step, now.shares(), now.revision) == (1, {"v2": 0.5, "v1": 0.5},
                                                       state.revision + 1)
    # the next step: its own baseline, its own window of the log
    assert world.tick("auto")["action"] == "step began"
    _step_traffic(world, "auto", canary=400)
    done = world.tick("auto", STEP_S)
    assert done["action"] == "promote"
    assert {r["metric"]: r["samples"] for r in done["analysis"]["results"]}["quality"] == 400
    final = world.state("auto")
    assert final.status == "stable" and final.shares() == {"v1": 1.0}
    hist = world.stores.metadata.deployment_history("auto")
    mine = [h for h in hist if h["actor"] == "controller"]
    assert [h["action"] for h in mine] == ["promote", "promote"]
    assert all(h["reason"].startswith("analysis Successful: error_rate: ") for h in mine)
    audit = [e for e in world.events("auto") if e["action"] == "deployment_analysis"]
    assert len(audit) == 2 and audit[0]["detail"]["decision"] == "promote"
    assert world.tick("auto")["action"] == "not visited"  # stable: nothing to do


def test_a_canary_that_raises_is_aborted_at_once(world: World) -> None:
    world.deploy("raises", "canary", "automatic", steps=[0.1, 1.0])
    world.tick("raises")
    _step_traffic(world, "raises", errors=12)  # 12 of 42 requests raised
    done = world.tick("raises", STEP_S)
    assert done["action"] == "abort"
    assert done["reason"].startswith("analysis Failed: error_rate Failed: 28.6 % (12 of 42) "
                                     "vs stable 0 % (0 of 60)")
    st = world.state("raises")
    assert st.status == "aborted" and st.shares() == {"v2": 1.0}


def test_a_slow_canary_is_aborted_even_when_assisted(world: World) -> None:
    world.deploy("slow", "canary", "assisted", steps=[0.1, 1.0])
    world.tick("slow")
    _step_traffic(world, "slow", slow_s=2.0)
    done = world.tick("slow", STEP_S)
    assert done["action"] == "abort" and "latency_p99 Failed" in done["reason"]
    assert world.state("slow").status == "aborted"


def test_too_few_labels_is_inconclusive_and_pauses_for_a_person(world: World) -> None:
    world.deploy("few", "canary", "automatic", steps=[0.1, 1.0])
    world.tick("few")
    _step_traffic(world, "few", labelled=50)
    done = world.tick("few", STEP_S)
    assert done["action"] == "pause"
    assert "quality Inconclusive: roc_auc: 50 labelled rows of the canary, fewer than " \
           "min_samples 100" in done["reason"]
    assert world.state("few").status == "paused"
    assert world.tick("few", STEP_S)["action"] == "not visited"  # a person decides now


def test_manual_runs_no_analysis(world: World) -> None:
    world.deploy("hands", "canary", "manual", steps=[0.1, 1.0])
    before = len(world.events("hands"))
    for _ in range(2):
        got = world.tick("hands", STEP_S)
        assert got["action"] == "none" and "manual" in got["reason"]
    assert len(world.events("hands")) == before and world.state("hands").step == 0


def test_assisted_proposes_and_waits_for_cd4ml_rollout_promote(world: World, project, capsys,
                                                               monkeypatch) -> None:
    state = world.deploy("helped", "canary", "assisted", steps=[0.1, 0.5, 1.0])
    world.tick("helped")
    _step_traffic(world, "helped")
    got = world.tick("helped", STEP_S)
    assert (got["action"], got["proposal"]) == ("propose", "promote")
    assert world.state("helped").revision == state.revision  # nothing changed
    got = world.tick("helped", STEP_S)  # the same result again: not recorded twice
    assert got["proposal"] == "promote"
    audit = [e for e in world.events("helped") if e["action"] == "deployment_analysis"]
    assert len(audit) == 1 and audit[0]["actor"] == "controller"
    assert audit[0]["reason"].endswith("proposes: promote (cd4ml rollout promote helped)")
    monkeypatch.setattr(sys, "argv", ["cd4ml", "rollout", "status", "helped", "-p",
                                      str(project[0])])
    main()
    out = capsys.readouterr().out
    assert f"analysis (revision {state.revision}," in out and "controller): analysis " \
           "Successful" in out
    from cd4ml.rollout import manage

    manage.step(world.stores, world.cfg, "helped", "promote", who="ann")  # the person
    assert world.tick("helped")["action"] == "step began"
    assert world.state("helped").step == 1


def test_a_deployment_changed_meanwhile_is_retried_on_the_next_tick(project) -> None:
    from cd4ml.rollout import manage

    armed = [False]

    def metrics_then_an_admin() -> str:
        if armed[0]:  # the tick has read every state: an admin moves this one on now
            armed[0] = False
            manage.step(w.stores, w.cfg, "race", "promote", who="bob")
        return project[1].text()

    w = World(*project, metrics=metrics_then_an_admin)
    try:
        w.deploy("race", "canary", "automatic", steps=[0.1, 0.5, 1.0])
        w.tick("race")
        _step_traffic(w, "race")
        armed[0] = True
        got = w.tick("race", STEP_S)
        assert got["action"] == "conflict" and "retried on the next tick" in got["reason"]
        st = w.state("race")
        assert st.step == 1 and w.stores.metadata.deployment_history("race")[-1]["actor"] \
            == "bob"
        assert w.tick("race")["action"] == "step began"  # the admin's step, analysed anew
    finally:
        w.close()


# -- bandit and A/B ----------------------------------------------------------------------

def test_bandit_shares_move_toward_the_better_arm(world: World) -> None:
    state = world.deploy("bandit", "bandit", "automatic", split=0.5)
    assert state.shares() == {"v2": 0.5, "v1": 0.5}
    world.traffic.send("bandit", 2, "stable", 300, reward=lambda r: float(r.random() < 0.3))
    world.traffic.send("bandit", 1, "arm", 300, reward=lambda r: float(r.random() < 0.6))
    # bad rewards: not finite, outside [0, 1], NaN (the log keeps it as none), and a
    # reward for a request the log never saw
    world.traffic.send("bandit", 1, "arm", 20, reward=lambda r: float("inf"))
    world.traffic.send("bandit", 2, "stable", 10, reward=lambda r: 3.0)
    world.traffic.send("bandit", 2, "stable", 10, reward=lambda r: float("nan"))
    world.traffic.plog.add_feedback([{"request_id": "nobody", "row": 0, "reward": 1.0}])
    got = world.tick("bandit")
    assert got["action"] == "reweight", got
    doc = got["bandit"]
    assert doc["ignored"] == {"reward not a finite number": 20,
                              "reward outside [0, 1] (a binary bandit)": 10}
    assert doc["outcomes"]["without_feedback"] == 10
    pulls = {a: v["pulls"] for a, v in doc["state"]["arms"].items()}
    assert pulls == {"v2": 300, "v1": 300}
    st = world.state("bandit")
    assert st.shares()["v1"] > 0.9 and st.shares()["v2"] >= 0.01  # floored at min_share
    assert st.status == "progressing" and st.revision == state.revision + 1
    assert world.stores.metadata.deployment_history("bandit")[-1]["action"] == "reweight"
    assert world.tick("bandit")["action"] == "wait"  # update_s not yet passed
    again = world.tick("bandit", 60)
    assert again["action"] == "none" and "not more than 1" in again["reason"]


def test_ab_comparison_is_recorded_shown_and_decided(world: World, project, capsys,
                                                     monkeypatch) -> None:
    world.deploy("abtest", "ab", "assisted", split=0.5)
    world.traffic.send("abtest", 2, "stable", 200)
    world.traffic.send("abtest", 1, "arm", 200)
    got = world.tick("abtest")
    assert got["ab"]["outcome"]["kind"] == "correct"  # no rewards: right or wrong labels
    assert got["ab"]["a"]["n"] == 200 and got["ab"]["decision"] in (
        "keep collecting", "no detectable difference")
    monkeypatch.setattr(sys, "argv", ["cd4ml", "rollout", "status", "abtest", "--json",
                                      "-p", str(project[0])])
    main()
    doc = json.loads(capsys.readouterr().out)
    assert doc["controller"]["ab"]["reason"].startswith("A/B v1 vs v2 on correct: ")
    # automatic, with rewards clearly better for the candidate: promoted
    world.deploy("abwin", "ab", "automatic", split=0.5)
    world.traffic.send("abwin", 2, "stable", 400, reward=lambda r: float(r.random() < 0.2))
    world.traffic.send("abwin", 1, "arm", 400, reward=lambda r: float(r.random() < 0.6))
    got = world.tick("abwin")
    assert got["action"] == "promote" and "B better" in got["reason"], got
    assert world.state("abwin").shares() == {"v1": 1.0}


# -- bad input, the CLI, the lock, and cd4ml serve ---------------------------------------

@pytest.mark.parametrize("override, text", [
    ("rollout.analysis.latency.max_ratio=0.5", "rollout.analysis.latency.max_ratio = 0.5"),
    ("rollout.step_s=soon", "rollout.step_s = 'soon': 'soon' is not a duration"),
    ("rollout.bandit.policy=ucb", "rollout.bandit.policy = 'ucb'"),
    ("rollout.ab.min_n=100", None),
])
def test_bad_thresholds_are_one_line_naming_the_field(project, capsys, monkeypatch, override,
                                                      text) -> None:
    monkeypatch.setattr(sys, "argv", ["cd4ml", "rollout", "controller", "--once", "--metrics-url",
                                      "none", "-p", str(project[0]), "--set", override])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    if text is None:
        assert code == 0, err
        return
    assert code == 1 and text in err and err.count("\n") == 1, err


def test_once_under_the_lock_held_elsewhere_is_refused(project, capsys, monkeypatch) -> None:
    from cd4ml.rollout.watch import lock_path
    from cd4ml.store import project_lock

    monkeypatch.setattr(sys, "argv", ["cd4ml", "rollout", "controller", "--once", "--json",
                                      "--metrics-url", "none", "-p", str(project[0])])
    with project_lock(lock_path(project[0])):
        with pytest.raises(SystemExit) as exc:
            main()
    assert exc.value.code == 1
    assert "another cd4ml run holds the project lock" in capsys.readouterr().err
    main()  # free again: one look, as JSON
    assert isinstance(json.loads(capsys.readouterr().out), list)


def test_cd4ml_serve_runs_one_controller_that_walks_a_canary(project) -> None:
    from cd4ml.pipeline.run import open_project
    from cd4ml.rollout import manage

    proj = project[0]
    sets = ["serving.deployment=served", "serving.poll_interval_s=0.2", "rollout.interval_s=0.3",
            "rollout.step_s=1", "rollout.analysis.error_rate.min_samples=10",
            "rollout.analysis.latency.min_samples=10",
            "rollout.analysis.latency.min_increase_ms=1000",  # a p99 of ~20 requests: a max
            "rollout.analysis.drift.enabled=false",
            "rollout.analysis.quality.enabled=false",
            "rollout.analysis.estimated.enabled=false"]
    cfg, _, stores, _ = open_project(proj)
    with stores:
        manage.deploy(stores, cfg, "served", alias="production", strategy="canary",
                      automation="automatic", steps=[0.5, 1.0], who="ann")
    proc, url = start_server(proj, "--no-ui", *sum((["--set", s] for s in sets), []))
    try:
        with stores:
            manage.offer_candidate(stores, cfg, "served", 1, who="ann")
        people = project[1].people.iloc[:200][INPUTS].to_dict("records")
        deadline = time.monotonic() + 60
        state = None
        with httpx.Client(base_url=url, timeout=10) as c:
            while time.monotonic() < deadline:
                for p in people[:40]:
                    assert c.post("/predict", json=p).status_code == 200
                with stores:
                    state = manage.effective_deployment(stores, cfg, "served")
                if state.status == "stable":
                    break
        assert state is not None and state.status == "stable" and state.shares() == {"v1": 1.0}
        with stores:
            hist = stores.metadata.deployment_history("served")
        last = hist[-1]
        assert (last["action"], last["actor"]) == ("promote", "controller")
        assert last["reason"].startswith("analysis Successful: error_rate: ")
        # one controller per project: this one waits for the server's lock
        from cd4ml.errors import LockedError
        from cd4ml.rollout.watch import run_once

        with pytest.raises(LockedError):
            run_once(proj)
    finally:
        stop_server(proc)


def test_the_readmes_rollout_section_is_a_valid_config() -> None:
    from cd4ml.config.loading import parse_yaml
    from cd4ml.config.rollout import RolloutConfig

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = text.split("### The rollout controller")[1].split("```yaml")[1].split("```")[0]
    got = RolloutConfig.model_validate(parse_yaml(block)["rollout"])
    assert got == RolloutConfig()  # the README shows the defaults
