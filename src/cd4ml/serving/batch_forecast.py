"""Batch scoring of a forecast servable: each chunk's rows take the server's path.

:meth:`ServableModel.rows_for` validates the rows and finds their rows of precomputed
features in ``model.X``, and ``model.predict_rows`` scores those rows (from the
version's verified forecast table, else with the model). There is no second validation
or feature path. Batch files repeat combinations, so each distinct combination of key
values is validated once (valid ones are remembered across chunks) and each row of
``model.X`` is predicted once. The output's columns are the input's plus ``prediction``
(float64) and, with ``skip_invalid``, ``error``. Model fields are matched to columns in
any case; a CSV's key columns are read as text (a bad value is reported with its row)
and written typed as the signature says.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cd4ml.errors import HorizonError, RequestError, SourceError
from cd4ml.registry.servable import ServableModel
from cd4ml.serving.batch import _LOC, _MAX_ERRORS, _describe

__all__ = ["ForecastJob"]

_MAX_KNOWN = 200_000     # valid combinations remembered across chunks
_NULL = object()         # a blank in numeric text while grouping (pandas merges None, NaN)


def _column_map(schema: pa.Schema, model: ServableModel, name: str) -> dict[str, str]:
    """Model field -> input column, matched case-insensitively."""
    dup = sorted({c for c in schema.names if schema.names.count(c) > 1})
    if dup:
        raise SourceError(f"{name}: repeated column names {dup}; each column needs its own")
    by_lower: dict[str, list[str]] = {}
    for c in schema.names:
        by_lower.setdefault(c.lower(), []).append(c)
    out = {}
    for f in model.fields:
        found = by_lower.get(f, [])
        if not found:
            raise SourceError(f"{name}: no column {f!r} (needed by the model, any case); "
                              f"columns found: {schema.names}")
        if len(found) > 1:
            raise SourceError(f"{name}: columns {found} all match the model's field {f!r}; "
                              f"keep one")
        out[f] = found[0]
    return out


def _field_kinds(model: ServableModel) -> dict[str, str]:
    """Field -> ``date``, ``integer``, ``number`` or ``string``."""
    sig = {i["name"]: i["type"] for i in (model.manifest.get("signature") or {}).get("inputs", [])}
    kinds = {}
    for f, col in model.fields.items():
        if col == model.spec.time:
            kinds[f] = "date"
        elif model.numeric.get(f):
            kinds[f] = "integer" if sig.get(f) == "integer" else "number"
        else:
            kinds[f] = "string"
    return kinds


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _key_values(col: pa.ChunkedArray,
                kind: str) -> tuple[np.ndarray, list[Any], np.ndarray | None]:
    """A key column as codes into its distinct values, which are what a JSON request would
    carry (numbers, text, None); and, for a numeric key given as text, the numbers read
    from it (NaN where none). Large columns never become Python objects."""
    if kind in ("integer", "number") and _is_text(col.type):
        vals, num = _numbers_from_text(col)
        codes, uniq = pd.factorize(vals, use_na_sentinel=False)
        return codes, [_py(v) for v in uniq], num
    arr = col.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if kind == "date" and pa.types.is_timestamp(arr.type):
        text = pc.strftime(arr, "%Y-%m-%dT%H:%M:%S")
        arr = pc.replace_substring_regex(text, r"T00:00:00(\.0*)?$", "")  # midnight: a date
    elif kind == "date" and pa.types.is_date(arr.type):
        arr = arr.cast(pa.string())
    enc = pc.dictionary_encode(arr, null_encoding="encode")
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, enc.dictionary.to_pylist(), None


def _numbers_from_text(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Text that reads as a number becomes one ("1" is 1, as in JSON); other text stays
    text, so ``rows_for`` reports it ("expected a number"); blanks are missing."""
    try:  # the common case, all numbers: arrow's cast, fast
        num = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        num = pd.to_numeric(pd.Series(col.to_numpy(), dtype=object), errors="coerce"
                            ).to_numpy(np.float64)
    ok = ~np.isnan(num)
    whole = ok & (np.abs(num) < 2**53) & (num == np.round(num))
    if whole.all():
        return num.astype(np.int64), num
    if ok.all():
        return num, num
    vals = col.to_numpy()
    vals[ok] = num[ok]
    vals[whole] = num[whole].astype(np.int64)
    trimmed = pc.utf8_trim_whitespace(col.fill_null(""))
    vals[pc.equal(trimmed, "").to_numpy(zero_copy_only=False)] = _NULL
    return vals, num


