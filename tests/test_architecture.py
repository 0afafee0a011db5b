"""Layering (import-linter contracts in pyproject.toml), the public surface, light import."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cd4ml

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (pip install 'cd4ml[test]')")
    res = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_public_surface() -> None:
    assert set(cd4ml.__all__) == {"__version__", "load_model"}
    assert callable(cd4ml.load_model)


def test_import_cd4ml_is_light() -> None:
    code = ("import sys, json, cd4ml, cd4ml.config, cd4ml.errors; print(json.dumps(sorted(m for m in "
            "sys.modules if m.split('.')[0] in ('pandas', 'lightgbm', 'sklearn', 'fastapi', "
            "'uvicorn', 'dask', 'matplotlib', 'sqlalchemy'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
