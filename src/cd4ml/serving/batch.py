"""Batch scoring: a CSV or Parquet file of rows in, a Parquet file with ``prediction`` out.

This module scores a forecast servable; a tabular one (label and probabilities, or a
prediction) is scored by :mod:`cd4ml.serving.batch_tabular`, through the same reading,
chunking and writing (the job is chosen by the servable's class).

Rows take the server's path: :meth:`ServableModel.rows_for` validates them and finds
their rows of precomputed features in ``model.X``, and ``model.predict_rows`` scores
those rows (from the version's verified forecast table, else with the model). There is no second validation or feature path. Batch files repeat
combinations, so each distinct combination of key values is validated once (valid ones
are remembered across chunks) and each row of ``model.X`` is predicted once.

The input is read and the output written in chunks of ``chunk_rows``, so memory stays
bounded however long the file is. The output goes to a temporary file beside it and is
renamed into place at the end; on failure nothing is left behind. Its columns are the
input's plus ``prediction`` (float64) and, with ``skip_invalid``, ``error``; the model
name, version and digest are in the Parquet file's metadata (``cd4ml.model`` ...).

Row numbers in messages count data rows from 1: the first row after a CSV header is row 1.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cd4ml.errors import ConfigError, HorizonError, RequestError, SourceError
from cd4ml.registry.servable import ServableModel

__all__ = ["score_file", "check_paths", "INPUT_TYPES"]

#: input file endings and how they are read
INPUT_TYPES = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet"}
Progress = Callable[[int, "int | None"], None]

_MAX_KNOWN = 200_000     # valid combinations remembered across chunks
_MAX_ERRORS = 100        # errors carried by the exception for a bad chunk
_NULL = object()         # a blank in numeric text while grouping (pandas merges None, NaN)
_LOC = re.compile(r"^rows\[(\d+)\](.*)$")


def check_paths(input_path: str | Path, output_path: str | Path) -> str:
    """The input's type (``csv`` or ``parquet``); a one-line error for a bad path."""
    src, dst = Path(input_path), Path(output_path)
    name = src.name.lower()
    kind = next((k for suffix, k in INPUT_TYPES.items() if name.endswith(suffix)), None)
    if kind is None:
        raise SourceError(f"{src}: unsupported input type {''.join(src.suffixes) or '(none)'!r};"
                          f" expected one of {', '.join(INPUT_TYPES)}")
    if not src.is_file():
        raise SourceError(f"{src}: input file not found")
    if dst.suffix.lower() != ".parquet":
        raise ConfigError("must end in .parquet (batch scoring writes Parquet)",
                          key="output", value=str(dst))
    if not dst.parent.is_dir():
        raise ConfigError(f"folder {dst.parent} does not exist", key="output", value=str(dst))
    return kind


def score_file(model: ServableModel, input_path: str | Path, output_path: str | Path, *,
               chunk_rows: int = 100_000, skip_invalid: bool = False,
               progress: Progress | None = None) -> dict[str, Any]:
    """Score every row of ``input_path`` and write them with ``prediction`` to ``output_path``.

    Without ``skip_invalid`` the first bad row stops the run with a :class:`RequestError`
    naming its row number, field, value and problem (``errors`` lists the chunk's bad
    rows); with it, bad rows get a null prediction and the problem in ``error``.
    ``progress(rows_done, rows_total_or_None)`` is called after every chunk.
    Returns a summary: rows, skipped, seconds, rows_per_s, model, version, ...
    """
    if chunk_rows < 1:
        raise ConfigError("must be >= 1", key="chunk_rows", value=chunk_rows)
    kind = check_paths(input_path, output_path)
    src, dst = Path(input_path), Path(output_path)
    t0 = time.perf_counter()
    done = skipped = 0
    job_class = _job_class(model)
    with ExitStack() as stack:
        schema, total, batches = _open(
            src, kind, lambda s: job_class.text_columns(s, model, src.name), stack)
        job = job_class(model, schema, csv=kind == "csv", skip_invalid=skip_invalid,
                        name=src.name)
        if progress:
            progress(0, total)
        tmp = dst.parent / f".{dst.name}.{uuid.uuid4().hex[:12]}.tmp"  # same file system
        try:
            with pq.ParquetWriter(tmp, job.schema) as writer:
                for chunk in _chunks(batches, schema, chunk_rows, src.name, lambda: done):
                    table, bad = job.score(chunk, done)
                    writer.write_table(table)
                    done, skipped = done + chunk.num_rows, skipped + bad
                    if progress:
                        progress(done, total)
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    seconds = time.perf_counter() - t0
    return {"input": str(src), "output": str(dst), "rows": done, "predicted": done - skipped,
            "skipped": skipped, "seconds": round(seconds, 3),
            "rows_per_s": round(done / seconds, 1) if seconds > 0 else None,
            "model": model.name, "version": model.version, "chunk_rows": chunk_rows,
            **job.summary()}


