"""Layering (import-linter contracts in pyproject.toml), the public surface, light import."""

from __future__ import annotations

import json
import re
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


# what ../shared/STYLE.md asks the hot path not to do, written as the code would say it
_TRICKS = {
    r"lightgbm\.basic": "a private module of LightGBM (use Booster's public API)",
    r"\b_LIB\b": "LightGBM's C library handle",
    r"\bsetswitchinterval\(": "a process-wide interpreter setting",
    r"logging\._srcfile\s*=": "a private, process-wide logging setting",
    r"tuple\.__new__": "a record built positionally (use the NamedTuple/dataclass itself)",
    r"scope\[\"state\"\]": "request state as loose dict keys (use serving.routes.RequestContext)",
}


def test_no_private_internals_or_process_wide_settings() -> None:
    found = [f"{p.relative_to(ROOT)}:{i}: {what} ({why})"
             for p in sorted((ROOT / "src" / "cd4ml").rglob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1)
             for what, why in _TRICKS.items() if re.search(what, line)]
    assert not found, "\n".join(found)
