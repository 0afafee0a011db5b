"""Monitoring windows computed incrementally: what adding a day of log costs as history
grows, the per-block cache (``monitor_cache.window_frame``) against reading the log
(``read_window``) (issue 13, point 6).

Usage (unattended; trains the example in a temporary copy, ~1 min, unless --project):

    .venv/bin/python benchmarks/monitor_incremental.py        # 28 days of 7,500 rows
    .venv/bin/python benchmarks/monitor_incremental.py --days 3 --rows-per-day 1000  # smoke
    options: --days 28  --rows-per-day 7500  --request-rows 100  --at 7,14  --runs 3
             --project DIR (a trained copy to reuse; its log and cache are rewritten)
             --data FILE  --seed 0  --out FILE

The default run takes about 7 min on 2 cores with ``--project`` (8 with the training),
most of it the direct timelines (34 s each at 28 days).

The project is ``examples/employment`` copied to a temporary folder (its config and
schema; the data put there as ``make employment-data`` does, then ``cd4ml run``), so the
example's own folder is never touched. The run trains only the candidate the example
selects (LightGBM) and skips the bootstrap of its evaluation report (``--set``): the
registered model is the same files as a full run's, a minute sooner. The log is written
through the serving path in process, without HTTP: the alias's version loaded and warmed
up as ``cd4ml serve`` loads it (``load_version``, ``warm_up``), each request checked,
encoded and predicted by its contract and logged with ``TabularContract.log_record`` to
a ``PredictionLog`` on the project's log folder, whose clock is the simulated time.
Traffic: D days from a fixed Monday (UTC), R rows a day drawn from the 2017-2018 people
(without replacement within a day), requests of 100 rows at uniform times of their day;
one flush per request (minutes apart, as a server's 200 ms writer would commit them: a
block each). The labels of 90 % of the requests come back by ``add_feedback`` (the store
``/feedback`` writes), three in four within hours, the others one to four days late,
posted on the hour (a labelling job's batches) at their simulated time.

The log is built a day at a time; after each day the cache takes that day (as a monitor
evaluating every day would), and after day k for each k of ``--at`` (default 7, 14 and
the last day) it is measured, each figure the median of ``--runs`` runs:

- one-day window (day k): direct (``read_window`` + ``judge_frame``), cached with the
  cache holding days 1..k-1 (restored from a copy before each run: the cost of adding
  day k), and cached warm (nothing new);
- the timeline of 1-day windows over all history: direct (the whole log read once, each
  day's slice judged: what ``monitor_timeline.timeline`` did before the cache) and
  ``timeline`` as it is (the rows from the cache, a window whose rows and labels did not
  change since it was last judged reused): after adding day k (the cache, with the
  earlier days' judgements, restored before each run) and warm. Every day of the log
  also runs ``timeline`` once, as a dashboard open on it would.

A run's memo (the version's transform and calibrator) is fresh, as for a ``cd4ml
monitor`` call. Every cached judgement is checked against the direct one (numbers within
1e-9, the rest equal) and the script stops on the first difference. Printed: a line per
run, the table (seconds, blocks decoded, direct/cached), the growth from the first k to
the last, and the cache file's size beside the log folder's. Results go to
``benchmarks/results/monitor_incremental-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _servingbench.project import machine_info
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "employment"
DATA = ROOT.parent / "shared" / "data" / "acs-employment-ma" / "employment.parquet"
DAY = 86400.0
START = datetime(2025, 3, 3, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
FEEDBACK_SHARE, LATE_SHARE = 0.9, 0.25
console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--rows-per-day", type=int, default=7_500)
    ap.add_argument("--request-rows", type=int, default=100)
    ap.add_argument("--at", default="7,14", help="days after which to measure (the last "
                                                  "day always is)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--project", type=Path, default=None,
                    help="a trained copy of the example to reuse (else one is made)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="results JSON path")
    a = ap.parse_args(argv)
    if a.days < 1 or a.rows_per_day < 1 or a.request_rows < 1 or a.runs < 1:
        ap.error("--days, --rows-per-day, --request-rows and --runs must be at least 1")
    a.points = sorted({int(x) for x in a.at.split(",") if x.strip() and
                       0 < int(x) < a.days} | {a.days})
    return a


# -- the project and its traffic ---------------------------------------------------------
def prepare(dest: Path, data: Path) -> Path:
    """A copy of the example in ``dest``, its data put there and its pipeline run; one
    already trained is reused (its log and monitor cache removed)."""
    from cd4ml.pipeline.monitor_cache import cache_path

    cd4ml = str(Path(sys.executable).with_name("cd4ml"))
    if not (dest / "cd4ml.yaml").is_file():
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(EXAMPLE / "cd4ml.yaml", dest / "cd4ml.yaml")
        shutil.copytree(EXAMPLE / "schema", dest / "schema")
    if not (dest / "data" / "employment.parquet").is_file():
        subprocess.run([cd4ml, "example-data", str(dest / "data"), "--dataset", "employment",
                        "--shared", str(data.parent)], check=True)
    from cd4ml.config import load_config

    cfg, raw = load_config(dest)
    if not (dest / ".cd4ml").is_dir():
        chosen = [c for c in raw["models"]["candidates"] if c["name"] == "lightgbm"]
        console.print(f"[bold]training the example in {dest}[/bold] (cd4ml run, ~1 min)")
        t0 = time.perf_counter()
        res = subprocess.run([cd4ml, "run", "-p", str(dest), "--set", "evaluation.bootstrap=0",
                              *(["--set", f"models.candidates={json.dumps(chosen)}"]
                                if chosen else [])], check=False, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"cd4ml run -p {dest} failed:\n{res.stdout[-2000:]}"
                             f"{res.stderr[-2000:]}")
        console.print(f"  trained in {time.perf_counter() - t0:.0f} s")
    shutil.rmtree(cfg.serving.log.folder_in(dest), ignore_errors=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{cache_path(dest)}{suffix}").unlink(missing_ok=True)
    return dest


class Traffic:
    """The served version in process and a prediction log on simulated time."""

    def __init__(self, root: Path, a: argparse.Namespace) -> None:
        from cd4ml.pipeline.run import open_project
        from cd4ml.predlog import PredictionLog
        from cd4ml.registry.loader import load_version
        from cd4ml.serving.contracts import contract_for
        from cd4ml.serving.hotswap import warm_up

        cfg, _, stores, _ = open_project(root)
        s = cfg.serving
        with stores:  # as cd4ml serve's loader does
            row = stores.metadata.resolve(cfg.models.name, s.alias)
            model = load_version(stores.metadata, stores.artifacts, cfg.models.name,
                                 row["version"], forecast_table=s.forecast_table)
        warm_up(model)
        self.contract = contract_for(model, log=True)
        self.fields = list(self.contract.fields)
        self.now = START
        # retention: kept past the simulated period, or the writer's sweep deletes days
        self.plog = PredictionLog(
            s.log.folder_in(root), flush_interval_ms=s.log.flush_interval_ms,
            max_unflushed=s.log.max_unflushed, max_unflushed_bytes=s.log.max_unflushed_bytes,
            max_block_bytes=s.log.max_block_bytes,
            max_stored_body_bytes=s.log.max_stored_body_bytes, when_full=s.log.when_full,
            rotate_hours=s.log.rotate_hours,
            retention_days=max(s.log.retention_days, a.days + 7),
            store_request=s.log.store_request, clock=lambda: self.now)
        people = pd.read_parquet(a.data)
        self.people = people[people.year.isin([2017, 2018])].reset_index(drop=True)
        self.rows, self.size = a.rows_per_day, a.request_rows
        self.rng = np.random.default_rng(a.seed)
        #: labels to come, by the hour they are posted (a labelling job posting hourly)
        self.pending: dict[float, list[dict[str, Any]]] = {}
        self.hours: list[float] = []
        self.sent = 0

    def _deliver(self, until: float) -> None:
        """The labels posted before ``until``, an hour's at a time, at that hour."""
        while self.hours and self.hours[0] < until:
            self.now = heapq.heappop(self.hours)
            self.plog.add_feedback(self.pending.pop(self.now))

    def day(self, d: int) -> None:
        """Day ``d`` (0-based) of traffic, and the labels that come back during it."""
        lo = START + d * DAY
        pick = self.rng.choice(len(self.people), size=self.rows, replace=False)
        frame = self.people.iloc[pick]
        records = frame[self.fields].to_dict("records")
        labels = frame["employed"].astype(float).tolist()
        n = math.ceil(self.rows / self.size)
        times = np.sort(self.rng.uniform(lo, lo + DAY, size=n))
        for i, t in enumerate(times.tolist()):
            self._deliver(t)
            part = slice(i * self.size, (i + 1) * self.size)
            raw = json.dumps(records[part]).encode()
            rid = f"d{d + 1:02d}-{i:04d}"
            self.now = t
            t0 = time.perf_counter()
            enc = self.contract.check(json.loads(raw))
            out = self.contract.predict(enc)
            ms = (time.perf_counter() - t0) * 1000
            if not self.plog.append(self.contract.log_record(
                    rid, t, "/predict", ms, enc, out, "application/json", raw)) or \
                    not self.plog.flush():
                raise SystemExit(f"the prediction log dropped request {rid}: "
                                 f"{self.plog.counts()}")
            self.sent += len(labels[part])
            if self.rng.random() < FEEDBACK_SHARE:
                late = self.rng.random() < LATE_SHARE
                at = t + (self.rng.uniform(1, 4) * DAY if late
                          else self.rng.uniform(0.5, 6) * 3600)
                hour = math.ceil(at / 3600) * 3600.0
                if hour not in self.pending:
                    heapq.heappush(self.hours, hour)
                self.pending.setdefault(hour, []).extend(
                    {"request_id": rid, "row": j, "actual": y, "reward": None}
                    for j, y in enumerate(labels[part]))
        self._deliver(lo + DAY)
        self.now = lo + DAY

    def close(self) -> None:
        self.plog.close()