def _job_class(model: Any) -> Any:
    """The job that scores a file for this kind of servable (by its class)."""
    from cd4ml.serving.batch_tabular import JOBS

    for cls in type(model).__mro__:
        if cls in JOBS:
            return JOBS[cls]
    raise ConfigError(f"batch scoring cannot score a {type(model).__name__}", key="model",
                      value=getattr(model, "name", None))


# -- reading ---------------------------------------------------------------------------
def _open(src: Path, kind: str, text_columns: Callable[[pa.Schema], set[str]],
          stack: ExitStack) -> tuple[pa.Schema, int | None, Iterator[pa.RecordBatch]]:
    """Schema, number of rows if known, and the record batches of the input (a CSV's
    ``text_columns(schema)`` read as text)."""
    try:
        if kind == "parquet":
            pf = stack.enter_context(pq.ParquetFile(src))
            # one thread decodes: as fast here (scoring is the bottleneck), less memory
            batches = pf.iter_batches(batch_size=65_536, use_threads=False)
            return pf.schema_arrow, pf.metadata.num_rows, batches
        # infer the types once, from a large first block, and hold every later block to
        # them; the model's key columns, and columns empty at the start, are read as text
        with pacsv.open_csv(src, read_options=pacsv.ReadOptions(block_size=8 << 20)) as probe:
            inferred = probe.schema
        keys = text_columns(inferred)
        types = {f.name: pa.string() if f.name in keys or pa.types.is_null(f.type) else f.type
                 for f in inferred}
        reader = stack.enter_context(pacsv.open_csv(src, convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=True)))
        return reader.schema, None, iter(reader)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"{src.name}: not a readable {kind.upper()} file: {exc}") from None


def _chunks(batches: Iterator[pa.RecordBatch], schema: pa.Schema, n: int, name: str,
            done: Callable[[], int]) -> Iterator[pa.Table]:
    """Tables of exactly ``n`` rows (the last may be shorter), whatever the reader yields."""
    buf: list[pa.RecordBatch] = []
    size = 0
    while True:
        try:
            b = next(batches, None)
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"{name}: cannot read past row {done() + size:,}: {exc}"
                              ) from None
        if b is None:
            break
        buf.append(b)
        size += b.num_rows
        while size >= n:
            t = pa.Table.from_batches(buf, schema)
            yield t.slice(0, n)
            buf, size = t.slice(n).to_batches(), size - n
    if size:
        yield pa.Table.from_batches(buf, schema)


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


# -- scoring ---------------------------------------------------------------------------
class _Job:
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


def _describe(e: dict[str, Any]) -> str:
    field, value = e.get("field"), e.get("value")
    if not field or "," in str(field):  # about the whole row: the problem names the values
        return str(e["problem"])
    if value is None:
        return f"{field}: {e['problem']}"
    return f"{field} = {value!r}: {e['problem']}"


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
