"""What a source's data must look like: column types, nulls, ranges, categories, keys.

:func:`infer_schema` writes a first draft from data you trust, :func:`save_schema` stores
it as commented YAML for a person to tighten, :func:`load_schema` reads it back with a
clear error for a bad edit, and :func:`cd4ml.data.validate` checks new data against it.

>>> import pandas as pd
>>> df = pd.DataFrame({"store": [1, 1, 2], "sales": [10.0, None, 3.5], "kind": ["A", "B", "A"]})
>>> s = infer_schema(df, name="sales", keys=["store", "kind"])
>>> [(c.name, c.type, c.nullable, c.min, c.categories) for c in s.columns]
[('store', 'int', False, 0, None), ('sales', 'float', True, 0, None), ('kind', 'string', False, None, ['A', 'B'])]
>>> s.unique_keys
['store', 'kind']
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from cd4ml.data._types import ColumnType, column_type
from cd4ml.errors import ConfigError, DataError

__all__ = ["Column", "Schema", "infer_schema", "save_schema", "schema_yaml", "load_schema",
           "MAX_CATEGORIES"]

#: String columns with at most this many distinct values get ``categories`` when inferred.
MAX_CATEGORIES = 50

Scalar = bool | int | float | str


class Column(BaseModel):
    """One column: its type, whether it may be missing, and the values allowed."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: ColumnType
    nullable: bool = False
    min: int | float | str | None = None
    max: int | float | str | None = None
    categories: list[Scalar] | None = None

    @field_validator("min", "max", mode="before")
    @classmethod
    def _dates_as_text(cls, v: Any) -> Any:
        if isinstance(v, (dt.date, pd.Timestamp)):  # YAML reads 2010-02-05 as a date
            return pd.Timestamp(v).isoformat().removesuffix("T00:00:00")
        return v

    @model_validator(mode="after")
    def _bounds_fit_type(self) -> Column:
        for key in ("min", "max"):
            v = getattr(self, key)
            if v is None:
                continue
            if self.type in ("int", "float") and isinstance(v, str):
                try:  # YAML 1.1 reads 1e6 as text
                    v = float(v)
                except ValueError:
                    pass
                else:
                    setattr(self, key, v)
            if self.type in ("int", "float") and isinstance(v, (bool, str)):
                raise ValueError(f"{key} = {v!r}: must be a number for a {self.type} column")
            if self.type == "date":
                try:
                    pd.Timestamp(str(v))
                except ValueError:
                    raise ValueError(f"{key} = {v!r}: must be a date like 2010-02-05") from None
            if self.type in ("string", "bool"):
                raise ValueError(f"{key} = {v!r}: {self.type} columns take no min/max; "
                                 f"use categories")
        if self.min is not None and self.max is not None and self.type != "date" \
                and self.min > self.max:  # type: ignore[operator]
            raise ValueError(f"min {self.min} > max {self.max}")
        if self.categories is not None:
            if self.type == "string":
                self.categories = [str(c) for c in self.categories]
            elif self.type == "int":
                if not all(_whole(c) for c in self.categories):
                    raise ValueError(f"categories = {self.categories!r}: int column needs "
                                     f"whole numbers")
                self.categories = [int(float(c)) for c in self.categories]
            else:
                raise ValueError(f"categories: only string and int columns take categories, "
                                 f"this column is {self.type}")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError("categories repeat a value")
        return self


def _whole(v: Any) -> bool:
    """A whole number, or text of one (YAML may quote a code): 3, 3.0, "3"; not True."""
    if isinstance(v, bool):
        return False
    try:
        return float(v).is_integer()
    except (TypeError, ValueError):
        return False


