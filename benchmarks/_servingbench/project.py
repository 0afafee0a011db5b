"""The cd4ml side: the trained model, the request bodies, and ``cd4ml serve`` processes."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from _servingbench import servers

__all__ = ["ensure_model", "machine_info", "sample_requests", "Requests", "Cd4mlServe"]

N_SINGLE = 500      # distinct single-row bodies wrk rotates through
N_BATCH_BODIES = 16  # distinct bodies per batch size
N_CHECK = 20        # rows of the agreement check


def _cd4ml_bin() -> str:
    here = Path(os.path.abspath(sys.executable)).with_name("cd4ml")
    return str(here) if here.exists() else "cd4ml"


def machine_info(root: Path) -> dict[str, Any]:
    def git(*a: str) -> str:
        res = subprocess.run(["git", "--no-optional-locks", "-C", str(root), *a],
                             capture_output=True, text=True)
        return res.stdout.strip()

    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                  if ln.startswith("model name")), platform.processor())
    import lightgbm

    dirty = "+uncommitted changes" if git("status", "--porcelain", "-uno") else ""
    return {"cpus": os.cpu_count(), "cpu_model": model, "platform": platform.platform(),
            "python": platform.python_version(), "lightgbm": lightgbm.__version__,
            "cd4ml_commit": git("rev-parse", "--short", "HEAD") + dirty,
            "loadavg_start": " ".join(open("/proc/loadavg").read().split()[:3])}


def ensure_model(project: Path, *, train: bool, console: Console, forecast_table: bool = True,
                 ) -> tuple[Any, dict[str, Any]]:
    """Load the serving alias's model in-process; train the project first if it has none."""
    from cd4ml.config import load_config
    from cd4ml.errors import Cd4mlError
    from cd4ml.registry.loader import load_model

    if not (project / "cd4ml.yaml").is_file():
        raise SystemExit(f"{project} has no cd4ml.yaml (--project)")
    cfg, _ = load_config(project)
    uri = f"{cfg.models.name}@{cfg.serving.alias}"
    try:
        servable = load_model(uri, project_dir=project, forecast_table=forecast_table)
    except Cd4mlError as exc:
        if not train:
            raise SystemExit(f"{project}: no model {uri} ({exc}); train it with "
                             f"`cd4ml run -p {project}`") from None
        console.print(f"[bold]{project} has no model {uri}: training it[/bold] (cd4ml run; "
                      f"about 2-3 min on the full Walmart data)")
        shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "walmart"
        if not (project / "data").exists() and (shared / "train.csv.zip").is_file():
            subprocess.run([_cd4ml_bin(), "example-data", str(project / "data"),
                            "--shared", str(shared)], check=True)
        if subprocess.run([_cd4ml_bin(), "run", "-p", str(project)]).returncode != 0:
            raise SystemExit(f"cd4ml run -p {project} failed") from None
        servable = load_model(uri, project_dir=project, forecast_table=forecast_table)
    p = servable.predictor
    return servable, {"uri": uri, "name": servable.name, "version": servable.version,
                      "digest": servable.digest, "type": p.model_type,
                      "n_features": len(p.feature_names), "features": list(p.feature_names),
                      "servable_rows": int(servable.X.shape[0]), "project": str(project),
                      "forecast_table": servable.table_status}


@dataclass
class Requests:
    single_records: list[dict[str, Any]]
    batch_records: dict[int, list[list[dict[str, Any]]]]
    bodies: dict[str, dict[int, list[str]]] = field(default_factory=dict)  # kind -> n -> bodies
    check_records: list[dict[str, Any]] = field(default_factory=list)
    check_native: bytes = b""
    check_split: bytes = b""


def _split_body(recs: list[dict[str, Any]], fields: list[str]) -> str:
    """What MLflow's client sends: ``DataFrame.to_json(orient="split")`` under dataframe_split."""
    df = pd.DataFrame(recs, columns=fields)
    return '{"dataframe_split": ' + df.to_json(orient="split", index=False) + "}"


def sample_requests(servable: Any, batch_sizes: list[int], seed: int = 0) -> Requests:
    """Valid (series, week) rows drawn at random: forecast weeks after the history's end."""
    rng = np.random.default_rng(seed)
    spec = servable.spec
    by_col = {c: f for f, c in servable.fields.items()}
    key_fields = [by_col[c] for c in spec.keys]
    time_field = by_col[spec.time]
    keys = sorted(servable.series_index)
    first = servable.history_end + servable.step
    n_weeks = int((servable.last - first) / servable.step) + 1
    if n_weeks < 1:
        first, n_weeks = servable.start, servable.n_dates
    dates = [str((first + k * servable.step).date()) for k in range(n_weeks)]

    def rows(n: int) -> list[dict[str, Any]]:
        out = []
        for s, d in zip(rng.integers(len(keys), size=n), rng.integers(len(dates), size=n),
                        strict=True):
            rec = {f: (int(v) if isinstance(v, float) and v.is_integer() else v)
                   for f, v in zip(key_fields, keys[s], strict=True)}
            rec[time_field] = dates[d]
            out.append(rec)
        return out

    fields = [*key_fields, time_field]
    req = Requests(single_records=rows(N_SINGLE),
                   batch_records={n: [rows(n) for _ in range(N_BATCH_BODIES)]
                                  for n in batch_sizes})
    req.bodies = {
        "native": {1: [json.dumps(r) for r in req.single_records],
                   **{n: [json.dumps(b) for b in bs] for n, bs in req.batch_records.items()}},
        "split": {1: [_split_body([r], fields) for r in req.single_records],
                  **{n: [_split_body(b, fields) for b in bs]
                     for n, bs in req.batch_records.items()}},
    }
    req.check_records = rows(N_CHECK)
    req.check_native = json.dumps(req.check_records).encode()
    req.check_split = _split_body(req.check_records, fields).encode()
    return req


