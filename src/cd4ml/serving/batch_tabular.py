"""Batch scoring of a tabular model: each chunk of the file goes through the servable's
own frame encoding (the transform's kernels, the checks serving applies) and predictor.

The output is the input's columns plus ``label`` and ``probability_<class>`` (a
classifier) or ``prediction`` (a regressor), and ``error`` with ``skip_invalid``. The
model's inputs are matched by their exact names (as requests name them); other columns
pass through. A CSV's input columns are read as text and parsed by the encoder (a cell
that is not a number where one belongs is refused with its row), then written typed
as the signature says.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from cd4ml.errors import RequestError, SourceError
from cd4ml.registry.tabular import TabularServable
from cd4ml.serving.answers import ANSWERS
from cd4ml.serving.batch import _LOC, _MAX_ERRORS, _describe

__all__ = ["TabularJob"]

_ARROW = {"integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}
#: arrow types of the v2 datatypes an answer's columns have
_COLUMN_TYPES = {"INT64": pa.int64(), "BOOL": pa.bool_(), "FP64": pa.float64(),
                 "BYTES": pa.string()}


class TabularJob:
    """One input's chunks -> output tables, through ``encode_frame`` and
    ``predict_encoded``."""

    @staticmethod
    def text_columns(schema: pa.Schema, model: TabularServable, name: str) -> set[str]:
        """A CSV's columns read as text: the model's inputs that are in it."""
        return {f for f in model.fields if f in schema.names}

    def __init__(self, model: TabularServable, schema: pa.Schema, *, csv: bool,
                 skip_invalid: bool, name: str) -> None:
        self.model, self.skip_invalid, self.name = model, skip_invalid, name
        missing = [f for f in model.fields if f not in schema.names]
        if missing:
            near = {c.lower(): c for c in schema.names}
            hint = "; ".join(f"{near[f.lower()]!r} is not {f!r} (names are case-sensitive)"
                             for f in missing if f.lower() in near)
            raise SourceError(f"{name}: no column {missing[0]!r} (an input of the model"
                              f"{f', and {len(missing) - 1} more' if len(missing) > 1 else ''})"
                              f"{'; ' + hint if hint else ''}; columns found: {schema.names}")
        kinds = {i["name"]: i["type"] for i in model.signature["inputs"]}
        #: a CSV's input columns are read as text; written typed as the signature says
        self.retype = {f: _ARROW[kinds[f]] for f in model.fields
                       if csv and kinds.get(f) in _ARROW}
        self.answers = ANSWERS[model.task](model)
        self.added = {k: _COLUMN_TYPES[t] for k, t in self.answers.column_types().items()}
        if skip_invalid:
            self.added["error"] = pa.string()
        for c in schema.names:
            if c in self.added:
                raise SourceError(f"{name}: already has a column {c!r}, which the output "
                                  f"adds; rename or drop it")
        fields = [pa.field(f.name, self.retype[f.name]) if f.name in self.retype else f
                  for f in schema]
        meta = {"cd4ml.model": model.name, "cd4ml.model_version": str(model.version),
                "cd4ml.model_digest": model.digest}
        self.schema = pa.schema([*fields, *(pa.field(k, t) for k, t in self.added.items())],
                                metadata=meta)

    def summary(self) -> dict[str, Any]:
        return {"task": self.model.task, "predictor": self.model.predictor_status}

    def score(self, chunk: pa.Table, start: int) -> tuple[pa.Table, int]:
        """The output table of a chunk whose first row is ``start`` (0-based), and how
        many of its rows are invalid (only with ``skip_invalid``; else an error)."""
        m, n = self.model, chunk.num_rows
        frame = chunk.select(m.fields).to_pandas()
        for f, t in self.retype.items():  # a CSV's numbers as numbers (in messages too)
            if t != pa.bool_():
                frame[f] = _numbers(frame[f], whole=t == pa.int64())
        bad: dict[int, list[dict[str, Any]]] = {}
        try:
            enc = m.encode_frame(frame)
            keep = np.ones(n, bool)
        except RequestError as exc:
            for e in exc.errors:
                hit = _LOC.match(str(e.get("loc", "")))
                if hit is None:  # not about one row
                    raise
                bad.setdefault(int(hit.group(1)), []).append(e)
            if not self.skip_invalid:
                raise _bad_rows(bad, start, n, self.name) from None
            keep = np.ones(n, bool)
            keep[list(bad)] = False
            enc = m.encode_frame(frame[keep]) if keep.any() else None
        cols = {c: chunk[c] for c in chunk.column_names}
        for f, t in self.retype.items():
            cols[f] = _typed(frame[f], t)
        out = [*cols.values(), *self._answers(enc, keep)]
        if self.skip_invalid:
            err = np.full(n, None, dtype=object)
            for i, errs in bad.items():
                err[i] = "; ".join(_describe(e) for e in errs)
            out.append(pa.array(err, pa.string()))
        return pa.Table.from_arrays(out, schema=self.schema), int((~keep).sum())

    def _answers(self, enc: Any, keep: np.ndarray) -> list[pa.Array]:
        """The answer's columns (null in the rows not kept)."""
        n, out = len(keep), []
        cols = self.answers.columns(self.model.predict_encoded(enc.X)) \
            if enc is not None else None
        for name, t in self.added.items():
            if name == "error":
                continue
            if t == pa.float64():
                full = np.full(n, np.nan)
                if cols is not None:
                    full[keep] = cols[name]
                out.append(pa.array(full, mask=~keep))
            else:
                obj = np.full(n, None, dtype=object)
                if cols is not None:
                    obj[keep] = np.asarray(cols[name], dtype=object)
                out.append(pa.array(obj.tolist(), t))
        return out


