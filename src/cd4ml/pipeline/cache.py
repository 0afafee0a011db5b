"""Cache keys of stages: inputs' fingerprints, params, code and library versions.

The code part hashes the source of the module a stage runs *and of every cd4ml module
it imports, transitively* (found by reading the files, not importing them), so a change
in a helper re-runs the stage. Library versions come from installed distributions'
metadata, again without importing them: checking an up-to-date pipeline stays cheap.
"""

from __future__ import annotations

import ast
import hashlib
import json
from functools import lru_cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

__all__ = ["module_closure", "code_hash", "library_versions", "stage_key", "PACKAGE_DIR"]

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/cd4ml


def _module_file(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != "cd4ml":
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


@lru_cache(maxsize=None)
def _imports_of(path: Path, mtime_ns: int) -> tuple[str, ...]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = _package_of(path)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    if path.name == "__init__.py" and any(
            isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body):
        # a lazy package resolves names at run time: count every module in it
        found.update(f"{pkg}.{p.stem}" for p in path.parent.glob("*.py")
                     if p.name != "__init__.py")
    return tuple(sorted(m for m in found if m.startswith("cd4ml")))


def _package_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR).with_suffix("")
    parts = ["cd4ml", *rel.parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def module_closure(modules: list[str]) -> list[Path]:
    """Files of ``modules`` and every cd4ml module they import, transitively (and parents)."""
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        path = _module_file(mod)
        if path is None:
            continue
        seen[mod] = path
        parts = mod.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(_imports_of(path, path.stat().st_mtime_ns))
    return sorted(set(seen.values()))


def code_hash(modules: list[str]) -> str:
    h = hashlib.sha256()
    for path in module_closure(modules):
        h.update(str(path.relative_to(PACKAGE_DIR)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def library_versions(libraries: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for lib in sorted(libraries):
        try:
            out[lib] = importlib_metadata.version(lib)
        except importlib_metadata.PackageNotFoundError:
            out[lib] = None
    return out


def stage_key(*, name: str, inputs: dict[str, Any], params: Any, modules: list[str],
              libraries: list[str]) -> tuple[str, dict[str, Any]]:
    """The cache key of a stage and the parts it was made of (kept to explain staleness)."""
    parts = {"stage": name, "inputs": inputs, "params": params,
             "code": code_hash(modules), "libraries": library_versions(libraries)}
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest(), parts
