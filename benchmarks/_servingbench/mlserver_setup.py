"""The MLServer side: a venv of its own with MLServer 1.7.1 + mlserver-lightgbm, a model folder.

The venv holds what ``pip install mlserver==1.7.1 mlserver-lightgbm==1.7.1`` brings and
nothing else (its default HTTP stack); the model folder has the booster as LightGBM text
``model.bst``, a ``model-settings.json`` naming MLServer's LightGBM runtime, and a
``settings.json`` with ``parallel_workers: 0`` (inference in the one server process) and
loopback ports; everything else (logging included) is MLServer's default.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from _servingbench import servers

__all__ = ["MLSERVER_SPECS", "ensure_mlserver_venv", "write_model_dir", "start_mlserver"]

MLSERVER_SPECS = ["mlserver==1.7.1", "mlserver-lightgbm==1.7.1"]


def ensure_mlserver_venv(venv: Path, *, console: Console) -> tuple[Path, dict[str, str]]:
    """The venv's ``mlserver`` executable and versions; created when it is missing."""
    exe = venv / "bin" / "mlserver"
    py = venv / "bin" / "python"
    if not exe.exists():
        console.print(f"[bold]creating the MLServer venv {venv}[/bold] "
                      f"({', '.join(MLSERVER_SPECS)}; one-off, a few minutes)")
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        log = venv / "install.log"
        for args in (["--upgrade", "pip"], MLSERVER_SPECS):
            with open(log, "a") as f:
                res = subprocess.run([str(py), "-m", "pip", "install",
                                      "--disable-pip-version-check", *args],
                                     stdout=f, stderr=subprocess.STDOUT)
            if res.returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                raise SystemExit(f"pip install {' '.join(args)} failed in {venv} "
                                 f"(log {log}):\n{tail}")
    probe = ("from importlib.metadata import version as v\n"
             "for p in ['mlserver', 'mlserver-lightgbm', 'lightgbm', 'uvicorn', 'uvloop', "
             "'httptools', 'pandas', 'numpy']:\n"
             "    try: print(p, v(p))\n"
             "    except Exception: print(p, '-')")
    res = subprocess.run([str(py), "-c", probe], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"the MLServer venv {venv} is broken (delete it to recreate it):\n"
                         f"{res.stderr.strip()[-1500:]}")
    versions = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    if versions.get("mlserver") != "1.7.1" or versions.get("mlserver-lightgbm") != "1.7.1":
        raise SystemExit(f"{venv} has mlserver {versions.get('mlserver')}, mlserver-lightgbm "
                         f"{versions.get('mlserver-lightgbm')}; expected 1.7.1 (delete the "
                         f"venv or pass --mlserver-venv)")
    return exe, versions


def write_model_dir(dest: Path, model_text: str, name: str, *, http_port: int,
                    grpc_port: int, metrics_port: int) -> Path:
    """MLServer's model repository for one LightGBM model (``mlserver start DEST``)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "model.bst").write_text(model_text)
    (dest / "model-settings.json").write_text(json.dumps({
        "name": name, "implementation": "mlserver_lightgbm.LightGBMModel",
        "parameters": {"uri": "./model.bst"}}, indent=2))
    (dest / "settings.json").write_text(json.dumps({
        "parallel_workers": 0, "host": "127.0.0.1", "http_port": http_port,
        "grpc_port": grpc_port, "metrics_port": metrics_port}, indent=2))
    return dest


def start_mlserver(exe: Path, model_text: str, name: str, tmp: Path, *,
                   cpus: str | None = None, env: dict[str, str] | None = None,
                   ) -> tuple[servers.Server, dict[str, Any]]:
    """A ready MLServer (``/v2/models/NAME/ready`` answered 200) and its settings;
    ``env``: variables added to its environment (none by default)."""
    http, grpc, metrics = servers.free_port(), servers.free_port(), servers.free_port()
    folder = write_model_dir(tmp / name, model_text, name, http_port=http,
                             grpc_port=grpc, metrics_port=metrics)
    srv = servers.start("mlserver", [str(exe), "start", str(folder)],
                        f"http://127.0.0.1:{http}", tmp, cpus=cpus,
                        env={**os.environ, **env} if env else None)
    try:
        servers.wait_ready(srv, [f"/v2/models/{name}/ready"])
    except BaseException:
        servers.stop(srv)
        raise
    settings = {p.name: json.loads(p.read_text()) for p in
                (folder / "settings.json", folder / "model-settings.json")}
    return srv, settings
