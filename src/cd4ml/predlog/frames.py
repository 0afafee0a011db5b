"""One block of the log decoded a column at a time: the one decoder behind
:func:`~cd4ml.predlog.predictions` (a DataFrame) and :func:`~cd4ml.predlog.batches`
(Arrow record batches).

A block holds the records of one flush (blocks.py): their metadata as one JSON list,
their inline inputs as another, their outputs, row numbers and inline features as bytes
one after another. :func:`decode_block` turns them into columns of one value per
prediction row: the records' fields, the request fields (inline, or the keys of the
feature-table rows), the outputs, the features the model saw and, if asked, the bodies.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from cd4ml.predlog.segments import (M_ARM, M_CTYPE, M_ENDPOINT, M_EVENT, M_LATENCY, M_MODEL,
                                    M_NF, M_REQLEN, M_RID, M_TABLE, M_TRUNC, M_TS, M_VERSION,
                                    columns, loads, output_names, output_widths,
                                    record_starts)
from cd4ml.predlog.tables import TableReader

__all__ = ["BlockParts", "decode_block", "block_inputs", "body_info", "frame"]


@dataclass(slots=True)
class BlockParts:
    """A block's prediction rows, a column per field (numpy arrays of equal length).

    ``base``: request_id, row, ts (epoch seconds), model, version, arm, endpoint,
    latency_ms, event_ts (epoch seconds, NaN for a record without); ``inputs``: the
    request fields by name; ``outputs``: ``prediction`` and/or a column per output name
    (NaN in the rows of records without it); ``features``: by
    feature name (NaN in the rows of versions without it); ``request``: the bodies and
    their length, sha256 and content type. ``kept`` marks the rows of the records that
    passed the filter (None: all did); :meth:`kept_rows` applies it.
    """

    base: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    features: dict[str, Any]
    request: dict[str, Any]
    kept: Any

    def kept_rows(self) -> BlockParts:
        """The same parts with only the kept rows."""
        if self.kept is None:
            return self
        k = self.kept

        def cut(d: dict[str, Any]) -> dict[str, Any]:
            return {name: v[k] for name, v in d.items()}

        return BlockParts(cut(self.base), cut(self.inputs), cut(self.outputs),
                          cut(self.features), cut(self.request), None)


class _Layout(NamedTuple):
    """Where each record of a block sits: its rows (``n``), whether it holds feature-table
    rows (``is_ref``), its first prediction row (``starts``) and first table row
    (``rstart``), the record of each prediction row (``rec``), its table key (``tab``),
    the records per table, and the block's table rows."""

    n: Any
    is_ref: Any
    starts: Any
    rstart: Any
    total: int
    rec: Any
    tab: list[str | None]
    by_table: dict[str, list[int]]
    table_rows: Any

    def positions(self, ks: list[int]) -> tuple[Any, Any]:
        """Block rows of records ``ks`` and their table rows."""
        pos = np.concatenate([np.arange(self.starts[k], self.starts[k] + self.n[k])
                              for k in ks])
        rows = np.concatenate([self.table_rows[self.rstart[k]:self.rstart[k] + self.n[k]]
                               for k in ks])
        return pos, rows


def _layout(meta: list[Any], rows_raw: bytes) -> _Layout:
    n, is_ref, starts, rstart = record_starts(meta)
    tab = [m[M_TABLE] for m in meta]
    by_table: dict[str, list[int]] = {}
    for k, t in enumerate(tab):
        if t is not None:
            by_table.setdefault(t, []).append(k)
    return _Layout(n, is_ref, starts, rstart, int(n.sum()),
                   np.repeat(np.arange(len(meta)), n), tab, by_table,
                   np.frombuffer(rows_raw, dtype="<i4"))


