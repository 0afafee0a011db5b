"""Tabular inputs: the model's signature from the schema, and the transform fitted on the
training rows that training, batch scoring and serving all apply (serving never refits).

The inputs are the table's columns but the target, the id and ``inputs.drop``, in table
order; each takes its type, range, categories and nullability from the schema.
Categorical columns (declared categories, string/bool columns, ``inputs.categorical``)
become codes 0..n-1: declared categories in declared order, else the training values
sorted, plus one "unknown" code when that is the column's policy. Impute columns fill a
missing value with the training median (numeric) or most frequent code (categorical).

>>> import pandas as pd
>>> from cd4ml.config import InputsConfig
>>> from cd4ml.data.schema import Column, Schema
>>> schema = Schema(name="people", columns=[Column(name="age", type="float", min=0, max=99),
...     Column(name="sex", type="int", categories=[1, 2]), Column(name="y", type="int")])
>>> train = pd.DataFrame({"age": [30.0, 50.0, 70.0], "sex": [2, 1, 2], "y": [1, 0, 1]})
>>> spec = tabular_spec([schema], train, InputsConfig(), target="y")
>>> t = TabularTransform.fit(spec, train)
>>> t.matrix(train).tolist(), t.categorical
([[30.0, 1.0], [50.0, 0.0], [70.0, 1.0]], {'sex': 2})
>>> t.encode_records([{"age": -5, "sex": 2}])
Traceback (most recent call last):
...
cd4ml.errors.RequestError: rows[0].age = -5: below the schema's minimum 0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.config import InputsConfig
from cd4ml.data._types import column_type, json_value
from cd4ml.data.schema import Schema
from cd4ml.errors import ConfigError, DataError, RequestError
from cd4ml.features.tabular_encode import Encoder, message
from cd4ml.features.tabular_kernels import frame_column, parse_kind

__all__ = ["InputColumn", "TabularSpec", "TabularTransform", "tabular_spec", "MAX_CLASSES"]

#: a classification target without declared classes may have at most this many values
MAX_CLASSES = 50
_JSON_TYPES = {"int": "integer", "float": "number", "string": "string", "bool": "boolean"}


@dataclass(frozen=True)
class InputColumn:
    """One input: schema type, whether it is coded, its declared categories and range,
    and its policies for an unseen category and a missing value."""

    name: str
    type: str  #: int | float | string | bool
    categorical: bool = False
    categories: list[Any] | None = None  #: declared in the schema (None: learned)
    min: float | None = None
    max: float | None = None
    nullable: bool = False  #: the schema allows missing values
    unknown: str = "refuse"  #: refuse | unknown (categorical columns)
    missing: str = "refuse"  #: refuse | impute

    @property
    def json_type(self) -> str:
        return _JSON_TYPES[self.type]


@dataclass(frozen=True)
class TabularSpec:
    """The inputs in signature order, the target, the id and (classification) classes."""

    inputs: list[InputColumn]
    target: str
    task: str = "classification"
    id: str | None = None
    classes: list[Any] | None = None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.inputs]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TabularSpec:
        return cls(**{**d, "inputs": [InputColumn(**c) for c in d["inputs"]]})

    def encode_target(self, y: pd.Series) -> np.ndarray:
        """Class indices 0..k-1 (classification) or float64 values (regression)."""
        y = pd.Series(y).reset_index(drop=True)
        _no_missing(y, self.target)
        if self.classes is None:
            _numeric_target(y, self.target)
            return y.to_numpy(dtype=np.float64)
        _inside(y, self.target, self.classes)
        index = {c: i for i, c in enumerate(self.classes)}
        return np.fromiter((index[v] for v in y.tolist()), np.int64, len(y))


def _no_missing(y: pd.Series, target: str) -> None:
    isna = y.isna().to_numpy()
    if isna.any():
        raise DataError(f"target {target}: {int(isna.sum()):,} missing value(s) (first at row "
                        f"{int(np.flatnonzero(isna)[0])}); drop those rows or fill them")


def _numeric_target(y: pd.Series, target: str) -> None:
    if pd.api.types.is_bool_dtype(y.dtype) or not pd.api.types.is_numeric_dtype(y.dtype):
        raise DataError(f"target {target}: values of type {y.dtype} are not numbers; a "
                        f"regression needs a numeric target (did you mean classification?)")


def _inside(y: pd.Series, target: str, classes: list[Any]) -> None:
    known = set(classes)
    outside = [v for v in pd.unique(y).tolist() if v not in known]
    if outside:
        rows = int((~y.isin(classes)).sum())
        raise DataError(f"target {target}: values {outside[:5]} ({rows:,} rows) are not in "
                        f"data.classes {classes}; declare every class or drop those rows")


def _target_classes(y: pd.Series, target: str, declared: list[Any] | None) -> list[Any]:
    y = y.reset_index(drop=True)
    _no_missing(y, target)
    if declared is not None:
        _inside(y, target, list(declared))
        return [json_value(c) for c in declared]
    values = pd.unique(y)
    continuous = pd.api.types.is_float_dtype(y.dtype) and not bool(
        (np.floor(values) == values).all())
    if len(values) > MAX_CLASSES or continuous:
        raise DataError(f"target {target} has {len(values):,} distinct values; did you mean "
                        f"regression? (or declare data.classes)")
    if len(values) < 2:
        raise DataError(f"target {target} has one value only ({json_value(values[0])!r}); "
                        f"a classifier needs at least two classes")
    return sorted(json_value(v) for v in values)


def tabular_spec(schemas: list[Schema], frame: pd.DataFrame, cfg_inputs: InputsConfig,
                 target: str, id: str | None = None, classes: list[Any] | None = None,
                 task: str = "classification") -> TabularSpec:
    """The inputs of ``frame`` (the joined table) with what the schemas say of them."""
    cols = [str(c) for c in frame.columns]
    listed = ", ".join(cols)
    if target not in cols:
        raise ConfigError(f"not a column of the table; columns: {listed}", key="data.target",
                          value=target)
    if id is not None and id not in cols:
        raise ConfigError(f"not a column of the table; columns: {listed}", key="data.id",
                          value=id)
    role = {target: "the target", **({id: "the id"} if id else {}),
            **{d: "dropped (inputs.drop)" for d in cfg_inputs.drop}}
    for key, names in (("inputs.drop", cfg_inputs.drop),
                       ("inputs.categorical", cfg_inputs.categorical),
                       ("inputs.columns", list(cfg_inputs.columns))):
        for n in names:
            if n not in cols:
                raise ConfigError(f"not a column of the table; columns: {listed}", key=key,
                                  value=n)
            if key != "inputs.drop" and n in role:
                raise ConfigError(f"not an input: it is {role[n]}", key=key, value=n)
    declared = {}
    for s in schemas:
        for c in s.columns:
            declared.setdefault(c.name, c)
    inputs = [_input(name, declared.get(name), frame[name], cfg_inputs)
              for name in cols if name not in role]
    if not inputs:
        raise DataError(f"the table has no input columns besides {sorted(role)}")
    if task == "classification":
        classes = _target_classes(frame[target], target, classes)
    else:
        if classes is not None:
            raise ConfigError("classes are for task: classification", key="data.classes",
                              value=classes)
        _no_missing(frame[target].reset_index(drop=True), target)
        _numeric_target(frame[target], target)
    return TabularSpec(inputs=inputs, target=target, task=task, id=id, classes=classes)


def _input(name: str, col: Any, s: pd.Series, cfg: InputsConfig) -> InputColumn:
    if col is None:  # a column no schema describes (a join's product): its dtype only
        kind, lo, hi, cats, nullable = column_type(s), None, None, None, bool(s.isna().any())
    else:
        kind, lo, hi, cats, nullable = col.type, col.min, col.max, col.categories, col.nullable
    if kind == "date":
        raise DataError(f"input {name} is a date column; a tabular model takes numbers, text "
                        f"and true/false: add it to inputs.drop or derive a number from it")
    categorical = cats is not None or kind in ("string", "bool") or name in cfg.categorical
    policy = cfg.columns.get(name)
    if policy is not None and policy.unknown is not None and not categorical:
        raise ConfigError(f"{name} is not categorical, so it has no unseen categories; "
                          f"declare it in inputs.categorical or drop this key",
                          key=f"inputs.columns.{name}.unknown", value=policy.unknown)
    unknown = (policy.unknown if policy and policy.unknown else cfg.unknown) \
        if categorical else "refuse"
    missing = policy.missing if policy and policy.missing else cfg.missing
    return InputColumn(name=name, type=kind, categorical=categorical,
                       categories=list(cats) if cats is not None else None, min=lo, max=hi,
                       nullable=nullable, unknown=unknown, missing=missing)


@dataclass
class TabularTransform:
    """Code tables and fills fitted on training rows; applied by the same kernels to
    frames, request records and matrices. JSON round-trips (no pickle)."""

    spec: TabularSpec
    codes: dict[str, list[Any]]  #: categorical column -> its categories (code = position)
    fills: dict[str, float]  #: impute column -> the value (a code if categorical)
    encoder: Encoder = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.encoder = Encoder(self.spec.inputs, self.codes, self.fills)

    @classmethod
    def fit(cls, spec: TabularSpec, frame: pd.DataFrame) -> TabularTransform:
        """Learn the code tables and fills from the training rows ``frame``; a bad
        training value (a missing one in a refuse column, ...) is a one-line DataError."""
        codes = {c.name: _categories(c, frame[c.name]) if c.name in frame.columns else []
                 for c in spec.inputs if c.categorical}
        probe = cls(spec, codes, {c.name: np.nan for c in spec.inputs if c.missing == "impute"})
        X, errors = probe.encoder.frame(frame)
        if errors:
            raise DataError(summary(errors, "training rows"))
        fills: dict[str, float] = {}
        for j, c in enumerate(spec.inputs):
            if c.missing != "impute":
                continue
            vals = X[:, j][~np.isnan(X[:, j])]
            if not len(vals):
                raise DataError(f"training rows: {c.name} has no values to impute from")
            fills[c.name] = int(np.bincount(vals.astype(np.int64)).argmax()) if c.categorical \
                else float(np.median(vals))
        return cls(spec, codes, fills)

    @property
    def feature_names(self) -> list[str]:
        return self.spec.names

    @property
    def categorical(self) -> dict[str, int]:
        """Categorical input -> number of codes (the unknown code included)."""
        return {c.name: len(self.codes[c.name]) + (c.unknown == "unknown")
                for c in self.spec.inputs if c.categorical}

    def matrix(self, frame: pd.DataFrame, *, where: str | None = None) -> np.ndarray:
        """Float32 (n, k) features of a frame; columns beyond the inputs are ignored. A bad
        value raises RequestError (every one listed), or with ``where`` (e.g. "holdout
        rows") a one-line DataError."""
        X, errors = self.encoder.frame(frame)
        if errors:
            if where is not None:
                raise DataError(summary(errors, where))
            raise RequestError(message(errors), errors=errors)
        return X.astype(np.float32)

    def encode_frame(self, frame: pd.DataFrame, *, extra: str = "ignore") -> np.ndarray:
        """As :meth:`matrix`; ``extra="refuse"`` also refuses columns that are not inputs."""
        X, errors = self.encoder.frame(frame, extra=extra)
        if errors:
            raise RequestError(message(errors), errors=errors)
        return X.astype(np.float32)

    def encode_records(self, records: list[Any]) -> np.ndarray:
        """Float32 (n, k) features of request records (field names = input names)."""
        X = self.encoder.plain_records(records) if isinstance(records, list) else None
        if X is None:
            X = self.encoder.records(list(records))
        return X.astype(np.float32)

    def encode_matrix(self, M: Any) -> np.ndarray:
        """Float32 (n, k) features of raw inputs given as a matrix in signature order."""
        return self.encoder.matrix(M).astype(np.float32)

    def signature_inputs(self) -> list[dict[str, Any]]:
        out = []
        for c in self.spec.inputs:
            d: dict[str, Any] = {"name": c.name, "type": c.json_type, "categorical": c.categorical}
            if c.categorical:
                d["categories"] = list(self.codes[c.name])
            if c.min is not None:
                d["minimum"] = c.min
            if c.max is not None:
                d["maximum"] = c.max
            d.update(nullable=c.nullable, unknown=c.unknown, missing=c.missing)
            out.append(d)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"codes": self.codes, "fills": self.fills}

    @classmethod
    def from_dict(cls, d: dict[str, Any], spec: TabularSpec) -> TabularTransform:
        return cls(spec, {k: list(v) for k, v in d["codes"].items()}, dict(d["fills"]))