# -- judging windows both ways -----------------------------------------------------------
class Judge:
    """A window judged from the log directly, or from the cache (as tests/test_monitor_cache)."""

    def __init__(self, root: Path) -> None:
        from cd4ml.monitoring import DriftSettings, reference_of
        from cd4ml.pipeline.run import open_project

        self.cfg, _, self.stores, self.root = open_project(root)
        self.stores.__enter__()
        self.row = self.stores.metadata.resolve(self.cfg.models.name, self.cfg.serving.alias)
        self.ref = reference_of(self.row, self.stores.artifacts).reference
        self.manifest = self.stores.artifacts.get_json(self.row["digest"])
        self.settings = DriftSettings.from_config(self.cfg.monitoring.drift)
        self.directory = self.cfg.serving.log.folder_in(self.root)

    def close(self) -> None:
        self.stores.__exit__(None, None, None)

    def _judge(self, df: pd.DataFrame, memo: dict[str, Any]) -> dict[str, Any]:
        from cd4ml.pipeline.monitor_log import judge_frame

        return judge_frame(self.cfg, self.stores, self.row, self.ref, self.settings, df,
                           self.manifest, memo)

    def _read(self, since: float | None, until: float | None) -> pd.DataFrame:
        from cd4ml.pipeline.monitor_log import read_window

        return read_window(self.directory, model=self.row["model_name"],
                           version=self.row["version"], since=since, until=until)

    def _frame(self, cache: Any, since: float | None, until: float | None,
               memo: dict[str, Any]) -> pd.DataFrame:
        from cd4ml.pipeline.monitor_cache import window_frame

        return window_frame(self.cfg, self.root, self.stores, self.row, self.ref,
                            self.manifest, memo, since=since, until=until, cache=cache)

    def direct(self, since: float, until: float) -> list[dict[str, Any]]:
        return [self._judge(self._read(since, until), {})]

    def cached(self, cache: Any, since: float, until: float) -> list[dict[str, Any]]:
        memo: dict[str, Any] = {}
        return [self._judge(self._frame(cache, since, until, memo), memo)]

    def direct_timeline(self) -> list[dict[str, Any]]:
        """The whole log read once, cut into UTC days (timeline's ``_cuts``), each day
        judged: what ``monitor_timeline.timeline`` did before the cache."""
        df, memo = self._read(None, None), {}
        bucket = np.floor(df["ts"].astype("int64").to_numpy() / 1e9 / DAY).astype(np.int64)
        starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
        ends = np.r_[starts[1:], len(df)]
        docs = [self._judge(df.iloc[a:b].reset_index(drop=True), memo)
                for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
        return [{"metrics": d["metrics"], "rows": d["rows"]} for d in docs]

    def timeline(self) -> tuple[list[dict[str, Any]], int]:
        """``monitor_timeline.timeline`` by day as it is: the rows from the cache, and a
        window whose rows and labels are unchanged since it was last judged reused."""
        from cd4ml.pipeline.monitor_timeline import timeline

        doc = timeline(self.root, by="time", size="1d")
        return ([{"metrics": w["metrics"], "rows": w["rows"]} for w in doc["windows"]],
                int(doc["decoded"]))


def same(a: Any, b: Any, path: str = "") -> str | None:
    """Where two judgements differ (numbers within 1e-9, NaN equal to NaN), or None."""
    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            return f"{path}: keys {sorted(set(a) ^ set(b if isinstance(b, dict) else {}))}"
        return next((d for k in a if (d := same(a[k], b[k], f"{path}.{k}"))), None)
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return f"{path}: lengths {len(a)} and {len(b) if hasattr(b, '__len__') else b}"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := same(x, y, f"{path}[{i}]"))),
                    None)
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        ok = (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9,
                                                               abs_tol=1e-12)
        return None if ok else f"{path}: {a!r} != {b!r}"
    return None if a == b else f"{path}: {a!r} != {b!r}"