def decode_block(con: sqlite3.Connection, r: sqlite3.Row, keep: Any, tables: TableReader, *,
                 inputs: bool = True, features: bool = True,
                 request: bool = False) -> BlockParts | None:
    """The prediction rows of a ``blocks`` row ``r`` (read with ``meta, rows, outputs``,
    and ``inputs``, ``features``, ``requests`` for the parts asked for), None if no
    record passes ``keep``; all its rows are decoded, ``kept`` marks those that pass."""
    meta = loads(r["meta"])
    kept = np.fromiter((keep(m) for m in meta), dtype=bool, count=len(meta))
    if not kept.any():
        return None
    lay = _layout(meta, r["rows"])
    rec = lay.rec

    def per_row(j: int) -> Any:
        return np.array([m[j] for m in meta], dtype=object)[rec]

    base: dict[str, Any] = {
        "request_id": per_row(M_RID), "row": np.arange(lay.total) - lay.starts[rec],
        "ts": np.fromiter((m[M_TS] for m in meta), dtype=np.float64, count=len(meta))[rec],
        "model": per_row(M_MODEL), "version": per_row(M_VERSION), "arm": per_row(M_ARM),
        "endpoint": per_row(M_ENDPOINT),
        "latency_ms": np.fromiter((m[M_LATENCY] for m in meta), dtype=np.float64,
                                  count=len(meta))[rec],
        "event_ts": np.fromiter((m[M_EVENT] if len(m) > M_EVENT else np.nan for m in meta),
                                dtype=np.float64, count=len(meta))[rec]}
    return BlockParts(
        base, _inputs(con, r, lay, tables) if inputs else {},
        _outputs(meta, np.frombuffer(r["outputs"], dtype="<f8"), lay.n, lay.starts,
                 lay.total),
        _features(con, r["features"], meta, lay, tables) if features else {},
        _requests(r["requests"], meta, rec) if request else {},
        None if kept.all() else kept[rec])


def block_inputs(con: sqlite3.Connection, r: sqlite3.Row, meta: list[Any],
                 tables: TableReader) -> tuple[dict[str, Any], Any]:
    """The request fields of all a block's rows (``r`` read with ``rows, inputs``; its
    ``meta`` decoded), and the record of each row."""
    lay = _layout(meta, r["rows"])
    return _inputs(con, r, lay, tables), lay.rec


def _inputs(con: sqlite3.Connection, r: sqlite3.Row, lay: _Layout,
            tables: TableReader) -> dict[str, Any]:
    """The request fields of a block's rows: the records' own (inline), or the keys of
    their feature-table rows; None where a record lacks a field."""
    out: dict[str, Any] = {}
    if not lay.is_ref.all():
        out = _inline_inputs(loads(r["inputs"]), lay.n, lay.starts, lay.total)
    if len(lay.by_table) == 1 and lay.is_ref.all():
        ((t, _),) = lay.by_table.items()
        return tables.inputs(con, t, lay.table_rows)
    for t, ks in lay.by_table.items():
        pos, rows = lay.positions(ks)
        for f, v in tables.inputs(con, t, rows).items():
            col = out.setdefault(f, np.full(lay.total, None, dtype=object))
            if col.dtype != object:
                col = out[f] = col.astype(object)
            col[pos] = v
    return out


def _inline_inputs(recs: list[Any], n: Any, starts: Any, total: int) -> dict[str, Any]:
    """The request fields of a block's inline records, a column per field (None where a
    record lacks it): rows (objects, lower-case names), or columns as logged."""
    if not any(isinstance(x, dict) for x in recs):  # rows only: one pass over them all
        flat: list[Any] = []
        for k, rows in enumerate(recs):
            want = int(n[k])
            rows = rows or []
            flat += rows[:want] + [{}] * (want - len(rows))
        return {f: np.array(v, dtype=object) for f, v in columns(flat).items()}
    out: dict[str, Any] = {}
    for k, x in enumerate(recs):
        if x is None:
            continue
        for f, v in columns(x).items():
            col = out.setdefault(f, np.full(total, None, dtype=object))
            v = v[:int(n[k])]
            col[starts[k]:starts[k] + len(v)] = v
    return out


def _outputs(meta: list[Any], outs: Any, n: Any, starts: Any, total: int) -> dict[str, Any]:
    """A block's outputs as columns: ``prediction`` (records with one output per row),
    and a column per output name for records with several (NaN in the other records'
    rows)."""
    width = output_widths(meta)
    if (width == 1).all():
        return {"prediction": outs}
    cols = {"prediction": np.full(total, np.nan)} if (width == 1).any() else {}
    ostart = np.cumsum(n * width) - n * width
    for k, m in enumerate(meta):
        a, rows = int(starts[k]), int(n[k])
        part = outs[ostart[k]:ostart[k] + rows * width[k]]
        names = output_names(m)
        if names is None:
            cols["prediction"][a:a + rows] = part
            continue
        mat = part.reshape(rows, len(names))
        for j, name in enumerate(names):
            cols.setdefault(name, np.full(total, np.nan))[a:a + rows] = mat[:, j]
    return cols