class Cd4mlServe:
    """``cd4ml serve`` with ``--workers`` and the log switch, where this checkout has them."""

    def __init__(self, project: Path, *, console: Console, forecast_table: bool = True,
                 ) -> None:
        from cd4ml.config import load_config

        self.project, self.console, self.exe = project, console, _cd4ml_bin()
        self.notes: list[str] = []
        self._pending: list[str] = []
        cfg, _ = load_config(project)
        help_txt = subprocess.run([self.exe, "serve", "--help"], capture_output=True,
                                  text=True, env={**os.environ, "COLUMNS": "200"}).stdout
        has_workers_key = self._config_ok(["serving.workers=2"])
        self.workers_mode = ("flag" if "--workers" in help_txt
                             else "set" if has_workers_key else None)
        if self.workers_mode == "set":
            self.notes.append("`cd4ml serve` has no --workers option yet: using "
                              "--set serving.workers=N")
        elif self.workers_mode is None:
            self.notes.append("`cd4ml serve` has no --workers option nor a serving.workers "
                              "key yet: cd4ml runs with 1 worker only")
        self.log_toggle = self._config_ok(["serving.log.enabled=false"])
        if not self.log_toggle:
            self.notes.append("the config has no serving.log.enabled key yet: cd4ml is "
                              "measured once, as it is (log on/off not compared)")
        # with the log on, each server writes a fresh log in the temp folder (removed
        # after the server stops), not into the project's .cd4ml/predictions
        self.log_dir_key = self._config_ok(["serving.log.dir=/tmp/cd4ml-bench-probe"])
        self.log_dir: Path | None = None
        self.access_log = getattr(cfg.serving, "access_log", None)
        self.table_set = [f"serving.forecast_table={str(forecast_table).lower()}"]
        if not self._config_ok(self.table_set):
            self.table_set = []
            self.notes.append("the config has no serving.forecast_table key yet")

    def _config_ok(self, overrides: list[str]) -> bool:
        from cd4ml.config import load_config

        try:
            load_config(self.project, overrides)
            return True
        except Exception:
            return False

    def capabilities(self) -> dict[str, Any]:
        return {"workers_mode": self.workers_mode, "log_toggle": self.log_toggle,
                "log_dir_in_temp": self.log_dir_key, "access_log": self.access_log}

    def take_notes(self) -> list[str]:
        out, self._pending = self._pending, []
        return out

    def log_bytes(self) -> int | None:
        """Size of the running server's prediction log (None: not known)."""
        if self.log_dir is None:
            return None
        if not self.log_dir.exists():
            return 0
        return sum(p.stat().st_size for p in self.log_dir.rglob("*") if p.is_file())

    def remove_log(self) -> None:
        if self.log_dir is not None:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def _cmd(self, port: int, workers: int, log: bool | None, tmp: Path) -> list[str]:
        cmd = [self.exe, "serve", "-p", str(self.project), "--port", str(port),
               "--host", "127.0.0.1"]
        if self.workers_mode == "flag":
            cmd += ["--workers", str(workers)]
        elif self.workers_mode == "set":
            cmd += ["--set", f"serving.workers={workers}"]
        if log is not None:
            cmd += ["--set", f"serving.log.enabled={str(log).lower()}"]
        for kv in self.table_set:
            cmd += ["--set", kv]
        self.log_dir = None
        if log and self.log_dir_key:
            self.log_dir = tmp / f"predictions-w{workers}-{port}"
            cmd += ["--set", f"serving.log.dir={self.log_dir}"]
        return cmd

    def start(self, workers: int, log: bool | None, tmp: Path,
              cpus: str | None = None) -> servers.Server | None:
        """A ready server, or None when this checkout cannot run ``workers`` workers."""
        for _ in range(2):
            if workers > 1 and self.workers_mode is None:
                self._pending.append(f"cd4ml with {workers} workers skipped: no --workers")
                return None
            port = servers.free_port()
            tag = {True: "log on", False: "log off", None: "log default"}[log]
            srv = servers.start(f"cd4ml w{workers} {tag}", self._cmd(port, workers, log, tmp),
                                f"http://127.0.0.1:{port}", tmp, cpus=cpus)
            try:
                servers.wait_ready(srv, ["/ready", "/health"])
                return srv
            except servers.ServerExited as exc:
                servers.stop(srv)
                text = srv.log_tail(60)
                if self.workers_mode == "flag" and "--workers" in text:
                    self.workers_mode = "set" if self._config_ok(["serving.workers=2"]) else None
                    self._pending.append(f"`cd4ml serve` rejected --workers; now "
                                         f"{self.workers_mode or 'without workers'}")
                    continue
                raise SystemExit(str(exc)) from None
            except BaseException:
                servers.stop(srv)
                raise
        return None