def _typed(num: np.ndarray | None, t: pa.DataType) -> pa.Array:
    """A CSV key column typed for the output; values that are not numbers become null."""
    assert num is not None
    if t == pa.int64():
        ok = np.isfinite(num) & (np.abs(num) < 2**63) & (num == np.round(num))
        return pa.array(np.where(ok, num, 0).astype(np.int64), mask=~ok)
    return pa.array(num, mask=np.isnan(num))


class ForecastJob:
    """One input's chunks -> output tables, through ``rows_for`` and ``predictor.predict``:
    each distinct combination of key values is validated once (valid ones remembered
    across chunks) and each row of ``model.X`` predicted once."""

    @staticmethod
    def text_columns(schema: pa.Schema, model: ServableModel, name: str) -> set[str]:
        """A CSV's columns read as text: the model's key columns."""
        return set(_column_map(schema, model, name).values())

    def summary(self) -> dict[str, Any]:
        return {"forecast_table": self.model.table_status}

    def __init__(self, model: ServableModel, schema: pa.Schema, *, csv: bool,
                 skip_invalid: bool, name: str) -> None:
        self.model, self.skip_invalid, self.name = model, skip_invalid, name
        self.columns = _column_map(schema, model, name)  # field -> input column
        self.kinds = _field_kinds(model)
        # a CSV's key columns are read as text (so a bad value is reported with its row);
        # numeric ones are written typed as the model's signature says
        self.retype = {self.columns[f]: pa.int64() if k == "integer" else pa.float64()
                       for f, k in self.kinds.items() if csv and k in ("integer", "number")}
        self.schema = _output_schema(schema, self.retype, model, skip_invalid, name)
        self.known: dict[tuple[Any, ...], int] = {}  # valid combination -> row of model.X
        self.pred = np.zeros(len(model.X))            # prediction of each row of model.X,
        self.have = np.zeros(len(model.X), bool)      # computed once, when first needed

    def score(self, chunk: pa.Table, start: int) -> tuple[pa.Table, int]:
        """The output table of a chunk whose first row is ``start`` (0-based), and how
        many of its rows are invalid (only with ``skip_invalid``; else an error)."""
        cols = {c: chunk[c] for c in chunk.column_names}
        codes, values = [], []
        for f, c in self.columns.items():
            try:
                code, vals, num = _key_values(chunk[c], self.kinds[f])
            except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
                raise SourceError(f"{self.name}: column {c!r} of type {chunk[c].type} cannot "
                                  f"hold the model's field {f!r}") from None
            if c in self.retype:
                cols[c] = _typed(num, self.retype[c])
            codes.append(code)
            values.append(vals)
        ids, first = _combinations(codes)
        recs = [{f: v[k[i]] for f, k, v in zip(self.columns, codes, values, strict=True)}
                for i in first]
        rows, bad = self._rows(recs)
        if bad and not self.skip_invalid:
            raise _bad_rows(bad, first, ids, start, self.name)
        ok = rows >= 0
        pred = self._predict(rows)
        out = [*cols.values(), pa.array(pred[ids], mask=~ok[ids])]
        if self.skip_invalid:
            err = np.full(len(recs), None, dtype=object)
            for u, errs in bad.items():
                err[u] = "; ".join(_describe(e) for e in errs)
            out.append(pa.array(err[ids], pa.string()))
        return pa.Table.from_arrays(out, schema=self.schema), int((~ok[ids]).sum())

    def _rows(self, recs: list[dict[str, Any]]) -> tuple[np.ndarray, dict[int, list[Any]]]:
        """Each record's row of ``model.X`` (-1 if invalid) and the errors of the invalid."""
        rows = np.full(len(recs), -1, np.int64)
        todo = []
        for u, rec in enumerate(recs):
            r = self.known.get(tuple(rec.values()))
            if r is None:
                todo.append(u)
            else:
                rows[u] = r
        bad: dict[int, list[dict[str, Any]]] = {}
        if not todo:
            return rows, bad
        try:
            got = self.model.rows_for([recs[u] for u in todo])
        except RequestError as exc:
            for e in exc.errors:
                m = _LOC.match(str(e.get("loc", "")))
                if m is None:  # not about one row: nothing to map back
                    raise
                bad.setdefault(todo[int(m.group(1))], []).append(e)
            todo = [u for u in todo if u not in bad]
            got = self.model.rows_for([recs[u] for u in todo]) if todo else np.empty(0, int)
        rows[todo] = got
        for u, r in zip(todo, got.tolist(), strict=True):
            if len(self.known) < _MAX_KNOWN:
                self.known[tuple(recs[u].values())] = r
        return rows, bad

    def _predict(self, rows: np.ndarray) -> np.ndarray:
        """Predictions for rows of ``model.X`` (NaN for -1), each row predicted once."""
        ok = rows >= 0
        new = np.unique(rows[ok])
        new = new[~self.have[new]]
        if len(new):
            self.pred[new] = self.model.predict_rows(new)
            self.have[new] = True
        return np.where(ok, self.pred[np.maximum(rows, 0)], np.nan)