def _features(con: sqlite3.Connection, raw: bytes, meta: list[Any], lay: _Layout,
              tables: TableReader) -> dict[str, Any]:
    """The features the model saw, by name: inline vectors, or the segment's vectors of
    the records' table rows; NaN in the rows of versions without a feature."""
    feats = np.frombuffer(raw, dtype="<f4")
    n, starts, total = lay.n, lay.starts, lay.total
    nf = np.fromiter((m[M_NF] for m in meta), dtype=np.int64, count=len(meta))
    inline = n * nf * ~lay.is_ref
    fstart = np.cumsum(inline) - inline
    groups: dict[tuple[str, Any, int], list[int]] = {}
    for k, m in enumerate(meta):
        if lay.tab[k] is None:
            groups.setdefault((m[M_MODEL], m[M_VERSION], int(nf[k])), []).append(k)
    cols: dict[str, Any] = {}
    if len(groups) == 1 and not lay.by_table:
        (model, version, width), = groups
        mat = feats.reshape(-1, width) if width else np.empty((total, 0), "<f4")
        for j, name in enumerate(tables.names(con, model, version, width)):
            cols[name] = mat[:, j]
        return cols
    if len(lay.by_table) == 1 and not groups:
        ((t, _),) = lay.by_table.items()
        names, mat = tables.features(con, t, lay.table_rows)
        return {name: mat[:, j] for j, name in enumerate(names)}

    # a swap inside the block: each version's own features, NaN elsewhere
    def column(name: str) -> Any:
        return cols.setdefault(name, np.full(total, np.nan, dtype="<f4"))

    for (model, version, width), ks in groups.items():
        for j, name in enumerate(tables.names(con, model, version, width)):
            col = column(name)
            for k in ks:
                mat = feats[fstart[k]:fstart[k] + n[k] * width].reshape(-1, width)
                col[starts[k]:starts[k] + n[k]] = mat[:, j]
    for t, ks in lay.by_table.items():
        pos, rows = lay.positions(ks)
        names, mat = tables.features(con, t, rows)
        for j, name in enumerate(names):
            column(name)[pos] = mat[:, j]
    return cols


def body_info(m: list[Any]) -> dict[str, Any]:
    """A record's body as received: its length, and the sha256 of a body stored
    truncated (None when the stored body is whole)."""
    cut = m[M_TRUNC] if len(m) > M_TRUNC else None
    return {"request_length": cut[0] if cut else m[M_REQLEN],
            "request_sha256": cut[1] if cut else None}


def _requests(body: bytes | None, meta: list[Any], rec: Any) -> dict[str, Any]:
    """The bodies as stored, their length and sha256 as received, their content type."""
    lens = [m[M_REQLEN] for m in meta]
    offs = np.cumsum(lens) - lens
    reqs = np.array([None if body is None else bytes(body[o:o + ln])
                     for o, ln in zip(offs, lens, strict=True)], dtype=object)
    info = [body_info(m) for m in meta]
    return {"request": reqs[rec],
            "request_length": np.array([x["request_length"] for x in info])[rec],
            "request_sha256": np.array([x["request_sha256"] for x in info], dtype=object)[rec],
            "content_type": np.array([m[M_CTYPE] for m in meta], dtype=object)[rec]}


def frame(parts: BlockParts) -> Any:
    """The kept rows as :func:`~cd4ml.predlog.predictions` gives them: the records'
    fields, the request fields under their names (unless a record field has that name),
    the outputs, ``feature.<name>`` columns, the bodies."""
    import pandas as pd

    cols = dict(parts.base)
    for f, vals in parts.inputs.items():
        if f not in cols:
            cols[f] = vals
    cols.update(parts.outputs)
    cols.update({f"feature.{name}": v for name, v in parts.features.items()})
    cols.update(parts.request)
    df = pd.DataFrame(cols)
    return df if parts.kept is None else df[parts.kept]
