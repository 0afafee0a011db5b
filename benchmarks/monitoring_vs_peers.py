"""cd4ml's drift report against Evidently 0.7.23 and NannyML 0.13.1 (issue 13, benchmark).

Usage (unattended; creates the peers' venvs and the frames if they are missing):

    .venv/bin/python benchmarks/monitoring_vs_peers.py            # every size, ~15 min
    .venv/bin/python benchmarks/monitoring_vs_peers.py --quick    # Walmart 0.42 M + ACS
    options: --sizes walmart,acs,acs-x10,walmart-4.2m,walmart-10.5m  --skip-peer [NAME]
             --skip-cd4ml  --peers-from RESULTS.json  --cache DIR  --evidently-venv DIR
             --nannyml-venv DIR  --timeout 1800  --out FILE

Same frames, same run, each tool in its own process, one after the other: the frames
(``_monitorbench/frames.py``: Walmart joined with its features and stores, reference before
2011-11-01, and x10 / x25; ACS 2015 vs 2016-2018 and x10, LightGBM scores for CBPE) are
written once to Parquet under ``--cache``, and every process reads the same bytes before
its timing starts. A tool's time covers building its reference (cd4ml's reference profile
too) and comparing; memory is peak RSS minus RSS after loading (``_monitorbench/_peer.py``).

- cd4ml (this venv): ``Reference.from_frame`` + ``compare`` (``_monitorbench/peer_cd4ml.py``),
  on the real data (Walmart's MarkDowns all missing in the reference).
- Evidently (``--evidently-venv``, ``evidently==0.7.23``, ``pandas<3``):
  ``Report([DataDriftPreset()])`` with the same column types; it refuses an all-missing
  reference column, so it gets Walmart with MarkDown1-5 filled with 0 (its refusal of the
  real data is recorded once, on the 0.42 M size, as "real data").
- NannyML (``--nannyml-venv``, ``nannyml==0.13.1``): ``UnivariateDriftCalculator``
  (chunks of 10,000) on the real data, and ``CBPE`` (roc_auc) fitted on 2016 (the model's
  holdout), estimating 2017-2018 chunk by chunk beside the realized AUC, plus the issue's
  hard case (people aged 16 and over sorted by AGEP).

Printed: time and memory with the peer/cd4ml ratios, per-column verdicts (cd4ml and
Evidently side by side, agreement where both used the same test; NannyML's alerting
chunks), CBPE per chunk, each tool's scores against SciPy's (1e-6), and the issue's goals
(>= 20× faster than each peer, memory <= 1/4 of theirs, no refusal). Results go to
``benchmarks/results/monitoring_vs_peers-<date>[-quick].json``, rewritten after every run,
so an interrupted run keeps what it measured. Evidently takes minutes and GBs at 4.2 M and
10.5 M rows: run those sizes once, then ``--peers-from`` that file takes the peers' runs
from it (same frames: the file's frame checksums must match the cache's) and times cd4ml
alone against them.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from _monitorbench import report
from _monitorbench.frames import QUICK, SIZES, Case, ensure_frames
from _monitorbench.scipy_check import check_case
from _monitorbench.venvs import ensure_peer_venv
from _servingbench.project import machine_info

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "_monitorbench"
console = Console(highlight=False, width=None if sys.stdout.isatty() else 170)
PEERS = ("evidently", "nannyml")
#: which tools answer which task (cbpe: performance estimated without labels)
TASK_TOOLS = {"drift": ["cd4ml", "evidently", "nannyml"], "cbpe": ["cd4ml", "nannyml"]}


def _sizes(s: str) -> list[str]:
    names = [x.strip() for x in s.split(",") if x.strip()]
    bad = [n for n in names if n not in SIZES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown size {', '.join(bad)}; sizes: "
                                         f"{', '.join(SIZES)}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=_sizes, default=list(SIZES),
                    help=f"comma-separated, of {', '.join(SIZES)}")
    ap.add_argument("--quick", action="store_true", help=f"only {' and '.join(QUICK)}")
    ap.add_argument("--skip-peer", nargs="?", const="all", action="append", default=[],
                    choices=[*PEERS, "all"], help="skip one peer (or both, without a name)")
    ap.add_argument("--skip-cd4ml", action="store_true")
    ap.add_argument("--peers-from", type=Path, default=None, metavar="RESULTS",
                    help="take the peers' runs from an earlier results file instead of "
                         "running them (only where its frames are the same bytes)")
    ap.add_argument("--cache", type=Path, default=ROOT.parent / "cache" / "monitorbench",
                    help="where the frames are written (Parquet, ~2 GB for every size)")
    ap.add_argument("--evidently-venv", type=Path,
                    default=ROOT.parent / "venvs" / "evidently0723")
    ap.add_argument("--nannyml-venv", type=Path, default=ROOT.parent / "venvs" / "nannyml0131")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per tool process")
    ap.add_argument("--out", type=Path, default=None, help="results JSON path")
    a = ap.parse_args(argv)
    if a.quick:
        a.sizes = [s for s in a.sizes if s in QUICK] or QUICK
    skip = set(a.skip_peer)
    a.peers = [] if "all" in skip else [p for p in PEERS if p not in skip]
    return a


def run_tool(py: Path, tool: str, job: dict[str, Any], tmp: Path, timeout: float,
             ) -> dict[str, Any]:
    """One tool's process on one case; its answer, or the failure as a refusal."""
    path = tmp / f"{job['size']}-{job['name'].replace(' ', '_')}-{tool}.json"
    path.write_text(json.dumps(job))
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    t0 = time.perf_counter()
    try:
        res = subprocess.run([str(py), str(HERE / f"peer_{tool}.py"), str(path)],
                             capture_output=True, text=True, timeout=timeout, cwd=HERE)
    except subprocess.TimeoutExpired:
        return {"tool": tool, "size": job["size"], "case": job["name"], "task": job["task"],
                "error": f"no answer in {timeout:g} s (--timeout)"}
    wall = time.perf_counter() - t0
    line = next((ln for ln in reversed(res.stdout.splitlines()) if ln.startswith("@@")), None)
    if line is None:
        return {"tool": tool, "size": job["size"], "case": job["name"], "task": job["task"],
                "error": f"exit {res.returncode}, no answer: {res.stderr.strip()[-1500:]}"}
    doc = json.loads(line[2:])
    doc.update(process_wall_s=wall, loadavg_before=load, exit=res.returncode, python=str(py),
               frames={"reference": job["reference"], "current": job["current"]})
    if res.stderr.strip():
        doc["stderr_tail"] = res.stderr.strip()[-800:]
    return doc


