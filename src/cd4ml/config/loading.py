"""Reading cd4ml.yaml: YAML 1.2 booleans, --set overrides, errors naming the key."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cd4ml.errors import ConfigError

from cd4ml.config._strict import CONFIG_FILE
from cd4ml.config.project import ProjectConfig


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false are booleans (``on:`` stays a key, ``no`` a string)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def parse_yaml(text: str) -> Any:
    r"""Parse YAML with 1.2 booleans.

    >>> parse_yaml("on: [a]\nx: yes\ny: true")
    {'on': ['a'], 'x': 'yes', 'y': True}
    """
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The keys allowed at ``loc`` (the parent of an unknown key), for the error message."""
    cur: Any = model
    in_dict = False  # the part is a key of a dict of models (e.g. search.space.<param>)
    for part in loc:
        if isinstance(part, int) or in_dict:
            in_dict = False
            continue
        field = getattr(cur, "model_fields", {}).get(part)
        if field is None:
            if isinstance(cur, type) and issubclass(cur, BaseModel):
                return None
            continue
        ann = field.annotation
        in_dict = getattr(ann, "__origin__", None) is dict
        cur = _unwrap(ann)
        if cur is None:
            return None
    if not (isinstance(cur, type) and issubclass(cur, BaseModel)):
        return None
    return sorted(f.alias or n for n, f in cur.model_fields.items())


def _unwrap(ann: Any) -> Any:
    for arg in (getattr(ann, "__args__", None) or (ann,))[::-1]:
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        inner = _unwrap(arg) if getattr(arg, "__args__", None) else None
        if inner is not None:
            return inner
    return None


def validate_config(raw: Any, *, file: str = CONFIG_FILE) -> ProjectConfig:
    """Validate a parsed YAML document; raise :class:`ConfigError` for the first problem."""
    if not isinstance(raw, dict):
        raise ConfigError("the file must hold a mapping of keys", key="(top level)",
                          value=type(raw).__name__, file=file)
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(ProjectConfig, loc[:-1]) or []
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            msg += f"; allowed here: {', '.join(allowed)}" if allowed else ""
            raise ConfigError(msg, key=key, value=err.get("input"), file=file) from None
        if err["type"] == "missing":
            raise ConfigError("required key is missing", key=key, value=None,
                              file=file) from None
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(msg, key=key, value=err.get("input") if loc else None,
                          file=file) from None


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None,
                    *, file: str = CONFIG_FILE) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a copy of ``raw``.

    >>> apply_overrides({"a": {"b": 1}, "l": [{"x": 1}]}, ["a.b=2", "l.0.x=[1, 2]"])
    {'a': {'b': 2}, 'l': [{'x': [1, 2]}]}
    """
    out = json.loads(json.dumps(raw))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError("--set takes key.path=value", key="--set", value=item, file=file)
        path, _, text = item.partition("=")
        parts = [p for p in path.strip().split(".") if p]
        if not parts:
            raise ConfigError("empty key path", key="--set", value=item, file=file)
        try:
            value = parse_yaml(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"value is not valid YAML: {exc}", key=path, value=text,
                              file=file) from None
        cur: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(cur, list):
                if not part.isdigit() or int(part) >= len(cur):
                    raise ConfigError(f"list index out of range (length {len(cur)})",
                                      key=".".join(parts[:i + 1]), value=part, file=file)
                if last:
                    cur[int(part)] = value
                else:
                    cur = cur[int(part)]
            elif isinstance(cur, dict):
                if last:
                    cur[part] = value
                else:
                    cur = cur.setdefault(part, {})
            else:
                raise ConfigError("cannot set a key inside a scalar",
                                  key=".".join(parts[:i]), value=cur, file=file)
    return out


def read_raw(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"no {CONFIG_FILE} here; pass -p DIR of a project", key="(file)",
                          value=str(path))
    text = path.read_text(encoding="utf-8")
    try:
        raw = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(parse)"
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", key=where,
                          value=None, file=str(path)) from None
    if raw is None:
        raise ConfigError("the file is empty", key="(top level)", value="", file=str(path))
    return raw


def load_config(project_dir: str | Path = ".", overrides: list[str] | None = None,
                ) -> tuple[ProjectConfig, dict[str, Any]]:
    """Read ``cd4ml.yaml`` in ``project_dir``, apply overrides, validate. Returns (config, raw)."""
    path = Path(project_dir) / CONFIG_FILE
    raw = apply_overrides(read_raw(path), overrides, file=str(path))
    return validate_config(raw, file=str(path)), raw


def config_hash(cfg: ProjectConfig) -> str:
    """A stable sha256 of the validated config (defaults included)."""
    blob = json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()