def _numbers(col: pd.Series, *, whole: bool) -> pd.Series:
    """A CSV column's text as numbers (whole ones as integers for an int input); a cell
    that is not a number stays text, which the encoder refuses naming it.

    >>> _numbers(pd.Series(["-5", None, "3"]), whole=True).tolist()
    [-5, <NA>, 3]
    >>> _numbers(pd.Series(["1.5", "forty"]), whole=False).tolist()
    [1.5, 'forty']
    """
    num = pd.to_numeric(col, errors="coerce")
    text = col.notna() & num.isna()
    if not text.any():
        if whole and (num.isna() | ((num == num.round()) & (num.abs() < 2**53))).all():
            return num.astype("Int64")
        return num.astype(np.float64)
    out = col.astype(object).where(text, None)
    ok = num.notna()
    out[ok] = [int(v) if whole and float(v).is_integer() else float(v) for v in num[ok]]
    return out


def _typed(col: pd.Series, t: pa.DataType) -> pa.Array:
    """A CSV input column (text) typed for the output; a cell that is not a value of
    the type becomes null."""
    if t == pa.bool_():
        low = col.astype("string").str.strip().str.lower()
        vals = low.map({"true": True, "false": False, "1": True, "0": False})
        return pa.array(vals.astype(object).where(vals.notna(), None).tolist(), t)
    num = pd.to_numeric(col, errors="coerce").to_numpy(np.float64, na_value=np.nan)
    if t == pa.int64():
        ok = np.isfinite(num) & (np.abs(num) < 2**63) & (num == np.round(num))
        return pa.array(np.where(ok, num, 0).astype(np.int64), mask=~ok)
    return pa.array(num, mask=np.isnan(num))


def _bad_rows(bad: dict[int, list[dict[str, Any]]], start: int, n: int,
              name: str) -> RequestError:
    """The chunk's errors, with ``rows[i]`` rewritten to the file's row numbers."""
    errors = []
    for i in sorted(bad):
        row = start + i + 1
        for e in bad[i]:
            rest = _LOC.match(str(e["loc"])).group(2)  # type: ignore[union-attr]
            errors.append({**e, "row": row, "loc": f"row {row}{rest}"})
    lead = errors[0]
    more = (f" (and {len(bad) - 1:,} more bad row{'s' if len(bad) > 2 else ''} in rows "
            f"{start + 1:,}-{start + n:,})") if len(bad) > 1 else ""
    return RequestError(f"{name} row {lead['row']}: {_describe(lead)}{more}",
                        errors=errors[:_MAX_ERRORS])

