"""Shadow versions scored in a process of their own (cd4ml.serving.shadow_process): a
batch of copies gets one model call per version and the same answers as one call per
request; a copy the shadow refuses is counted, not fatal; the process loads the versions
from the registry, writes the log itself and reports its counts back to the worker."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from tabular_servables import register, wine_parts, write_project

from cd4ml import predlog
from cd4ml.predlog import PredictionLog
from cd4ml.serving.router import Route, ShadowJob
from cd4ml.serving.shadow_process import ShadowCopy, ShadowProcess, ShadowSpec, score_batch

NAME = "wine-shadow"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    proj = write_project(tmp_path_factory.mktemp("shadowproc"), name=NAME,
                         task="classification", target="target")
    parts, df = wine_parts()
    register(proj, NAME, parts)
    rows = df.drop(columns=["target"]).to_dict("records")
    return proj, rows


def _copy(i: int, records: list[dict]) -> ShadowCopy:
    return ShadowCopy(NAME, ((NAME, 1),), records, None, f"req-{i}", "/predict",
                      "application/json", None)


def test_a_batch_is_one_model_call_with_the_answers_of_one_call_per_request(
        project: tuple[Path, list[dict]], tmp_path: Path) -> None:
    from cd4ml.config import load_config
    from cd4ml.serving.shadow_process import _Versions

    proj, rows = project
    cfg, _ = load_config(proj)
    versions = _Versions(cfg, proj)
    c = versions.contract(NAME, 1)
    calls: list[int] = []
    real = c.model.predict_encoded

    def counted(X: np.ndarray) -> np.ndarray:
        calls.append(len(X))
        return real(X)

    c.model.predict_encoded = counted  # counts the calls; the real model answers
    bad = dict(rows[0], alcohol="strong")  # refused by the signature: not a number
    copies = [_copy(0, rows[0:1]), _copy(1, rows[1:4]), _copy(2, [bad]), _copy(3, rows[4:6])]
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=10)
    try:
        (out,) = score_batch(copies, versions, plog)
    finally:
        plog.close()
        versions.close()
    assert calls == [6], "one model call for the six rows of the three good copies"
    assert out.counts == {(1, "error"): 1, (1, "ok"): 3}
    assert len(out.latencies[1]) == 3
    df = predlog.predictions(tmp_path / "log", with_features=False)
    assert set(df.arm) == {"shadow"} and set(df.version) == {1}
    assert sorted(df.request_id.unique()) == ["req-0", "req-1", "req-3"]
    c.model.predict_encoded = real
    for copy in (copies[0], copies[1], copies[3]):
        mine = df[df.request_id == copy.request_id].sort_values("row")
        alone = c.predict(c.check(copy.records))
        logged = mine[["probability_0", "probability_1", "probability_2"]].to_numpy()
        assert np.allclose(logged, alone, rtol=0, atol=1e-12)


def test_the_process_loads_the_version_writes_the_log_and_reports_back(
        project: tuple[Path, list[dict]]) -> None:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    class Metrics:  # the worker's two metric families, on a registry of the test's own
        def __init__(self) -> None:
            reg = CollectorRegistry()
            self.shadow = Counter("shadow", "", ["deployment", "version", "outcome"],
                                  registry=reg)
            self.routed_latency = Histogram("lat", "", ["deployment", "version", "role"],
                                            registry=reg)
            self.registry = reg

    proj, rows = project
    logdir = proj / ".cd4ml" / "predictions"
    m = Metrics()
    sp = ShadowProcess(ShadowSpec(str(proj)), maxsize=64, metrics=m)
    model = type("V", (), {"name": NAME, "version": 1})()
    route = Route(NAME, model, "shadow", None)
    try:
        assert sp.status()["runs_in"] == "process" and sp.status()["pid"] != os.getpid()
        for i in range(20):
            assert sp.offer(ShadowJob(rows[i:i + 2], None, f"p-{i}", "/predict",
                                      "application/json", None, (route,)))
        deadline = time.monotonic() + 60
        while sp.done < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = sp.proc.pid
    finally:
        sp.close()
    assert sp.done == 20
    assert m.registry.get_sample_value(
        "shadow_total", {"deployment": NAME, "version": "1", "outcome": "ok"}) == 20
    assert m.registry.get_sample_value(
        "lat_count", {"deployment": NAME, "version": "1", "role": "shadow"}) == 20
    df = predlog.predictions(logdir, with_features=False)
    assert sorted(df.request_id.unique()) == sorted(f"p-{i}" for i in range(20))
    assert len(df) == 40 and set(df.arm) == {"shadow"}
    assert list(logdir.rglob(f"seg-*-p{pid}.db")), "written by the shadow process"


def test_a_shadow_process_that_dies_is_started_again(project: tuple[Path, list[dict]],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import cd4ml.serving.shadow_process as sp_mod

    monkeypatch.setattr(sp_mod, "RESTART_S", 0.0)  # at once, not after 10 s
    proj, rows = project
    sp = ShadowProcess(ShadowSpec(str(proj)), maxsize=64)
    model = type("V", (), {"name": NAME, "version": 1})()
    route = Route(NAME, model, "shadow", None)

    def job(i: int) -> ShadowJob:
        return ShadowJob(rows[i:i + 1], None, f"again-{i}", "/predict", "application/json",
                         None, (route,))

    try:
        first = sp.proc.pid
        sp.proc.kill()
        sp.proc.wait(10)
        assert not sp.status()["alive"]
        sp.offer(job(0))  # found dead at this send: dropped, and the process started again
        assert sp.proc.pid != first and sp.status()["alive"]
        for i in range(1, 6):
            sp.offer(job(i))
        deadline = time.monotonic() + 60
        while sp.done < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sp.close()
    assert sp.done == 5
