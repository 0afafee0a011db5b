"""Time from a failing canary analysis to full rollback, under load (issue 14).

Usage (one command, about 1 min; builds its own project in a temp folder):

    .venv/bin/python benchmarks/rollout_abort.py      # options: --workers 2 --out FILE

A wine classifier (scikit-learn's wine data) is registered as v1, stable; v2 is the same
kind of model trained with one more input (``lot``) that the requests do not carry, so
every request routed to v2 is refused by v2 and answered by v1: the router counts it as
v2's error (what a canary that raises looks like from outside). ``cd4ml serve`` runs
with 2 workers and its rollout controller (``rollout.interval_s`` 0.3 s, a canary step of
1 s, the error-rate check needing 10 requests, the other checks off). A client thread
sends ``POST /predict`` without pause from the moment v2 becomes the canary (automatic,
steps 0.5 then 1).

Measured: the controller's Failed analysis (its audit event's time) to the abort it
writes, and to the moment every worker serves the aborted revision (40 consecutive
``/health`` answers naming it); the requests that did not get a 200 (goal: none); and,
for scale, the time from the candidate's start to the analysis (the step's length plus
the controller's next look).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))  # the tests' helpers that fit and register wine

from _servingbench import servers  # noqa: E402
from _servingbench.project import machine_info  # noqa: E402
from rich.console import Console  # noqa: E402

console = Console()
CD4ML = str(Path(sys.executable).parent / "cd4ml")
NAME = "wine"
SETTINGS = ["serving.poll_interval_s=0.5", "rollout.interval_s=0.3", "rollout.step_s=1",
            "rollout.analysis.error_rate.min_samples=10",
            "rollout.analysis.latency.min_samples=10",
            "rollout.analysis.drift.enabled=false", "rollout.analysis.quality.enabled=false",
            "rollout.analysis.estimated.enabled=false", "monitoring.interval_s=0"]


def cli(proj: Path, *args: str) -> str:
    r = subprocess.run([CD4ML, *args, "-p", str(proj)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"cd4ml {' '.join(args)} failed: {r.stderr}{r.stdout}")
    return r.stdout


def build(proj: Path) -> list[dict[str, Any]]:
    """v1 stable (production), v2 needing ``lot`` (staging); the requests' rows."""
    import numpy as np
    from tabular_servables import fit_parts, register, wine_parts, write_project

    from cd4ml.data.schema import Column, Schema

    write_project(proj, name=NAME, task="classification", target="target")
    parts, df = wine_parts()
    passed = {"passed": True}  # live roles need a passed gate
    register(proj, NAME, parts, gate=passed)
    lot = df.assign(lot=np.random.default_rng(0).integers(1, 9, len(df)).astype(float))
    cols = [Column(name=c, type="float", min=float(lot[c].min()), max=float(lot[c].max()))
            for c in lot.columns if c != "target"]
    schema = Schema(name="wine", columns=[*cols, Column(name="target", type="int")])
    register(proj, NAME, fit_parts(lot, schema, "target", task="classification", trees=30),
             alias="staging", gate=passed)
    return df.drop(columns=["target"]).to_dict("records")


def health_revision(url: str) -> int:
    status, doc = servers.http_json(url + "/health", timeout=5)
    return int(doc["deployment"]["revision"]) if status == 200 else -1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cd4ml-abort-") as t:
        tmp = Path(t)
        proj = tmp / "wine"
        rows = build(proj)
        cli(proj, "deploy", NAME, "--strategy", "canary", "--automation", "automatic",
            "--steps", "0.5,1", "--reason", "benchmark")
        port = servers.free_port()
        cmd = [CD4ML, "serve", "-p", str(proj), "--port", str(port), "--no-ui",
               "--workers", str(args.workers), *sum((["--set", s] for s in SETTINGS), [])]
        srv = servers.start(f"cd4ml-abort-{port}", cmd, f"http://127.0.0.1:{port}", tmp)
        servers.wait_ready(srv, ["/ready"])
        stop = threading.Event()
        answers: dict[int, int] = {}

        def load() -> None:
            import httpx

            with httpx.Client(base_url=srv.url, timeout=30) as c:
                i = 0
                while not stop.is_set():
                    code = c.post("/predict", json=rows[i % len(rows)]).status_code
                    answers[code] = answers.get(code, 0) + 1
                    i += 1

        try:
            started = time.time()
            said = cli(proj, "rollout", "candidate", NAME, "2", "--reason", "benchmark")
            candidate_rev = int(re.search(r"\(revision (\d+),", said).group(1))
            loader = threading.Thread(target=load)
            loader.start()
            # the next revision is the controller's: watch the workers, not the CLI (a
            # `cd4ml rollout status` takes ~1 s to start, which would count against it)
            deadline = time.monotonic() + 120
            streak, rev, seen = 0, candidate_rev, -1
            while streak < 40:
                if time.monotonic() > deadline:
                    last = json.loads(cli(proj, "rollout", "status", NAME, "--json"))
                    raise SystemExit(f"the workers serve no revision after {candidate_rev} "
                                     f"in 120 s (seen {seen}; the deployment: revision "
                                     f"{last['revision']}, {last['history'][-1]})")
                seen = health_revision(srv.url)
                if seen > candidate_rev:
                    streak, rev = (streak + 1, seen) if seen == rev else (1, seen)
                else:
                    streak = 0
            everywhere = time.time()
            state = json.loads(cli(proj, "rollout", "status", NAME, "--json"))
            if int(state["revision"]) != rev or state["history"][-1]["action"] != "abort":
                raise SystemExit(f"revision {rev} is not the controller's abort: "
                                 f"{state['history'][-1]}")
            time.sleep(0.5)
            stop.set()
            loader.join()
        finally:
            stop.set()
            servers.stop(srv)
    abort = state["history"][-1]
    analysis = state["controller"]["analysis"]
    t_analysis = _epoch(analysis["at"])
    t_abort = _epoch(abort["at"])
    doc = {"benchmark": "rollout_abort", "machine": machine_info(ROOT),
           "workers": args.workers, "settings": SETTINGS,
           "analysis": analysis["reason"], "abort_reason": abort["reason"],
           "candidate_to_analysis_s": round(t_analysis - started, 3),
           "analysis_to_abort_written_s": round(t_abort - t_analysis, 3),
           "analysis_to_every_worker_s": round(everywhere - t_analysis, 3),
           "goal_s": 0.5 + 1, "answers": {str(k): v for k, v in sorted(answers.items())}}
    out = args.out or ROOT / "benchmarks" / "results" / \
        f"rollout_abort-{time.strftime('%Y-%m-%dT%H%M')}.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    console.print(f"analysis: {analysis['reason'][:160]}")
    console.print(f"candidate -> Failed analysis {doc['candidate_to_analysis_s']:.2f} s; "
                  f"analysis -> abort written {doc['analysis_to_abort_written_s']:.3f} s; "
                  f"analysis -> every worker on the abort {doc['analysis_to_every_worker_s']:.2f}"
                  f" s (goal: poll + 1 s = {doc['goal_s']} s)")
    console.print(f"answers by status: {doc['answers']} (goal: only 200)")
    console.print(f"written {out}")
    return 0


def _epoch(at: Any) -> float:
    """An audit time (ISO text in the CLI's JSON, UTC) as epoch seconds."""
    if isinstance(at, (int, float)):
        return float(at)
    dt = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
    if dt.tzinfo is None:
        from datetime import timezone

        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


if __name__ == "__main__":
    raise SystemExit(main())
