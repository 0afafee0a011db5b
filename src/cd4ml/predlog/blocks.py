"""A flush of the prediction log as one ``blocks`` row: the record the server queues
(:class:`LogRecord`), a flush's records a field at a time (:class:`Columns`) and their
encoding (:func:`encode_block`)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from cd4ml.predlog.segments import M_EVENT, M_TRUNC, MADE_ID_SLACK, dumps, made_id_times
from cd4ml.predlog.tables import FeatureTable

__all__ = ["LogRecord", "Pending", "Columns", "Block", "encode_block", "BLOCK_ROWS",
           "RECORD_OVERHEAD"]


class LogRecord(NamedTuple):
    """One answered request, as the server hands it to the log (a tuple: cheap to make).

    Either ``table`` and ``rows`` (the model saw ``table.X[rows]``; the validated inputs
    are those rows' keys) or ``records`` and ``features`` (anything else: stored inline;
    ``records`` is a list of row objects, or an object of columns of ``n_rows`` values).
    ``outputs`` is one value per row, or with ``output_names`` a matrix of one column
    per name (a classifier's label and probabilities). ``event_ts``: the time the
    request is about (epoch seconds; the server takes it from ``X-Event-Time``), None
    for a request that gave none.
    """

    request_id: str
    ts: float
    model: str
    version: int | None
    endpoint: str
    latency_ms: float
    records: Sequence[Any]
    features: Any  # float32 array, n_rows x n_features (None with a table)
    feature_names: Sequence[str]
    outputs: Any  # float64 array, n_rows (n_rows x len(output_names) with output_names)
    content_type: str = ""
    request: bytes = b""
    arm: str = "main"
    table: FeatureTable | None = None
    rows: Any = None  # int array, n_rows: rows of table.X
    output_names: Sequence[str] = ()  # several outputs per row: their names
    event_ts: float | None = None  # the request's event time, epoch seconds


#: a block holds at most this many prediction rows (a flush of big batches makes several)
BLOCK_ROWS = 65_536

#: bytes a record takes in a block besides its body and per-row arrays (its ``meta``
#: entry, its request id excepted), for the estimate that splits a flush by bytes
RECORD_OVERHEAD = 256


class Pending:
    """Records queued since the last flush, held a field at a time: ``seqs`` their
    sequence numbers, ``fields`` one list per :class:`LogRecord` field.

    Queueing a record appends its fields to those lists, so the queue holds no object per
    record: the record itself is freed when ``append`` returns, and what stays (strings,
    numbers, bytes, arrays) is nothing the garbage collector scans. A queue of records
    would hold one tracked object per record (a NamedTuple is never untracked), and with
    thousands queued at a time the collector's full passes over the server's ~200,000
    objects came every few seconds, ~100 ms each.
    """

    __slots__ = ("seqs", "fields")

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.fields: tuple[list[Any], ...] = tuple([] for _ in LogRecord._fields)

    def add(self, seq: int, rec: LogRecord) -> None:
        self.seqs.append(seq)
        for column, value in zip(self.fields, rec):  # LogRecord's 17 fields, no more
            column.append(value)

    def __len__(self) -> int:
        return len(self.seqs)

    def record(self, k: int) -> LogRecord:
        """The ``k``-th queued record."""
        return LogRecord(*(column[k] for column in self.fields))

    def columns(self, keep: Sequence[int] | None = None) -> Columns:
        """The queued records (those at positions ``keep``, if given) a field at a time."""
        if keep is None:
            return Columns._of(tuple(self.seqs), LogRecord(*map(tuple, self.fields)))
        return Columns._of(tuple(self.seqs[k] for k in keep),
                           LogRecord(*(tuple(column[k] for k in keep) for column in self.fields)))


class Columns(NamedTuple):
    """Consecutive queued records a field at a time: ``recs`` is a :class:`LogRecord`
    whose fields are tuples (``zip`` transposes in C), so encoding a flush takes no
    Python step per record; ``n_rows`` is each record's number of predictions, and
    ``table_rows`` per feature table its records' ``rows`` one after another (None under
    the key None: the records stored inline), which the block and the segment's fresh
    rows both need."""

    seqs: tuple[int, ...]
    recs: LogRecord
    n_rows: list[int]
    table_rows: dict[FeatureTable | None, Any]

    @classmethod
    def of(cls, records: Sequence[LogRecord], first_seq: int = 1) -> Columns:
        """Records (numbered from ``first_seq``) a field at a time."""
        return cls._of(tuple(range(first_seq, first_seq + len(records))),
                       LogRecord(*zip(*records, strict=True)))

    @classmethod
    def _of(cls, seqs: tuple[int, ...], recs: LogRecord) -> Columns:
        tables = set(recs.table)
        if len(tables) == 1:
            groups = {tables.pop(): list(recs.rows)}
        else:
            groups = {t: [] for t in tables}
            for t, rows in zip(recs.table, recs.rows, strict=True):
                groups[t].append(rows)
        return cls(seqs, recs, list(map(len, recs.outputs)),
                   {t: None if t is None else np.concatenate(rows)
                    for t, rows in groups.items()})

    def slice(self, a: int, b: int) -> Columns:
        return Columns._of(self.seqs[a:b], LogRecord(*(c[a:b] for c in self.recs)))

    def estimate(self, store_request: bool, max_body: int) -> np.ndarray:
        """Per record, about the bytes it takes in a block: its body as stored, 12 bytes
        a row (output and row number), inline features, its meta entry."""
        r, n = self.recs, np.asarray(self.n_rows, dtype=np.int64)
        est = n * 12 + RECORD_OVERHEAD + np.fromiter(map(len, r.request_id), np.int64, len(n))
        if store_request:
            est += np.minimum(np.fromiter(map(len, r.request), np.int64, len(n)), max_body)
        if None in self.table_rows:
            inline = np.fromiter((t is None for t in r.table), bool, len(n))
            est += 4 * n * np.fromiter(map(len, r.feature_names), np.int64, len(n)) * inline
        if any(r.output_names):
            width = np.fromiter(map(len, r.output_names), np.int64, len(n))
            est += 8 * n * np.maximum(width - 1, 0) + 16 * width
        return est

    def blocks(self, max_bytes: int | None = None, *, store_request: bool = True,
               max_body: int = 0) -> list[Columns]:
        """Consecutive slices with at most ``BLOCK_ROWS`` prediction rows and about
        ``max_bytes`` bytes each (:meth:`estimate`; a record alone may be more)."""
        n_rows = sum(self.n_rows)
        small = max_bytes is None or (
            sum(map(len, self.recs.request)) + 12 * n_rows + (RECORD_OVERHEAD + 128) *
            len(self.seqs) <= max_bytes and None not in self.table_rows)
        if n_rows <= BLOCK_ROWS and small:
            return [self]
        rows = np.cumsum(self.n_rows)
        size = None if max_bytes is None else np.cumsum(self.estimate(store_request, max_body))
        parts, start, n = [], 0, len(self.seqs)
        while start < n:
            end = int(np.searchsorted(rows, (rows[start - 1] if start else 0) + BLOCK_ROWS,
                                      "right"))
            if size is not None:
                end = min(end, int(np.searchsorted(
                    size, (size[start - 1] if start else 0) + max_bytes, "right")))
            end = max(end, start + 1)
            parts.append(self if (start, end) == (0, n) else self.slice(start, end))
            start = end
        return parts

    def unindexed(self) -> np.ndarray:
        """Per record, True for a server-made id logged soon after its time: found by
        time instead of by the ``request_ids`` index."""
        age = np.asarray(self.recs.ts, dtype=float) - made_id_times(self.recs.request_id)
        return (age >= 0) & (age <= MADE_ID_SLACK)  # NaN (not a made id): False


class Block(NamedTuple):
    """A ``blocks`` row ready to insert, its size in bytes, and how many of its bodies
    were stored truncated."""

    row: tuple[Any, ...]
    size: int
    truncated: int


def _bodies(r: LogRecord, max_body: int | None) -> tuple[Any, list[int], dict[int, list[Any]]]:
    """The bodies as stored, their stored lengths, and per truncated body (over
    ``max_body`` bytes) its full length and sha256; Python work per record only in a
    flush that holds such a body."""
    bodies, lens = r.request, list(map(len, r.request))
    if max_body is None or not lens or max(lens) <= max_body:
        return bodies, lens, {}
    bodies, cut = list(bodies), {}
    for k in np.flatnonzero(np.asarray(lens) > max_body).tolist():
        cut[k] = [lens[k], hashlib.sha256(bodies[k]).hexdigest()]
        bodies[k], lens[k] = bytes(bodies[k][:max_body]), max_body
    return bodies, lens, cut


def encode_block(session: str, c: Columns, store_request: bool,
                 max_body: int | None = None) -> Block:
    """One ``blocks`` row for consecutive records, encoded a column at a time.

    A body over ``max_body`` bytes is stored truncated to it, its meta entry holding its
    full length and sha256 (``M_TRUNC``).

    ``meta`` is a JSON list with one list per record, ``[seq, request_id, ts, model,
    version, arm, endpoint, latency_ms, n_rows, content_type, n_features, request_len,
    table]`` (the ``M_*`` order of segments.py; then ``M_TRUNC``, ``M_OUT`` and
    ``M_EVENT`` where there are, null before the last one a record has); ``inputs`` a
    JSON list of each record's request rows or columns (null for a record of a
    :class:`FeatureTable`: its rows' keys); ``requests``, ``features``
    (float32, the records without a table), ``rows`` (int32, the records with one) and
    ``outputs`` (float64, row-major for a record with several per row) the records'
    bytes one after another.

    The request path only queues the record (a tuple); here each column is one ``zip``,
    ``map``, ``orjson`` call or array concatenation, with no Python step per record
    (measured per single-row record: 0.81 µs with one such step per record and field,
    0.49 µs now), where encoding each record on the request path cost the event loop
    7 µs of a 125 µs request.
    """
    r, n = c.recs, len(c.seqs)
    keys = {t: None if t is None else t.key for t in set(r.table)}
    tables = list(map(keys.__getitem__, r.table))
    bodies, lens, cut = _bodies(r, max_body) if store_request else ((), [0] * n, {})
    meta = list(zip(c.seqs, r.request_id, r.ts, r.model, r.version, r.arm, r.endpoint,
                    r.latency_ms, c.n_rows, r.content_type, map(len, r.feature_names),
                    lens, tables, strict=True))
    for k, whole in cut.items():
        meta[k] = (*meta[k], whole)
    n_out = sum(c.n_rows)
    if any(r.output_names):  # several outputs per row: their names (M_OUT)
        for k, names in enumerate(r.output_names):
            if names:
                meta[k] = (*meta[k][:M_TRUNC], cut.get(k), list(names))
                n_out += c.n_rows[k] * (len(names) - 1)
    if r.event_ts.count(None) != n:  # event times (M_EVENT): a step per record only here
        for k, ev in enumerate(r.event_ts):
            if ev is not None:
                m = meta[k]
                meta[k] = (*m, *(None,) * (M_EVENT - len(m)), float(ev))
    inline = None in c.table_rows
    if not inline:
        inputs, features = [None] * n, b""
    else:
        inputs = [x if t is None else None for t, x in zip(r.table, r.records, strict=True)]
        features = b"".join([np.asarray(f, dtype="<f4").tobytes()
                             for t, f in zip(r.table, r.features, strict=True) if t is None])
    if not inline and len(c.table_rows) == 1:  # one table: its rows are the block's
        rows = next(iter(c.table_rows.values())).astype("<i4")
    else:
        by_ref = [x for t, x in zip(r.table, r.rows, strict=True) if t is not None]
        rows = np.concatenate(by_ref).astype("<i4") if by_ref else np.empty(0, "<i4")
    n_ref = sum(k for k, t in zip(c.n_rows, tables, strict=True) if t is not None) \
        if inline else sum(c.n_rows)
    if len(rows) != n_ref:
        raise ValueError(f"rows: {len(rows)} table rows for {n_ref} outputs")
    outputs = np.concatenate(r.outputs, axis=None, dtype="<f8", casting="unsafe")
    if len(outputs) != n_out:
        raise ValueError(f"outputs: {len(outputs)} values for {sum(c.n_rows)} rows "
                         f"({n_out} expected)")
    row = (session, c.seqs[0], n, min(r.ts), max(r.ts), sum(c.n_rows), dumps(meta),
           dumps(inputs), b"".join(bodies) if store_request else None, features,
           rows.tobytes(), outputs.tobytes())
    size = sum(len(x) for x in row[6:] if x is not None) + len(session) + 48
    return Block(row, size, len(cut))