def _combinations(codes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's combination of codes, numbered in order of first appearance, and each
    combination's first row."""
    ids = np.zeros(len(codes[0]), np.int64)
    for c in codes:
        ids, _ = pd.factorize(ids * (int(c.max()) + 1) + c)
    _, first = np.unique(ids, return_index=True)
    return ids, first


def _py(v: Any) -> Any:
    if v is _NULL:
        return None
    return v.item() if isinstance(v, np.generic) else v


def _bad_rows(bad: dict[int, list[dict[str, Any]]], first: np.ndarray, ids: np.ndarray,
              start: int, name: str) -> RequestError:
    """The chunk's errors, with ``rows[i]`` rewritten to the file's row numbers."""
    errors = []
    for u in sorted(bad, key=lambda u: first[u]):
        row = start + int(first[u]) + 1
        for e in bad[u]:
            rest = _LOC.match(str(e["loc"])).group(2)  # type: ignore[union-attr]
            errors.append({**e, "row": row, "loc": f"row {row}{rest}"})
    n_bad = int(np.isin(ids, list(bad)).sum())
    lead = errors[0]
    more = (f" (and {n_bad - 1:,} more bad row{'s' if n_bad > 2 else ''} in rows "
            f"{start + 1:,}-{start + len(ids):,})") if n_bad > 1 else ""
    horizon = all(e.get("kind") == "horizon" for e in errors)
    cls = HorizonError if horizon else RequestError  # as rows_for would raise
    return cls(f"{name} row {lead['row']}: {_describe(lead)}{more}",
               errors=errors[:_MAX_ERRORS])


def _output_schema(schema: pa.Schema, retype: dict[str, pa.DataType], model: ServableModel,
                   skip_invalid: bool, name: str) -> pa.Schema:
    added = ["prediction", *(["error"] if skip_invalid else [])]
    for c in schema.names:
        if c.lower() in added:
            raise SourceError(f"{name}: already has a column {c!r}, which the output adds; "
                              f"rename or drop it")
    fields = [pa.field(f.name, retype[f.name]) if f.name in retype else f for f in schema]
    fields.append(pa.field("prediction", pa.float64()))
    if skip_invalid:
        fields.append(pa.field("error", pa.string()))
    meta = {"cd4ml.model": model.name, "cd4ml.model_version": str(model.version),
            "cd4ml.model_digest": model.digest}
    return pa.schema(fields, metadata=meta)