def agree(what: str, direct: list[dict[str, Any]], cached: list[dict[str, Any]]) -> None:
    if len(direct) != len(cached):
        raise SystemExit(f"{what}: {len(direct)} windows read directly, {len(cached)} cached")
    for i, (x, y) in enumerate(zip(direct, cached, strict=True)):
        where = same(x["metrics"], y["metrics"], "metrics") or same(x, y)
        if where:
            raise SystemExit(f"{what}, window {i + 1}: cached and direct judgements differ "
                             f"at {where}")


# -- measuring ---------------------------------------------------------------------------
def measure(label: str, runs: int, fn: Callable[[], tuple[list[dict[str, Any]], int]],
            before: Callable[[], None] | None = None) -> dict[str, Any]:
    """``fn`` run ``runs`` times (``before`` each, untimed): seconds, blocks decoded."""
    secs, blocks, docs = [], [], []
    for i in range(runs):
        if before is not None:
            before()
        t0 = time.perf_counter()
        docs, n = fn()
        secs.append(time.perf_counter() - t0)
        blocks.append(n)
        console.print(f"    {label:<26} run {i + 1}/{runs}: {secs[-1]:8.3f} s, "
                      f"{n:5d} blocks decoded, {sum(d['rows'] for d in docs):,} rows")
    return {"seconds": statistics.median(secs), "runs_s": secs, "blocks_decoded": blocks,
            "windows": len(docs), "rows": sum(d["rows"] for d in docs), "docs": docs}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() \
        else sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal", "-shm")
                 if Path(f"{path}{s}").exists())