class Schema(BaseModel):
    """The columns of a source, in order, and the columns that identify a row."""

    model_config = ConfigDict(extra="forbid")

    name: str
    columns: list[Column]
    unique_keys: list[str] | None = None

    @model_validator(mode="after")
    def _names_consistent(self) -> Schema:
        names = [c.name for c in self.columns]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"column names repeat: {dup}")
        for k in self.unique_keys or []:
            if k not in names:
                raise ValueError(f"unique key {k!r} is not a column; columns: {names}")
        return self

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        """The column called ``name`` (``KeyError`` if absent)."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def infer_schema(df: pd.DataFrame, *, name: str, keys: list[str] | None = None) -> Schema:
    """A first schema from ``df``: types, nullability, ``min: 0`` if nothing is negative.

    Nullable iff a value is missing (unparseable dates recorded by ``read_source`` do not
    count as missing). No max is set. String columns with at most
    :data:`MAX_CATEGORIES` distinct values get ``categories``. ``unique_keys`` is ``keys``
    when those columns are unique together in ``df``, otherwise None.
    """
    parse_errors = df.attrs.get("parse_errors") or {}
    cols = []
    for col in df.columns:
        s = df[col]
        kind = column_type(s)
        nulls = int(s.isna().sum()) - int((parse_errors.get(col) or {}).get("count", 0))
        c: dict[str, Any] = {"name": str(col), "type": kind, "nullable": nulls > 0}
        if kind in ("int", "float"):
            vals = s.dropna().to_numpy()
            if len(vals) and bool((vals >= 0).all()):
                c["min"] = 0
        elif kind == "string":
            uniq = s.dropna().astype(str).unique()
            if len(uniq) <= MAX_CATEGORIES:
                c["categories"] = sorted(uniq.tolist())
        cols.append(Column(**c))
    unique = None
    if keys:
        missing = [k for k in keys if k not in df.columns]
        if missing:
            raise DataError(f"schema {name!r}: key column {missing[0]!r} is not in the data; "
                            f"columns: {', '.join(map(str, df.columns))}")
        if not df.duplicated(subset=list(keys)).any():
            unique = list(keys)
    return Schema(name=name, columns=cols, unique_keys=unique)


_HEADER = """\
# Data schema for source '{name}', checked by `cd4ml validate` on every new snapshot.
# Inferred from the data, then meant to be edited by hand. Fields:
#   name         the source this schema checks
#   columns      one entry per expected column (a missing one is an error, an extra
#                one a warning):
#     name         column name as in the file
#     type         int | float | string | bool | date
#     nullable     true if missing values are allowed, false to reject them
#     min, max     inclusive bounds for int/float (numbers) or date (2010-02-05) columns;
#                  leave out for no bound
#     categories   the only values allowed (string or int columns); leave out to allow any
#   unique_keys  columns whose values together must not repeat, e.g. [Store, Dept, Date];
#                leave out for no check
"""


def schema_yaml(schema: Schema) -> str:
    """``schema`` as YAML with a comment header explaining each field."""
    data = schema.model_dump(mode="json", exclude_none=True)
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True,
                          width=100)
    return _HEADER.format(name=schema.name) + body


def save_schema(schema: Schema, path: str | Path) -> None:
    """Write ``schema`` as YAML with a comment header explaining each field."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_yaml(schema), encoding="utf-8")


def _key_path(loc: tuple[Any, ...], raw: Any) -> str:
    parts: list[str] = []
    cur = raw
    for p in loc:
        if isinstance(p, int) and parts:
            label = str(p)
            if isinstance(cur, list) and p < len(cur) and isinstance(cur[p], dict) \
                    and "name" in cur[p]:
                label = str(cur[p]["name"])
            parts[-1] += f"[{label}]"
        else:
            parts.append(str(p))
        try:
            cur = cur[p]
        except (KeyError, IndexError, TypeError):
            cur = None
    return ".".join(parts) or "(top level)"


def load_schema(path: str | Path) -> Schema:
    """Read a schema written by :func:`save_schema` (and perhaps edited).

    A bad edit raises :class:`ConfigError` naming the file, the key path and the value:

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "sales.yaml"
    >>> _ = p.write_text("name: sales\\ncolumns:\\n- {name: y, type: decimal}\\n")
    >>> try:
    ...     load_schema(p)
    ... except ConfigError as e:
    ...     print(str(e).replace(str(p), "sales.yaml"))
    sales.yaml: columns[y].type = 'decimal': Input should be 'int', 'float', 'string', 'bool' or 'date'
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError("schema file not found; write one from trusted data with infer_schema + save_schema",
                          key="(file)", value=str(path))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(parse)"
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", key=where,
                          file=str(path)) from None
    if not isinstance(raw, dict):
        raise ConfigError("the file must hold a mapping with name and columns",
                          key="(top level)", value=type(raw).__name__, file=str(path))
    try:
        return Schema.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        key = _key_path(loc, raw)
        if err["type"] == "missing":
            raise ConfigError("required key is missing", key=key, file=str(path)) from None
        if err["type"] == "extra_forbidden":
            raise ConfigError("unknown key; allowed: " + ", ".join(
                Column.model_fields if "columns" in key else Schema.model_fields),
                key=key, value=err.get("input"), file=str(path)) from None
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "value_error":  # a check across fields: the message names them
            error = ConfigError(f"{key}: {msg}", file=str(path))
            error.key = key
            raise error from None
        value = err.get("input")
        raise ConfigError(msg, key=key, value=None if isinstance(value, (dict, list)) else value,
                          file=str(path)) from None
