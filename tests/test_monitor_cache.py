"""Monitoring windows from the per-block cache equal windows read from the log itself, and
a new day of log costs its own blocks only.

A real server logs ACS people of 2017-2018 in several flushes (blocks); the same windows
are judged twice, once on ``read_window`` (the log decoded, every per-row figure
computed on the spot) and once on ``window_frame`` (the cache), and must agree on every
figure. Then more traffic arrives: only its blocks are decoded; late feedback shows in
the next window although the rows it labels were cached before it came.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import start_server, stop_server
from tabular_projects import acs_path, acs_project

from cd4ml.monitoring import DriftSettings, reference_of
from cd4ml.pipeline.monitor_cache import SMALL_PARTS, PartCache, cache_path, window_frame
from cd4ml.pipeline.monitor_log import judge_frame, read_window
from cd4ml.pipeline.run import open_project, run_pipeline
from cd4ml.predlog import block_index

INPUTS = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
          "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]


def _send(url: str, frame: pd.DataFrame, tag: str, *, feedback: bool = True,
          pause: float = 0.3, size: int = 250) -> list[tuple[str, list[int]]]:
    """Requests of ``size`` rows, ``pause`` apart (so that they land in several blocks),
    each with an event time (its person's year and a day), then their labels unless not."""
    sent = []
    with httpx.Client(base_url=url, timeout=60) as c:
        for k, start in enumerate(range(0, len(frame), size)):
            part = frame.iloc[start:start + size]
            rid = f"{tag}-{k}"
            r = c.post("/predict", json=part[INPUTS].to_dict("records"), headers={
                "X-Request-Id": rid,
                "X-Event-Time": f"{int(part.year.iloc[0])}-03-{1 + k % 28:02d}"})
            assert r.status_code == 200, r.text
            sent.append((rid, part.employed.astype(int).tolist()))
            time.sleep(pause)
        if feedback:
            _feedback(c, sent)
    return sent


def _feedback(c: httpx.Client, sent: list[tuple[str, list[int]]]) -> None:
    r = c.post("/feedback", json=[{"request_id": rid, "actuals": ys} for rid, ys in sent])
    assert r.status_code == 200, r.text


def _same(a: Any, b: Any, path: str = "") -> None:
    """Two judgements equal: numbers within 1e-9 (NaN equals NaN), all else exactly."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, set(a) ^ set(b))
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9,
                                                                       abs=1e-12), path
    else:
        assert a == b, (path, a, b)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    proj = acs_project(tmp_path_factory.mktemp("cache") / "acs", changes={
        "evaluation": {"bootstrap": 0},
        "monitoring": {"interval_s": 0, "drift": {"multivariate": True}}})
    assert run_pipeline(proj).registered
    full = pd.read_parquet(acs_path())
    later = full[full.year.isin([2017, 2018])].sample(4000, random_state=7)
    later = later.sort_values("year", kind="stable").reset_index(drop=True)
    proc, url = start_server(proj)
    try:
        yield proj, url, later
    finally:
        stop_server(proc)


class _Judge:
    def __init__(self, proj: Path) -> None:
        self.cfg, _, self.stores, self.root = open_project(proj)
        self.stores.__enter__()
        self.row = self.stores.metadata.resolve(self.cfg.models.name, self.cfg.serving.alias)
        self.ref = reference_of(self.row, self.stores.artifacts).reference
        self.manifest = self.stores.artifacts.get_json(self.row["digest"])
        self.settings = DriftSettings.from_config(self.cfg.monitoring.drift)
        self.directory = self.cfg.serving.log.folder_in(self.root)

    def close(self) -> None:
        self.stores.__exit__(None, None, None)

    def direct(self, **window: Any) -> dict[str, Any]:
        df = read_window(self.directory, model=self.row["model_name"],
                         version=self.row["version"], **window)
        return judge_frame(self.cfg, self.stores, self.row, self.ref, self.settings, df,
                           self.manifest, {})

    def cached(self, cache: PartCache, **window: Any) -> dict[str, Any]:
        df = window_frame(self.cfg, self.root, self.stores, self.row, self.ref,
                          self.manifest, {}, cache=cache, settings=self.settings, **window)
        assert "monitor.recon" in df.columns or not len(df)  # derived once, in the cache
        return judge_frame(self.cfg, self.stores, self.row, self.ref, self.settings, df,
                           self.manifest, {})


def test_cached_windows_equal_direct_ones_and_a_new_day_costs_its_blocks(served) -> None:
    proj, url, later = served
    _send(url, later.iloc[:2500], "a")
    j = _Judge(proj)
    try:
        blocks = block_index(j.directory)
        assert len(blocks) >= 5, "the traffic should span several blocks"
        ts = np.sort([b.ts_min for b in blocks])
        mid = float((ts[len(ts) // 2 - 1] + ts[len(ts) // 2]) / 2)
        whole = {"since": None, "until": None}
        with PartCache(cache_path(j.root)) as cache:
            cold = j.cached(cache, **whole)
            assert cache.written == len(blocks) and cache.read == 0  # decoded, not read back
        direct = j.direct(**whole)
        assert direct["rows"] == 2500 and direct["quality"]["state"] == "ok"
        assert direct["estimated"]["roc_auc"] is not None
        assert direct["multivariate"]["state"] in ("ok", "drifted")
        assert direct["skew"]["state"] == "ok" and direct["skew"]["rows"] == 2500
        _same(cold, direct)
        with PartCache(cache_path(j.root)) as cache:  # warm: nothing decoded
            for window in (whole, {"since": mid, "until": None},
                           {"since": None, "until": mid},
                           {"since": None, "until": None, "last": 777}):
                _same(j.cached(cache, **window), j.direct(**window))
            assert cache.written == 0 and cache.read >= 4
        # a window cut inside a block: rows of that block on both sides
        inside = float(np.median(
            [b.ts_min + (b.ts_max - b.ts_min) / 2 for b in blocks if b.ts_max > b.ts_min]
            or [mid]))
        with PartCache(cache_path(j.root)) as cache:
            _same(j.cached(cache, since=inside, until=None), j.direct(since=inside,
                                                                     until=None))

        # a new "day" of traffic, its labels not yet in: only its blocks are decoded
        sent = _send(url, later.iloc[2500:], "b", feedback=False)
        new = [b for b in block_index(j.directory) if b.key not in {x.key for x in blocks}]
        assert new
        with PartCache(cache_path(j.root)) as cache:
            before = j.cached(cache, **whole)
            assert cache.written == len(new)
        assert before["rows"] == 4000 and before["quality"]["rows"] == 2500
        # the labels arrive after their rows were cached: the next window joins them
        with httpx.Client(base_url=url, timeout=60) as c:
            _feedback(c, sent)
        with PartCache(cache_path(j.root)) as cache:
            after = j.cached(cache, **whole)
            assert cache.written == 0
        assert after["quality"]["rows"] == 4000
        _same(after, j.direct(**whole))
        # by event time: the cached event range cuts the 2017 requests from 2018's
        since = pd.Timestamp("2018-01-01", tz="UTC").timestamp()
        with PartCache(cache_path(j.root)) as cache:
            ev = window_frame(j.cfg, j.root, j.stores, j.row, j.ref, j.manifest, {},
                              cache=cache, since=since, until=None, by="event")
        assert (ev["event_ts"] >= pd.Timestamp("2018-01-01", tz="UTC")).all()
        ref_rows = read_window(j.directory, model=j.row["model_name"],
                               version=j.row["version"], since=None, until=None)
        assert len(ev) == int((ref_rows["event_ts"] >= pd.Timestamp("2018-01-01",
                                                                    tz="UTC")).sum())
    finally:
        j.close()


def test_small_parts_merge_and_a_segment_gone_drops_its_rows(served, tmp_path: Path) -> None:
    """A cache filled a few blocks at a time (a monitor every minute) merges its small
    parts, and windows read from merged parts equal direct ones; the blocks of a segment
    no longer in the log leave the cache."""
    proj, url, later = served
    _send(url, later.iloc[:500], "c", size=20, pause=0.25)
    j = _Judge(proj)
    try:
        blocks = block_index(j.directory)
        assert len(blocks) > SMALL_PARTS + 1
        with PartCache(tmp_path / "c.db") as cache:
            for k in range(1, len(blocks) + 1):  # one more block each round
                until = float(np.nextafter(blocks[k - 1].ts_max, np.inf)) \
                    if k < len(blocks) else None
                j.cached(cache, since=None, until=until)
            assert cache.merged > SMALL_PARTS
            assert cache.written == len(blocks)
            assert cache.size()["parts"] <= SMALL_PARTS + 1
            _same(j.cached(cache, since=None, until=None), j.direct(since=None, until=None))
            assert cache.prune({b.segment for b in blocks}) == 0
            one = blocks[0].segment
            gone = cache.prune({b.segment for b in blocks} - {one})
            assert gone >= sum(b.segment == one for b in blocks)
            assert cache.size(one) == {"blocks": 0}
    finally:
        j.close()


def test_the_timeline_judges_again_only_windows_whose_rows_or_labels_changed(served) -> None:
    from cd4ml.pipeline.monitor_timeline import timeline

    proj, url, later = served
    since = time.time()
    sent = _send(url, later.iloc[:1000], "d", feedback=False)
    first = timeline(proj, by="count", size=250, since=since)
    assert [w["rows"] for w in first["windows"]] == [250] * 4 and first["reused"] == 0
    again = timeline(proj, by="count", size=250, since=since)
    assert again["reused"] == 4
    _same(again["windows"], first["windows"])
    with httpx.Client(base_url=url, timeout=60) as c:  # the second request's labels only
        _feedback(c, sent[1:2])
    late = timeline(proj, by="count", size=250, since=since)
    assert late["reused"] == 3
    assert [w["quality"]["rows"] for w in late["windows"]] == [0, 250, 0, 0]
    for k in (0, 2, 3):
        _same(late["windows"][k], first["windows"][k])


def test_a_timeline_by_time_reads_only_windows_that_changed(served) -> None:
    """Windows of log time whose blocks are those they were judged on and whose requests
    got no label since are not read at all; a label for one request re-reads its window
    only, and the figures equal a timeline judged afresh."""
    from cd4ml.pipeline.monitor_timeline import timeline

    proj, url, later = served
    since = time.time()
    sent = []
    for k in range(3):  # three 5-second windows, a request each
        sent += _send(url, later.iloc[k * 250:(k + 1) * 250], f"w{k}", feedback=False,
                      pause=0)
        time.sleep(5)
    first = timeline(proj, by="time", size="5s", since=since)
    n = len(first["windows"])
    assert n >= 3 and sum(w["rows"] for w in first["windows"]) == 750
    again = timeline(proj, by="time", size="5s", since=since)
    assert again["reused"] == n and again["read"] == 0 and again["decoded"] == 0
    _same(again["windows"], first["windows"])
    with httpx.Client(base_url=url, timeout=60) as c:
        _feedback(c, sent[1:2])
    late = timeline(proj, by="time", size="5s", since=since)
    assert late["reused"] == n - 1 and late["read"] >= 1
    labelled = [w["quality"]["rows"] for w in late["windows"]]
    assert sorted(labelled) == [0] * (n - 1) + [250]
    cache_path(proj).unlink()  # judged afresh from nothing: the same figures
    for suffix in ("-wal", "-shm"):
        cache_path(proj).with_name(cache_path(proj).name + suffix).unlink(missing_ok=True)
    _same(timeline(proj, by="time", size="5s", since=since)["windows"], late["windows"])
