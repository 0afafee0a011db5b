"""Batch scoring: a CSV or Parquet file of rows in, a Parquet file with the answers out.

The file's rows go through the server's checks and the model, a chunk at a time, by the
job of the servable's kind (chosen by its class): a
forecast's (:mod:`cd4ml.serving.batch_forecast`: ``prediction``) or a tabular model's
(:mod:`cd4ml.serving.batch_tabular`: ``label`` and ``probability_<class>``, or
``prediction``).

The input is read and the output written in chunks of ``chunk_rows``, so memory stays
bounded however long the file is. The output goes to a temporary file beside it and is
renamed into place at the end; on failure nothing is left behind. Its columns are the
input's plus the answers and, with ``skip_invalid``, ``error``; the model name, version
and digest are in the Parquet file's metadata (``cd4ml.model`` ...).

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

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cd4ml.errors import ConfigError, SourceError

__all__ = ["score_file", "check_paths", "INPUT_TYPES"]

#: input file endings and how they are read
INPUT_TYPES = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet"}
Progress = Callable[[int, "int | None"], None]

_MAX_ERRORS = 100        # errors carried by the exception for a bad chunk
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


def score_file(model: Any, input_path: str | Path, output_path: str | Path, *,
               chunk_rows: int = 100_000, skip_invalid: bool = False,
               progress: Progress | None = None) -> dict[str, Any]:
    """Score every row of ``input_path`` and write them with the answers to ``output_path``.

    Without ``skip_invalid`` the first bad row stops the run with a :class:`RequestError`
    naming its row number, field, value and problem (``errors`` lists the chunk's bad
    rows); with it, bad rows get null answers and the problem in ``error``.
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
    from cd4ml.registry.servable import ServableModel
    from cd4ml.registry.tabular import TabularServable
    from cd4ml.serving.batch_forecast import ForecastJob
    from cd4ml.serving.batch_tabular import TabularJob

    jobs = {ServableModel: ForecastJob, TabularServable: TabularJob}
    for cls in type(model).__mro__:
        if cls in jobs:
            return jobs[cls]
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


def _describe(e: dict[str, Any]) -> str:
    field, value = e.get("field"), e.get("value")
    if not field or "," in str(field):  # about the whole row: the problem names the values
        return str(e["problem"])
    if value is None:
        return f"{field}: {e['problem']}"
    return f"{field} = {value!r}: {e['problem']}"
