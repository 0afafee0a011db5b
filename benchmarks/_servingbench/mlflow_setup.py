"""The MLflow side: a venv of its own with ``mlflow==3.17.*``, and the exported pyfunc model."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

__all__ = ["MLFLOW_SPEC", "ensure_mlflow_venv", "export_pyfunc"]

MLFLOW_SPEC = "mlflow==3.17.*"
# uvloop + httptools, as cd4ml's server has them (its serve extra): the same HTTP stack.
# Without them, `--workers 2` answers keep-alive requests ~40 ms late (the listening
# socket uvicorn shares between workers has proto 0, so asyncio never sets TCP_NODELAY
# and Nagle meets delayed ACKs), which would make MLflow look worse than it is.
HTTP_SPEC = "uvicorn[standard]"
PYFUNC_FILE = Path(__file__).with_name("mlflow_pyfunc.py")

_SAVE = r"""
import json, sys
import numpy as np, pandas as pd
import mlflow
from mlflow.models import infer_signature
code, dest = sys.argv[1], sys.argv[2]
cfg, example = json.loads(sys.argv[3]), json.loads(sys.argv[4])
df = pd.DataFrame([example])
mlflow.pyfunc.save_model(dest, python_model=code, model_config=cfg,
                         signature=infer_signature(df, np.zeros(1)))
"""


def _pip(py: Path, *args: str, log: Path) -> None:
    with open(log, "a") as f:
        res = subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check",
                              *args], stdout=f, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise SystemExit(f"pip install {' '.join(args)} failed in {py.parent.parent} "
                         f"(log {log}):\n{tail}")


def ensure_mlflow_venv(venv: Path, cd4ml_root: Path, *, console: Console,
                       ) -> tuple[Path, dict[str, str]]:
    """The venv's python and versions; created (mlflow 3.17, uvicorn[standard], cd4ml[ml]
    editable) when it is missing."""
    py = venv / "bin" / "python"
    if not (venv / "bin" / "mlflow").exists():
        console.print(f"[bold]creating the MLflow venv {venv}[/bold] ({MLFLOW_SPEC}, {HTTP_SPEC}, "
                      f"cd4ml[ml] editable from {cd4ml_root}; one-off, a few minutes)")
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        log = venv / "install.log"
        _pip(py, "--upgrade", "pip", log=log)
        _pip(py, MLFLOW_SPEC, HTTP_SPEC, log=log)
        _pip(py, "-e", f"{cd4ml_root}[ml]", log=log)
    probe = ("import mlflow, cd4ml, lightgbm, uvicorn; print(mlflow.__version__); "
             "print(cd4ml.__file__); print(uvicorn.__version__)\n"
             "try:\n import uvloop, httptools; print(uvloop.__version__)\n"
             "except ImportError: print('-')")
    res = subprocess.run([str(py), "-c", probe], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"the MLflow venv {venv} is broken (delete it to recreate it):\n"
                         f"{res.stderr.strip()[-1500:]}")
    version, cd4ml_file, uv_version, uvloop_version = res.stdout.split()
    if uvloop_version == "-":
        console.print(f"adding uvloop and httptools to {venv} ({HTTP_SPEC}=={uv_version})")
        _pip(py, f"{HTTP_SPEC}=={uv_version}", log=venv / "install.log")
        uvloop_version = "installed now"
    if not version.startswith("3.17."):
        raise SystemExit(f"{venv} has mlflow {version}, expected {MLFLOW_SPEC}; delete the "
                         f"venv (or pass --mlflow-venv) to recreate it")
    if not Path(cd4ml_file).resolve().is_relative_to(cd4ml_root.resolve()):
        console.print(f"[yellow]note:[/yellow] cd4ml in {venv} is {cd4ml_file}, not the "
                      f"checkout {cd4ml_root}")
    return py, {"mlflow": version, "uvicorn": uv_version, "uvloop": uvloop_version,
                "cd4ml": cd4ml_file}


def export_pyfunc(py: Path, servable: Any, project: Path, example: dict[str, Any], *,
                  console: Console, forecast_table: bool = True) -> Path:
    """Save (or reuse) the pyfunc model of this exact version under ``project/.cd4ml``."""
    code_hash = hashlib.sha256(PYFUNC_FILE.read_bytes() + _SAVE.encode()).hexdigest()[:8]
    tag = (f"{servable.name}-v{servable.version}-{servable.digest[:12]}-{code_hash}"
           f"{'' if forecast_table else '-no-table'}")
    dest = project / ".cd4ml" / "bench" / f"mlflow-pyfunc-{tag}"
    if (dest / "MLmodel").is_file():
        console.print(f"MLflow model: reusing {dest}")
        return dest
    if dest.exists():  # a failed export: save_model refuses an existing folder
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    cfg = {"project_dir": str(project), "model_uri": f"{servable.name}/{servable.version}",
           "digest": servable.digest, "forecast_table": forecast_table}
    console.print(f"MLflow model: exporting {cfg['model_uri']} to {dest}")
    res = subprocess.run([str(py), "-c", _SAVE, str(PYFUNC_FILE), str(dest), json.dumps(cfg),
                          json.dumps(example)], capture_output=True, text=True,
                         env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
                              "DO_NOT_TRACK": "true"})
    if res.returncode != 0 or not (dest / "MLmodel").is_file():
        raise SystemExit(f"exporting the MLflow model failed:\n{res.stderr.strip()[-3000:]}")
    return dest