def earlier_runs(path: Path | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The peers' runs of an earlier results file, and its frame manifests."""
    if path is None:
        return [], {}
    old = json.loads(path.read_text())
    runs = [{**r, "from": str(path)} for r in old["runs"] if r["tool"] != "cd4ml"]
    return runs, old.get("frames", {})


def _say(r: dict[str, Any]) -> None:
    name = r["tool"] + (" (real data)" if r.get("probe") else "") + (
        " (earlier)" if r.get("from") else "")
    if r.get("error"):
        colour = "yellow" if r.get("probe") or r.get("missing_api") else "red"
        console.print(f"  {name:<22} [{colour}]{r['error'][:150]}[/{colour}]")
        return
    console.print(f"  {name:<22} {r['seconds']:9.2f} s (CPU {r['cpu_s']:.2f} s)  "
                  f"{r['peak_mb']:8,.0f} MB over "
                  f"{r['loaded_mb']:,.0f} MB loaded   {report.finding(r)}")


def _frames_for_check(case: Case, tools: list[str]) -> dict[str, tuple[pd.DataFrame,
                                                                         pd.DataFrame]]:
    cols = [*case.numerical, *case.categorical]
    out, seen = {}, {}
    for tool in tools:
        j = case.job(tool)
        key = (j["reference"], j["current"])
        if key not in seen:
            seen[key] = (pd.read_parquet(key[0], columns=cols),
                         pd.read_parquet(key[1], columns=cols))
        out[tool] = seen[key]
    return out


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    doc: dict[str, Any] = {"machine": machine_info(ROOT), "args": {k: str(v) for k, v in
                                                                 vars(a).items()},
                           "versions": {}, "frames": {}, "runs": [], "agreement": [],
                           "scipy_check": [], "notes": []}
    out = a.out or ROOT / "benchmarks" / "results" / (
        f"monitoring_vs_peers-{datetime.now():%Y-%m-%dT%H%M}{'-quick' if a.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        out.write_text(json.dumps(doc, indent=1, default=str))

    console.print(f"load average at start: {doc['machine']['loadavg_start']}; sizes: "
                  f"{', '.join(a.sizes)}; tools: "
                  f"{', '.join((['cd4ml'] if not a.skip_cd4ml else []) + a.peers)}")
    pythons: dict[str, Path] = {"cd4ml": Path(sys.executable)}
    for peer in a.peers:
        venv = a.evidently_venv if peer == "evidently" else a.nannyml_venv
        pythons[peer], doc["versions"][peer] = ensure_peer_venv(peer, venv, console=console)
    tools = (["cd4ml"] if not a.skip_cd4ml else []) + a.peers
    old_runs, old_frames = earlier_runs(a.peers_from)
    if a.peers_from:
        doc["peers_from"] = str(a.peers_from)
    cases: list[Case] = []
    runs: list[dict[str, Any]] = doc["runs"]
    tmp = Path(tempfile.mkdtemp(prefix="monitorbench-"))
    try:
        for size in a.sizes:
            s = SIZES[size]
            with console.status(f"frames of {s.label}"):
                size_cases = ensure_frames(s, a.cache, console=console)
            doc["frames"][size] = json.loads(
                (Path(size_cases[0].reference).parent / "manifest.json").read_text())
            cases += size_cases
            reuse = bool(old_runs) and old_frames.get(size, {}).get("sha256_16") == doc[
                "frames"][size]["sha256_16"]
            if a.peers_from and not reuse:
                doc["notes"].append(f"{size}: {a.peers_from} has no runs on these frames; "
                                    f"the peers run here")
            console.rule(s.label)
            for case in size_cases:
                console.print(f"[bold]{case.name}[/bold]: {case.rows['reference']:,} vs "
                              f"{case.rows['current']:,} rows")
                for tool in [t for t in TASK_TOOLS[case.task] if t in tools]:
                    prev = [r for r in old_runs if r["tool"] == tool and r["size"] == size
                            and r["case"] == case.name] if reuse and tool != "cd4ml" else []
                    if prev:
                        runs.extend(prev)
                        for r in prev:
                            _say(r)
                        continue
                    with console.status(f"{tool} on {case.name} ({s.label})"):
                        r = run_tool(pythons[tool], tool, case.job(tool), tmp, a.timeout)
                    runs.append(r)
                    _say(r)
                    save()
                if case.task == "drift" and "evidently" in a.peers and case.variants.get(
                        "evidently") and s.factor == 1 and not reuse:
                    j = case.job("evidently")
                    j.update(reference=case.reference, current=case.current)
                    with console.status("evidently on the real data (expected to refuse)"):
                        r = run_tool(pythons["evidently"], "evidently", j, tmp, a.timeout)
                    r["probe"] = "the real data: MarkDown1-5 all missing in the reference"
                    runs.append(r)
                    _say(r)
                    save()
    except KeyboardInterrupt:
        doc["notes"].append("interrupted: the results are partial")
        console.print("[yellow]interrupted: the results below are partial[/yellow]")
    console.rule("results")
    report.print_runs(console, runs)
    for case in cases:
        if case.task == "drift" and any(r["case"] == case.name and r["size"] == case.size
                                        for r in runs):
            agr = report.agreement({"size": case.size, "name": case.name,
                                    "numerical": case.numerical,
                                    "categorical": case.categorical}, runs)
            doc["agreement"].append(agr)
            report.print_agreement(console, agr)
    for r in runs:
        if r["task"] == "cbpe":
            report.print_cbpe(console, r)
    with console.status("checking the scores against SciPy's"):
        for case in cases:
            done = [r for r in runs if r["case"] == case.name and r["size"] == case.size
                    and not r.get("error") and not r.get("probe")]
            whole = [r for r in done if r["tool"] in ("cd4ml", "evidently")]
            if case.task == "drift" and whole:
                doc["scipy_check"] += check_case(
                    _frames_for_check(case, [r["tool"] for r in whole]), whole,
                    lambda run, col: (lambda v: (v["method"], v["score"]) if v else
                                      (None, None))(report.column_view(run, col)))
    report.print_scipy(console, doc["scipy_check"])
    doc["goals"] = report.goals(runs)
    report.print_goals(console, doc["goals"])
    doc["loadavg_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
    busy = float(doc["machine"]["loadavg_start"].split()[0]) > 1
    console.print(f"load average at start {doc['machine']['loadavg_start']}, at end "
                  f"{doc['loadavg_end']}" + ("  [yellow]others were running at the start: "
                                             "figures are indicative[/yellow]" if busy else ""))
    save()
    console.print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
