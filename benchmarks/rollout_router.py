"""What the router costs, what a shadow costs, and what a switch or a rollback loses (issue 14).

Usage (one command; trains examples/walmart first if it has no model):

    .venv/bin/python benchmarks/rollout_router.py            # ~12 min
    options: --project DIR  --duration 10  --rounds 3  --connections 8  --out FILE

On a copy of the project (its deployments are changed; the original is not), with the
version the alias names registered a second time as version N+1 (the same bundle, so
both arms answer alike and only the routing differs), one ``cd4ml serve`` worker with
the prediction log on, ``POST /predict`` with one row, for each deployment:

- ``single``: the default deployment (``serving.alias``), as before the router;
- ``canary``: 50 % to the candidate, split by request id;
- ``ab``: 50 % split sticky by the request's ``store``;
- ``shadow``: the stable answers; the candidate answers a copy in the worker's shadow
  process (its CPU is in the process group's, so it counts here);
- ``bluegreen``: switched to green, blue kept loaded.

Saturation (``wrk -c 8``, closed loop): requests/s and the server's CPU per request (the
process group's user + system time over the run, divided by the answers), and each
strategy's extra CPU per request against ``single`` (goal ≤ 20 µs). Each measurement
runs ``--rounds`` times, the strategies interleaved in a rotating order, and the median
is reported (one 10 s run moves by ±25 µs from run to run on 2 cores).

Shadow cost at a fixed offered rate: half of ``single``'s measured saturation, sent by
an open-loop client of this script (asyncio, keep-alive connections, each request sent
at its scheduled time; latency counted from that time, so a stall is not hidden), live
p50/p99 with and without a shadow (goal: p99 within 10 %).

Switch and rollback under load: a blue-green switch and then ``cd4ml rollback`` while wrk
runs, with 2 workers; wrk's errors (non-2xx, socket errors, timeouts) are the requests
lost (goal: zero), and the time from the command's return until every one of 40
consecutive ``/health`` answers names the new revision (goal ≤ poll interval + 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _servingbench import servers  # noqa: E402
from _servingbench.project import ensure_model, machine_info, sample_requests  # noqa: E402
from _servingbench.wrk import run_wrk, write_script  # noqa: E402
from rich.console import Console  # noqa: E402

console = Console()
CD4ML = str(Path(sys.executable).parent / "cd4ml")
POLL = 0.5


def cli(proj: Path, *args: str) -> str:
    r = subprocess.run([CD4ML, *args, "-p", str(proj)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"cd4ml {' '.join(args)} failed: {r.stderr}{r.stdout}")
    return r.stdout


def copy_project(src: Path, tmp: Path) -> tuple[Path, str, int, int]:
    """The project with its store and artifacts, the trained version registered again."""
    from cd4ml.config import load_config
    from cd4ml.store import open_stores

    dst = tmp / "project"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("predictions", "bench",
                                                            "monitor-cache.db"))
    cfg, _ = load_config(dst)
    with open_stores(cfg.store, dst) as st:
        row = st.metadata.resolve(cfg.models.name, cfg.serving.alias)
        again = st.metadata.register_version(
            cfg.models.name, run_id=row.get("run_id"), digest=row["digest"], kind=row["kind"],
            model_type=row["model_type"], metrics=row.get("metrics") or {},
            gate=row.get("gate") or {}, lineage=row.get("lineage") or {},
            actor="benchmark", reason="the same bundle as a second version")
    return dst, cfg.models.name, int(row["version"]), int(again.version)


def start(proj: Path, tmp: Path, workers: int) -> Any:
    port = servers.free_port()
    srv = servers.start(f"cd4ml-w{workers}-{port}",
                        [CD4ML, "serve", "-p", str(proj), "--port", str(port), "--no-ui",
                         "--workers", str(workers), "--set", f"serving.poll_interval_s={POLL}",
                         "--set", f"serving.log.dir={tmp / f'log-{port}'}",
                         # no controller and no alert rounds beside it: the server alone
                         "--set", "rollout.interval_s=0", "--set", "monitoring.interval_s=0"],
                        f"http://127.0.0.1:{port}", tmp)
    servers.wait_ready(srv, ["/ready"])
    return srv


def revision(url: str) -> int:
    with __import__("urllib.request").request.urlopen(url + "/health", timeout=5) as r:
        return int(json.loads(r.read())["deployment"]["revision"])


def wait_revision(url: str, rev: int, timeout: float = 30) -> float:
    t0 = time.monotonic()
    streak = 0
    while streak < 40:
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"revision {rev} not served after {timeout} s")
        streak = streak + 1 if revision(url) == rev else 0
    return time.monotonic() - t0


def set_strategy(proj: Path, name: str, strategy: str, v_new: int) -> int:
    """The deployment under ``strategy`` with ``v_new`` as candidate; its revision."""
    state = json.loads(cli(proj, "rollout", "status", name, "--json"))
    if state["status"] in ("progressing", "paused"):
        cli(proj, "rollout", "abort", name)
    if strategy == "single":
        cli(proj, "deploy", name, "--strategy", "single")
    else:
        extra = {"canary": ["--steps", "0.5,1"], "ab": ["--split", "0.5", "--key", "store"],
                 "shadow": [], "bluegreen": []}[strategy]
        cli(proj, "deploy", name, "--strategy", strategy, "--automation", "manual", *extra)
        cli(proj, "rollout", "candidate", name, str(v_new))
        if strategy == "bluegreen":
            cli(proj, "rollout", "promote", name)  # switched: green answers
    return int(json.loads(cli(proj, "rollout", "status", name, "--json"))["revision"])


def saturate(srv: Any, script: Path, duration: float, connections: int) -> dict[str, Any]:
    servers.wait_idle(srv)
    before = servers.group_cpu(srv.proc.pid)
    r = run_wrk(srv.url, script, connections=connections, duration_s=duration)
    cpu = sum(servers.cpu_delta(before, servers.group_cpu(srv.proc.pid)).values())
    return {"req_s": round(r["req_s"], 1), "p99_ms": round(r["p99_ms"], 3),
            "errors": r["errors"], "cpu_us_per_request": round(cpu / max(r["ok_requests"], 1)
                                                               * 1e6, 1)}


async def _open_loop(host: str, port: int, bodies: list[bytes], rate: float,
                     duration: float, connections: int = 16) -> list[float]:
    """Latencies (ms) of requests sent at ``rate`` per second, from their scheduled time."""
    lat: list[float] = []
    n = int(rate * duration)
    t0 = time.perf_counter() + 0.2
    slots: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        slots.put_nowait(i)

    async def conn() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                try:
                    i = slots.get_nowait()
                except asyncio.QueueEmpty:
                    return
                due = t0 + i / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(bodies[i % len(bodies)])
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(h.split(b":")[1] for h in head.split(b"\r\n")
                                  if h.lower().startswith(b"content-length")))
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(head[:100])
                lat.append((time.perf_counter() - due) * 1000)
        finally:
            writer.close()

    await asyncio.gather(*(conn() for _ in range(connections)))
    return lat


def open_loop(url: str, bodies: list[str], rate: float, duration: float) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    raw = [(f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(b.encode())}\r\n\r\n{b}").encode() for b in bodies]
    lat = np.array(asyncio.run(_open_loop(host, int(port), raw, rate, duration)))
    return {"offered_req_s": round(rate, 1), "answered": int(len(lat)),
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--project", type=Path, default=ROOT / "examples" / "walmart")
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds of each measurement (the median is reported)")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    servable, model = ensure_model(args.project.resolve(), train=True, console=console)
    reqs = sample_requests(servable, [10])
    bodies = [json.dumps(r) for r in reqs.single_records[:400]]
    doc: dict[str, Any] = {"benchmark": "rollout_router", "machine": machine_info(ROOT),
                           "model": model, "duration_s": args.duration,
                           "connections": args.connections, "poll_interval_s": POLL}
    with tempfile.TemporaryDirectory(prefix="cd4ml-router-") as t:
        tmp = Path(t)
        proj, name, v_old, v_new = copy_project(args.project.resolve(), tmp)
        script = tmp / "single.lua"
        write_script(script, "/predict", bodies)
        # 1. saturation, one worker, per strategy
        srv = start(proj, tmp, 1)
        try:
            runs: dict[str, list[dict[str, Any]]] = {}
            names = ("single", "canary", "ab", "shadow", "bluegreen")
            for k in range(args.rounds):  # interleaved, each round in another order
                for strategy in names[k % len(names):] + names[:k % len(names)]:
                    rev = set_strategy(proj, name, strategy, v_new)
                    wait_revision(srv.url, rev)
                    run_wrk(srv.url, script, connections=args.connections, duration_s=2)
                    r = saturate(srv, script, args.duration, args.connections)
                    runs.setdefault(strategy, []).append(r)
                    console.print(f"round {k + 1} {strategy:10s} {r}")
            sat = {s_: {key: float(np.median([r[key] for r in rs])) for key in rs[0]}
                   for s_, rs in runs.items()}
            base = sat["single"]["cpu_us_per_request"]
            for s_ in sat.values():
                s_["extra_cpu_us"] = round(s_["cpu_us_per_request"] - base, 1)
            doc["saturation_runs"] = runs
            doc["saturation"] = sat
            # 2. shadow at half the saturation rate
            rate = sat["single"]["req_s"] / 2
            fixed = {}
            for strategy in ("single", "shadow") * args.rounds:  # interleaved
                rev = set_strategy(proj, name, strategy, v_new)
                wait_revision(srv.url, rev)
                servers.wait_idle(srv)
                r = open_loop(srv.url, bodies, rate, args.duration)
                fixed.setdefault(strategy, []).append(r)
                console.print(f"fixed rate {strategy:8s} {r}")
            doc["fixed_rate"] = fixed
            p99 = {k: float(np.median([r["p99_ms"] for r in v])) for k, v in fixed.items()}
            doc["shadow_p99_ratio"] = round(p99["shadow"] / p99["single"], 3)
            set_strategy(proj, name, "single", v_new)
        finally:
            servers.stop(srv)
        # 3. switch and rollback under load, two workers
        srv = start(proj, tmp, 2)
        try:
            cli(proj, "deploy", name, "--strategy", "bluegreen", "--automation", "manual")
            cli(proj, "rollout", "candidate", name, str(v_new))
            wait_revision(srv.url, revision_of(proj, name))
            import threading

            box: dict[str, Any] = {}
            load = threading.Thread(target=lambda: box.update(run_wrk(
                srv.url, script, connections=args.connections, duration_s=args.duration)))
            load.start()
            time.sleep(args.duration / 4)
            cli(proj, "rollout", "promote", name)
            switch_s = wait_revision(srv.url, revision_of(proj, name))
            time.sleep(args.duration / 4)
            cli(proj, "rollback", name)
            rollback_s = wait_revision(srv.url, revision_of(proj, name))
            load.join()
            doc["switch_and_rollback"] = {
                "requests": box["requests"], "lost": box["errors"],
                "switch_effective_s": round(switch_s, 3),
                "rollback_effective_s": round(rollback_s, 3),
                "goal_s": POLL + 1}
            console.print(f"switch and rollback under load: {doc['switch_and_rollback']}")
        finally:
            servers.stop(srv)
    out = args.out or ROOT / "benchmarks" / "results" / \
        f"rollout_router-{time.strftime('%Y-%m-%dT%H%M')}.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    console.print("extra CPU per request vs single (µs): "
                  + ", ".join(f"{k} {v['extra_cpu_us']:+.1f}" for k, v in sat.items()))
    console.print(f"live p99 with a shadow / without, at {rate:.0f} req/s: "
                  f"{doc['shadow_p99_ratio']:.3f}")
    console.print(f"written {out}")
    return 0


def revision_of(proj: Path, name: str) -> int:
    return int(json.loads(cli(proj, "rollout", "status", name, "--json"))["revision"])


if __name__ == "__main__":
    raise SystemExit(main())