def point(j: Judge, k: int, runs: int, tmp: Path) -> dict[str, Any]:
    """The measurements after day k, the cache holding days 1..k-1."""
    from cd4ml.pipeline.monitor_cache import PartCache, cache_path
    from cd4ml.predlog import block_index

    path = cache_path(j.root)
    snap = tmp / "before.db"
    for s in ("", "-wal"):  # closed: SQLite checkpointed its WAL, but a copy costs nothing
        if Path(f"{path}{s}").exists():
            shutil.copy2(f"{path}{s}", f"{snap}{s}")
    lo, hi = START + (k - 1) * DAY, START + k * DAY

    def restore() -> None:
        for s in ("", "-wal", "-shm"):
            Path(f"{path}{s}").unlink(missing_ok=True)
            if s != "-shm" and Path(f"{snap}{s}").exists():
                shutil.copy2(f"{snap}{s}", f"{path}{s}")

    def cached(f: Callable[[Any], list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], int]:
        with PartCache(path) as cache:
            return f(cache), cache.written

    r: dict[str, Any] = {"day": k, "blocks_in_day": len(block_index(j.directory, lo, hi)),
                         "blocks_in_log": len(block_index(j.directory))}
    console.print(f"  after day {k}: {r['blocks_in_day']} blocks that day, "
                  f"{r['blocks_in_log']} in the log")
    # the direct path decodes every block of its window, every time
    r["day_direct"] = measure("one day, direct", runs,
                              lambda: (j.direct(lo, hi), r["blocks_in_day"]))
    r["day_cached"] = measure("one day, cached (adding)", runs,
                              lambda: cached(lambda c: j.cached(c, lo, hi)), before=restore)
    r["day_warm"] = measure("one day, cached warm", runs,
                            lambda: cached(lambda c: j.cached(c, lo, hi)))
    r["timeline_direct"] = measure(f"timeline of {k} days, direct", runs,
                                   lambda: (j.direct_timeline(), r["blocks_in_log"]))
    r["timeline_cached"] = measure(f"timeline of {k} days, adding day {k}", runs,
                                   j.timeline, before=restore)
    r["timeline_warm"] = measure(f"timeline of {k} days, warm", runs, j.timeline)
    agree(f"day {k}", r["day_direct"]["docs"], r["day_cached"]["docs"])
    agree(f"day {k} (warm)", r["day_direct"]["docs"], r["day_warm"]["docs"])
    agree(f"timeline to day {k}", r["timeline_direct"]["docs"], r["timeline_cached"]["docs"])
    agree(f"timeline to day {k} (warm)", r["timeline_direct"]["docs"],
          r["timeline_warm"]["docs"])
    if r["day_cached"]["blocks_decoded"] != [r["blocks_in_day"]] * runs or \
            r["timeline_cached"]["blocks_decoded"] != [r["blocks_in_day"]] * runs or \
            any(r[x]["blocks_decoded"] != [0] * runs for x in ("day_warm", "timeline_warm")):
        raise SystemExit(f"day {k}: blocks decoded not as expected: adding "
                         f"{r['day_cached']['blocks_decoded']} (the day has "
                         f"{r['blocks_in_day']}), warm {r['day_warm']['blocks_decoded']}, "
                         f"timeline {r['timeline_cached']['blocks_decoded']}")
    judged = r["day_direct"]["docs"][0]
    r["day_judged"] = {"labelled_rows": judged["quality"]["rows"], **judged["metrics"]}
    for x in ("day_direct", "day_cached", "day_warm", "timeline_direct", "timeline_cached",
              "timeline_warm"):
        r[x].pop("docs")
    r["cache_bytes"], r["log_bytes"] = _bytes(path), _bytes(j.directory)
    r["loadavg"] = loadavg()
    console.print(f"  day {k} judged (both ways alike): {judged['rows']:,} rows, "
                  f"{judged['quality']['rows']:,} labelled so far, "
                  f"drift share {judged['metrics'].get('drift.share')}, quality "
                  f"{judged['metrics'].get('quality.roc_auc')}, estimated "
                  f"{judged['metrics'].get('estimated.roc_auc')}")
    console.print(f"  cache {r['cache_bytes'] / 1e6:.1f} MB, log {r['log_bytes'] / 1e6:.1f} MB"
                  f" ({r['cache_bytes'] / max(r['log_bytes'], 1):.2f}x); load {r['loadavg']}")
    return r


