"""The peers' venvs, created on demand: Evidently 0.7.23 and NannyML 0.13.1, one each.

Each venv holds what ``pip install`` of its specs brings and nothing else; the specs pin
``pandas<3`` (Evidently 0.7 breaks on pandas 3; NannyML's own bounds allow it too) and add
``pyarrow`` to read the Parquet frames.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rich.console import Console

__all__ = ["PEERS", "ensure_peer_venv"]

#: peer name -> (pip specs, the distribution whose version is checked, that version)
PEERS: dict[str, tuple[list[str], str, str]] = {
    "evidently": (["evidently==0.7.23", "pandas<3", "pyarrow"], "evidently", "0.7.23"),
    # statsmodels: nannyml 0.13.1 imports it (its plots) without declaring it
    "nannyml": (["nannyml==0.13.1", "pandas<3", "pyarrow", "statsmodels"], "nannyml",
                "0.13.1"),
}
_PROBE = ("from importlib.metadata import version as v\n"
          "import {module}\n"
          "for p in {dists!r}:\n"
          "    try: print(p, v(p))\n"
          "    except Exception: print(p, '-')")


def _pip(py: Path, *args: str, log: Path) -> None:
    with open(log, "a") as f:
        res = subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check",
                              *args], stdout=f, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise SystemExit(f"pip install {' '.join(args)} failed in {py.parent.parent} "
                         f"(log {log}):\n{tail}")


def ensure_peer_venv(peer: str, venv: Path, *, console: Console) -> tuple[Path, dict[str, str]]:
    """The venv's python and the versions in it; the venv is created when it is missing."""
    specs, dist, want = PEERS[peer]
    py = venv / "bin" / "python"
    done = venv / ".installed"  # the specs of the last complete install
    if not py.exists():
        console.print(f"[bold]creating the {peer} venv {venv}[/bold] ({', '.join(specs)}; "
                      f"one-off, a few minutes)")
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        _pip(py, "--upgrade", "pip", log=venv / "install.log")
    if not done.exists() or done.read_text().split() != specs:
        _pip(py, *specs, log=venv / "install.log")
        done.write_text(" ".join(specs) + "\n")
    dists = [dist, "pandas", "numpy", "scipy", "pyarrow", "scikit-learn"]
    res = subprocess.run([str(py), "-c", _PROBE.format(module=dist, dists=dists)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"the {peer} venv {venv} is broken (delete it to recreate it):\n"
                         f"{res.stderr.strip()[-1500:]}")
    versions = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    if versions.get(dist) != want:
        raise SystemExit(f"{venv} has {dist} {versions.get(dist)}, expected {want} (delete "
                         f"the venv or pass another folder)")
    if int(versions.get("pandas", "0").split(".")[0]) >= 3:
        raise SystemExit(f"{venv} has pandas {versions['pandas']}; the peers need pandas<3")
    return py, versions
