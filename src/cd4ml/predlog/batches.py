"""A window of the log as Arrow record batches, feedback joined: what monitoring reads.

:func:`batches` gives the predictions of a time window (``since <= ts < until``, epoch
seconds), of an event-time window (``event_since <= event_ts < event_until``: only
records that have an event time) and/or of a model name and version as a
:class:`pyarrow.RecordBatchReader`:
one batch per block of the log that holds any (a block is one flush of a writer, at
most ``BLOCK_ROWS`` predictions), in log order (segment by segment, oldest block first
in each: not sorted by time across segments), every batch with the reader's schema:

=====================  =========================  =====================================
column                 type                       what
=====================  =========================  =====================================
request_id             string                     as logged
row                    int64                      the row of its request
ts                     timestamp[ns, UTC]         when it was answered
model, version         string, int64
arm, endpoint          string
latency_ms             float64
event_ts               timestamp[ns, UTC], null   the time the request is about (its
                                                  ``X-Event-Time``); null if it gave none
input.<name>           by its values (below)      the request fields (``with_inputs``)
feature.<name>         float32                    the vector the model saw (NaN for a
                                                  version without the feature)
output.<name>          float64                    ``output.prediction``, or a column per
                                                  output (a classifier's label and
                                                  probabilities); NaN where a record has
                                                  none of that name
actual, reward         float64, null if none      the latest feedback (``feedback``)
feedback_ts            timestamp[ns, UTC], null   when the feedback joined arrived (the
                                                  later of actual's and reward's)
=====================  =========================  =====================================

The values are those :func:`~cd4ml.predlog.predictions` gives for the same window
(the same decoder, frames.py, and the same join, feedback.py), under prefixed names.

An input column's type is the one that holds every value the window has for it:
``int64``, ``float64`` (integers and reals), ``bool``, else ``string`` (text as it is,
other values as ``str`` gives them); a field with no value in the window has no column.
The schema is fixed before the first batch by a first pass over the window's blocks
(their metadata, and their inputs where the inputs are read or keyed feedback is
joined); the second pass decodes the blocks the first one saw, and no other, so that a
log being written meanwhile changes neither the schema nor the rows.

Feedback is read once per call, only the rows that can match the window's predictions:
by the request ids the first pass found, and, for feedback by series keys and date, by
the values the window holds of the fields it names (feedback.py). A window with no
prediction gives no batch; the reader's ``schema`` then has the fixed columns only
(``read_all()`` is an empty table).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cd4ml.predlog.feedback import (FeedbackJoin, FeedbackRead, keyed_fields, read_feedback,
                                    str_values)
from cd4ml.predlog.frames import block_inputs, decode_block
from cd4ml.predlog.scan import (BLOCKS, block_key, in_window, keep_test, segment_rows,
                                window_args)
from cd4ml.predlog.segments import (M_MODEL, M_NF, M_RID, M_TABLE, M_VERSION, dumps, loads,
                                    output_names)
from cd4ml.predlog.tables import TableReader

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["batches"]

#: the blocks the first pass kept, read again by id
_BY_ID = ("SELECT {cols} FROM blocks WHERE id IN (SELECT value FROM json_each(?)) "
          "ORDER BY ts_min, id")


def batches(directory: str | Path, *, since: float | None = None, until: float | None = None,
            model: str | None = None, version: int | None = None, with_features: bool = True,
            with_inputs: bool = True, feedback: bool = True,
            feedback_read: FeedbackRead | None = None, event_since: float | None = None,
            event_until: float | None = None, blocks: Collection[str] | None = None,
            with_block: bool = False) -> pa.RecordBatchReader:
    """The predictions of a window as a :class:`pyarrow.RecordBatchReader` (iterate it
    for the batches; ``schema`` is known before the first); see the module's text for
    the columns. ``feedback_read``, if given, counts the feedback rows read. With
    ``event_since`` or ``event_until`` (epoch seconds), only the records whose event time
    is in ``[event_since, event_until)``; the log is read over ``[since, until)`` (all of
    it without them: event times are not indexed). ``blocks``: only the blocks of these
    keys (:attr:`BlockInfo.key` of :func:`block_index`); ``with_block`` adds a ``block``
    column (string) holding each row's block key, after ``event_ts``."""
    import pyarrow as pa

    directory = Path(directory)
    keep = keep_test(since, until, model, version, event_since=event_since,
                     event_until=event_until)
    read = feedback_read if feedback_read is not None else FeedbackRead()
    fields = keyed_fields(directory, read) if feedback else set()
    plan = _plan(directory, since, until, keep, with_features=with_features,
                 inputs=with_inputs or bool(fields), key_fields=fields,
                 only=None if blocks is None else set(blocks))
    join = None
    if feedback:
        key_values = {f: v for f, v in plan.key_values.items() if v}
        join = FeedbackJoin(read_feedback(directory, plan.ids, key_values, read,
                                          since=plan.ts_min))
    schema = plan.schema(with_inputs=with_inputs, with_features=with_features,
                         feedback=feedback, with_block=with_block)
    return pa.RecordBatchReader.from_batches(schema, _read(plan, keep, schema, join,
                                                           with_features=with_features))