def report(points: list[dict[str, Any]], days: list[dict[str, Any]]) -> None:
    from rich.table import Table

    t = Table(title="seconds (median) / blocks decoded; ratio = direct / cached")
    for c in ("day k", "1-day direct", "1-day adding k", "ratio", "1-day warm", "ratio",
              "timeline direct", "timeline adding k", "ratio", "timeline warm",
              "cache / log MB"):
        t.add_column(c, justify="right")
    for p in points:
        dd, dc, dw = p["day_direct"], p["day_cached"], p["day_warm"]
        td, tc, tw = p["timeline_direct"], p["timeline_cached"], p["timeline_warm"]
        t.add_row(str(p["day"]), f"{dd['seconds']:.3f} / {dd['blocks_decoded'][0]}",
                  f"{dc['seconds']:.3f} / {dc['blocks_decoded'][0]}",
                  f"{dd['seconds'] / dc['seconds']:.2f}", f"{dw['seconds']:.3f} / 0",
                  f"{dd['seconds'] / dw['seconds']:.2f}",
                  f"{td['seconds']:.3f} / {td['blocks_decoded'][0]}",
                  f"{tc['seconds']:.3f} / {tc['blocks_decoded'][0]}",
                  f"{td['seconds'] / tc['seconds']:.2f}", f"{tw['seconds']:.3f} / 0",
                  f"{p['cache_bytes'] / 1e6:.1f} / {p['log_bytes'] / 1e6:.1f}")
    console.print(t)
    if len(points) > 1:
        a, b = points[0], points[-1]
        console.print(f"from day {a['day']} to day {b['day']} ({b['day'] / a['day']:.1f}x the "
                      f"history), each figure grew:")
        for key, name in (("day_direct", "one day, direct"),
                          ("day_cached", "one day, cached (adding the day)"),
                          ("day_warm", "one day, cached warm"),
                          ("timeline_direct", "timeline, direct"),
                          ("timeline_cached", "timeline, cached (adding the day)"),
                          ("timeline_warm", "timeline, cached warm")):
            console.print(f"  {name:<34} {b[key]['seconds'] / a[key]['seconds']:6.2f}x")
    week = min(7, len(days) // 2)
    if week:
        first, last = (statistics.median(x["add_s"] for x in part)
                       for part in (days[:week], days[-week:]))
        n = len(days)
        console.print(f"adding each day to the cache (one run a day; on measured days the "
                      f"median of theirs): days 1-{week} {first:.2f} s (median), days "
                      f"{n - week + 1}-{n} {last:.2f} s: {last / first:.2f}x")


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if not a.data.is_file():
        raise SystemExit(f"no ACS data at {a.data} (--data; `cd4ml example-data DIR "
                         f"--dataset employment` makes one)")
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M")
    out = a.out or ROOT / "benchmarks" / "results" / f"monitor_incremental-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"machine": machine_info(ROOT),
                           "args": {k: str(v) for k, v in vars(a).items()}, "points": [],
                           "days": [],
                           "traffic": {"start": START, "feedback_share": FEEDBACK_SHARE,
                                       "late_share": LATE_SHARE}}
    console.print(f"load average at start: {doc['machine']['loadavg_start']}; {a.days} days "
                  f"of {a.rows_per_day:,} rows (requests of {a.request_rows}); measured after"
                  f" days {', '.join(map(str, a.points))}, median of {a.runs}")
    tmp = Path(tempfile.mkdtemp(prefix="monitor-incremental-"))
    try:
        root = prepare(a.project.resolve() if a.project else tmp / "employment", a.data)
        traffic, j = Traffic(root, a), Judge(root)
        from cd4ml.pipeline.monitor_cache import PartCache, cache_path

        try:
            for d in range(a.days):
                t0 = time.perf_counter()
                traffic.day(d)
                day = {"day": d + 1, "log_s": time.perf_counter() - t0}
                console.print(f"day {d + 1}: {a.rows_per_day:,} rows logged in "
                              f"{day['log_s']:.1f} s ({traffic.sent:,} so far)")
                if d + 1 in a.points:
                    p = point(j, d + 1, a.runs, tmp)
                    doc["points"].append(p)
                    day.update(add_s=p["day_cached"]["seconds"],
                               blocks=p["day_cached"]["blocks_decoded"][0])
                else:  # the day goes into the cache, as a monitor judging each day would
                    t0 = time.perf_counter()
                    with PartCache(cache_path(root)) as cache:
                        j.cached(cache, START + d * DAY, START + (d + 1) * DAY)
                        day.update(add_s=time.perf_counter() - t0, blocks=cache.written)
                    j.timeline()  # and the dashboard's timeline, its windows kept
                    console.print(f"  its window judged from the cache in {day['add_s']:.2f} s"
                                  f" ({day['blocks']} blocks decoded; one run)")
                doc["days"].append(day)
                out.write_text(json.dumps(doc, indent=1, default=str))
        finally:
            j.close()
            traffic.close()
        doc["log"] = traffic.plog.counts()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    doc["loadavg_end"] = loadavg()
    out.write_text(json.dumps(doc, indent=1, default=str))
    report(doc["points"], doc["days"])
    console.print(f"load average at end: {doc['loadavg_end']}; results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