def _categories(c: InputColumn, s: pd.Series) -> list[Any]:
    """Declared categories, [False, True] for a bool, else the training values sorted."""
    if c.categories is not None:
        return list(c.categories)
    if c.type == "bool":
        return [False, True]
    vals, pre = frame_column(parse_kind(c), s)
    ok = pd.notna(vals) & (pre == 0 if pre is not None else True)
    uniq = pd.unique(vals[ok])
    if c.type == "int":
        return sorted(int(v) for v in uniq if float(v).is_integer())
    return sorted(json_value(v) for v in uniq)


def summary(errors: list[dict[str, Any]], where: str) -> str:
    """One line for bad rows of a data set: the first problem, counted, and its fix."""
    groups: dict[tuple[Any, str], list[Any]] = {}
    for e in errors:
        g = groups.setdefault((e["field"], e["reason"]), [0, e])
        g[0] += 1
    (name, reason), (n, first) = next(iter(groups.items()))
    if reason == "missing_value":
        head = (f"{where}: {name} has {n:,} missing value(s) (first at {first['loc']}); set "
                f"inputs.columns.{name}.missing: impute, or fill them")
    elif reason == "missing_field":
        head = f"{where}: column {name} is missing"
    else:
        head = (f"{where}: {name} has {n:,} bad value(s); first {first['loc']} = "
                f"{first['value']!r}: {first['problem']}")
    rest = [f"{f} {r} ({k:,})" for (f, r), (k, _) in list(groups.items())[1:]]
    return head + (f" (and {', '.join(rest)})" if rest else "")