@dataclass(slots=True)
class _Plan:
    """What the first pass found: the blocks to read per segment, the request ids, the
    input fields and their kinds, feature and output names, and the values of the
    fields keyed feedback names."""

    blocks: list[tuple[Path, list[int]]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    kinds: dict[str, str] = field(default_factory=dict)
    features: dict[str, None] = field(default_factory=dict)
    outputs: dict[str, None] = field(default_factory=dict)
    key_values: dict[str, set[str]] = field(default_factory=dict)
    inputs: bool = False
    ts_min: float | None = None  #: the earliest ``ts_min`` of the blocks kept

    def schema(self, *, with_inputs: bool, with_features: bool, feedback: bool,
               with_block: bool = False) -> Any:
        import pyarrow as pa

        ts = pa.timestamp("ns", tz="UTC")
        cols = [("request_id", pa.string()), ("row", pa.int64()), ("ts", ts),
                ("model", pa.string()), ("version", pa.int64()), ("arm", pa.string()),
                ("endpoint", pa.string()), ("latency_ms", pa.float64()), ("event_ts", ts)]
        if with_block:
            cols.append(("block", pa.string()))
        if with_inputs:
            cols += [(f"input.{f}", _arrow_type(k)) for f, k in self.kinds.items()]
        if with_features:
            cols += [(f"feature.{f}", pa.float32()) for f in self.features]
        cols += [(f"output.{f}", pa.float64()) for f in self.outputs]
        if feedback:
            cols += [("actual", pa.float64()), ("reward", pa.float64()), ("feedback_ts", ts)]
        return pa.schema(cols)


def _plan(directory: Path, since: float | None, until: float | None, keep: Any, *,
          with_features: bool, inputs: bool, key_fields: set[str],
          only: set[str] | None = None) -> _Plan:
    """The first pass: block metadata (and inputs, if ``inputs``) of the window (of the
    blocks keyed in ``only``, if given)."""
    plan = _Plan(inputs=inputs)
    tables = TableReader()
    cols = "id, session, seq_first, ts_min, meta, rows" + (", inputs" if inputs else "")
    for path in in_window(directory, since, until):
        kept_blocks: list[int] = []
        for con, r in segment_rows(path, BLOCKS.format(cols=cols), window_args(since, until)):
            if only is not None and block_key(path.name, r) not in only:
                continue
            meta = loads(r["meta"])
            kept = np.fromiter((keep(m) for m in meta), dtype=bool, count=len(meta))
            if not kept.any():
                continue
            kept_blocks.append(r["id"])
            plan.ts_min = r["ts_min"] if plan.ts_min is None else min(plan.ts_min, r["ts_min"])
            groups: dict[tuple[Any, ...], None] = {}  # in the order of the records
            for k in np.flatnonzero(kept).tolist():
                m = meta[k]
                plan.ids.add(m[M_RID])
                for name in output_names(m) or ["prediction"]:
                    plan.outputs.setdefault(name)
                groups.setdefault((m[M_TABLE], m[M_MODEL], m[M_VERSION], m[M_NF]))
            if with_features:
                for tab, name, ver, nf in groups:
                    names = tables.table_names(con, tab) if tab is not None else \
                        tables.names(con, name, ver, nf)
                    for f in names:
                        plan.features.setdefault(f)
            if inputs:
                _plan_inputs(plan, *block_inputs(con, r, meta, tables), kept, key_fields)
        if kept_blocks:
            plan.blocks.append((path, kept_blocks))
    return plan


def _plan_inputs(plan: _Plan, values: dict[str, Any], rec: Any, kept: Any,
                 key_fields: set[str]) -> None:
    """The kinds of a block's input fields (in the kept rows) into the plan, and the
    values of the fields that keyed feedback names."""
    mask = kept[rec]
    every = bool(mask.all())
    for f, v in values.items():
        v = v if every else v[mask]
        kind = _kind(v)
        if kind is None:
            continue
        plan.kinds[f] = _unify(plan.kinds.get(f), kind)
        if f in key_fields:
            plan.key_values.setdefault(f, set()).update(str_values(v))


def _arrow_type(kind: str) -> Any:
    import pyarrow as pa

    return {"int": pa.int64, "float": pa.float64, "bool": pa.bool_, "string": pa.string}[kind]()


def _kind(values: Any) -> str | None:
    """The kind of an input column's values: int, float, bool, string (anything else,
    mixed kinds included), None if it holds no value.

    >>> [_kind(np.array(v, dtype=object)) for v in ([1, None], [1, 2.5], ["a", 1], [None],
    ...                                               [True], [2 ** 64])]
    ['int', 'float', 'string', None, 'bool', 'string']
    """
    import pandas as pd

    k = pd.api.types.infer_dtype(values, skipna=True)
    if k == "empty":
        return None
    if k == "integer":
        if values.dtype == object:  # Python ints: beyond int64 they stay exact as text
            present = values[pd.notna(values)]
            if min(present) < -2 ** 63 or max(present) >= 2 ** 63:
                return "string"
        return "int"
    if k in ("floating", "mixed-integer-float", "integer-na"):
        return "float"
    return {"boolean": "bool"}.get(k, "string")


def _unify(a: str | None, b: str) -> str:
    """The kind that holds the values of both kinds.

    >>> _unify(None, "int"), _unify("int", "float"), _unify("bool", "int")
    ('int', 'float', 'string')
    """
    if a is None or a == b:
        return b
    return "float" if {a, b} == {"int", "float"} else "string"


def _read(plan: _Plan, keep: Any, schema: Any, join: FeedbackJoin | None, *,
          with_features: bool) -> Iterator[Any]:
    """The second pass: the blocks the plan kept, a batch each."""
    tables = TableReader()
    cols = "id, session, seq_first, meta, rows, outputs" + \
        (", inputs" if plan.inputs else "") + (", features" if with_features else "")
    for path, ids in plan.blocks:
        for con, r in segment_rows(path, _BY_ID.format(cols=cols), [dumps(ids)]):
            parts = decode_block(con, r, keep, tables, inputs=plan.inputs,
                                 features=with_features)
            if parts is None:
                continue
            parts = parts.kept_rows()
            got = {} if join is None else join.apply(parts.base["request_id"],
                                                     parts.base["row"], parts.inputs)
            yield _batch(schema, parts, got, block_key(path.name, r))


def _batch(schema: Any, parts: Any, got: dict[str, Any], block: str) -> Any:
    """One block's kept rows as a record batch of ``schema``."""
    import pandas as pd
    import pyarrow as pa

    base = parts.base
    n = len(base["row"])
    out = []
    for f in schema:
        name, kind = f.name, f.type
        part, _, rest = name.partition(".")
        if name in ("ts", "event_ts", "feedback_ts"):  # epoch seconds, NaN: null
            v = got[name] if name == "feedback_ts" else base[name]
            out.append(pa.array(pd.to_datetime(v, unit="s", utc=True), type=kind,
                                from_pandas=True))
        elif part == "input":
            v = parts.inputs.get(rest)
            out.append(pa.nulls(n, kind) if v is None else _input_array(v, kind))
        elif part == "feature":
            v = parts.features.get(rest)
            out.append(pa.array(np.full(n, np.nan, "<f4") if v is None else v, type=kind))
        elif part == "output":
            v = parts.outputs.get(rest)
            out.append(pa.array(np.full(n, np.nan) if v is None else v, type=kind))
        elif name == "block":
            out.append(pa.array([block] * n, type=kind))
        elif name in got:  # actual, reward: null where no feedback
            out.append(pa.array(got[name], type=kind, from_pandas=True))
        else:
            out.append(pa.array(base[name], type=kind, from_pandas=True))
    return pa.RecordBatch.from_arrays(out, schema=schema)


def _input_array(values: Any, kind: Any) -> Any:
    """An input column as ``kind`` (string: text as it is, other values through str)."""
    import pandas as pd
    import pyarrow as pa

    if pa.types.is_string(kind) and pd.api.types.infer_dtype(values, skipna=True) not in (
            "string", "empty"):
        values = np.array([v if v is None or isinstance(v, str) or _is_nan(v) else str(v)
                           for v in values], dtype=object)
    return pa.array(values, type=kind, from_pandas=True)


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and v != v
