"""Feedback for the predictions of a window: read through the index, joined latest-first.

Feedback is stored where it arrives (the segment of the period it came in), so a
window's predictions may have theirs in any later segment. Each segment is asked only
for the rows that can match the window's predictions, never for all its feedback:

- by request id (``request_id``, ``row``): the window's ids, one JSON array joined with
  ``json_each``, looked up in the ``feedback_request`` index (:data:`BY_ID`);
- by series keys and date (``keys``, a forecast's): the index's range of rows without a
  request id, of which SQLite hands back only those whose every field is a request
  field of the window with a value the window holds (:data:`BY_KEYS`); the fields
  such feedback names are found first (:data:`KEY_FIELDS`), so that only their values
  are gathered from the window. There is no index on the keys, so SQLite still steps
  over every keyed row of a segment, without decoding any into Python.

:class:`FeedbackJoin` gives each prediction row the latest non-null ``actual`` and
``reward`` (feedback by request id and row wins over feedback by keys) and the time of
the feedback it took them from. A keyed item matches the rows whose fields it names
equal its values, compared as text (``1`` and ``"1"`` match, ``1`` and ``1.0`` do not).
:class:`FeedbackRead` counts what was read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cd4ml.predlog.scan import in_window, visit
from cd4ml.predlog.segments import dumps

__all__ = ["FeedbackRead", "FeedbackJoin", "keyed_fields", "read_feedback", "str_values",
           "join_feedback", "feedback_marks", "feedback_after",
           "BY_ID", "BY_KEYS", "KEY_FIELDS"]

_COLS = ("ts", "request_id", "row", "keys", "actual", "reward")

#: the feedback of the ids in a JSON array, through the ``feedback_request`` index
BY_ID = ("SELECT ts, request_id, row, keys, actual, reward FROM feedback "
         "WHERE request_id IN (SELECT value FROM json_each(?)) ORDER BY ts, rowid")

#: the fields that feedback by keys names (the index's range of null request ids)
KEY_FIELDS = ("SELECT DISTINCT k.key FROM feedback f, json_each(f.keys) k "
              "WHERE f.request_id IS NULL AND f.keys IS NOT NULL "
              "AND json_type(f.keys) = 'object'")

#: the feedback by keys whose every field is one of ``?1`` (a JSON array of field
#: names) with, where it is a text or an integer, a value of ``?2`` (a JSON array of
#: ``[field, value as text]``); other values (reals, booleans) pass, to be compared in
#: Python: a superset of what matches, never less
BY_KEYS = """SELECT ts, request_id, row, keys, actual, reward FROM feedback f
WHERE f.request_id IS NULL AND f.keys IS NOT NULL AND json_type(f.keys) = 'object'
  AND NOT EXISTS (
    SELECT 1 FROM json_each(f.keys) k
    WHERE k.key NOT IN (SELECT value FROM json_each(?1))
       OR (k.type IN ('text', 'integer') AND (k.key, CAST(k.value AS TEXT)) NOT IN (
           SELECT json_extract(w.value, '$[0]'), json_extract(w.value, '$[1]')
           FROM json_each(?2) w)))
ORDER BY ts, rowid"""


@dataclass(slots=True)
class FeedbackRead:
    """What reading feedback did: segments visited, queries run, rows SQLite handed
    back (only rows that can match the window; a test holds it below the total)."""

    segments: int = 0
    queries: int = 0
    rows: int = 0


def keyed_fields(directory: Path, read: FeedbackRead) -> set[str]:
    """The fields named by any feedback given by keys, in every segment."""
    def fields(con: Any, name: str) -> list[str]:
        read.queries += 1
        return [r[0] for r in con.execute(KEY_FIELDS) if r[0] is not None]

    return {f for got in visit(directory, fields) for f in got}


def str_values(values: Any) -> set[str]:
    """The distinct non-missing values of a column as text, as the join compares them."""
    import pandas as pd

    s = pd.Series(values).astype(str)
    return set(s[s.notna()].unique().tolist())


#: how much earlier than its prediction a feedback item may be stamped (another
#: process's clock): segments ending this long before a window's first prediction are
#: still asked for its feedback by id
CLOCK_SKEW_S = 3600.0


def read_feedback(directory: Path, request_ids: Iterable[str],
                  key_values: Mapping[str, set[str]], read: FeedbackRead,
                  since: float | None = None) -> Any:
    """The feedback that can match a window's predictions: by any of ``request_ids``,
    or by keys whose fields and values are among ``key_values`` (field -> values as
    text); a DataFrame sorted by time, oldest first (segments in order on a tie).

    ``since``, the window's earliest prediction time: feedback by id comes after its
    prediction (``/feedback`` refuses an id the log does not hold), so the segments of
    periods that ended before it (less :data:`CLOCK_SKEW_S`) are not asked for it; a
    window's feedback then costs the segments from its start on, not all of them.
    Feedback by keys may come before a prediction: every segment is asked for that."""
    import pandas as pd

    ids = dumps(sorted(set(request_ids)))
    if ids == b"[]" and not key_values:  # nothing can match: no segment to visit
        return pd.DataFrame(columns=list(_COLS))
    fields = dumps(sorted(key_values))
    pairs = dumps(sorted([f, v] for f, vs in key_values.items() for v in vs))
    late = None if since is None else {
        p.name for p in in_window(directory, since - CLOCK_SKEW_S, None)}

    def rows(con: Any, name: str) -> list[tuple[Any, ...]]:
        got: list[tuple[Any, ...]] = []
        if ids != b"[]" and (late is None or name in late):
            got += [tuple(r) for r in con.execute(BY_ID, (ids,))]
            read.queries += 1
        if key_values:
            got += [tuple(r) for r in con.execute(BY_KEYS, (fields, pairs))]
            read.queries += 1
        read.segments += 1
        return got

    wanted = None if key_values or late is None else late
    found = [r for got in visit(directory, rows, only=wanted) for r in got]
    read.rows += len(found)
    fb = pd.DataFrame(found, columns=list(_COLS))
    return fb.sort_values("ts", kind="stable", ignore_index=True)


class FeedbackJoin:
    """The latest feedback per prediction row, prepared once from :func:`read_feedback`
    and applied to any number of frames (one per block)."""

    def __init__(self, fb: Any) -> None:
        import pandas as pd

        #: per column: an index of (request id, row) or of key values, and per entry
        #: the latest value and its time
        self._by_id: dict[str, tuple[Any, Any, Any]] = {}
        self._by_key: dict[str, list[tuple[list[str], Any, Any, Any]]] = {}
        by_id = fb[fb["request_id"].notna() & fb["row"].notna()]
        keyed = fb[fb["request_id"].isna() & fb["keys"].notna()]
        parsed = [json.loads(k) for k in keyed["keys"]]
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, k in enumerate(parsed):  # items naming the same fields are joined together
            groups.setdefault(tuple(sorted(k)), []).append(i)
        ts_id, ts_key = by_id["ts"].to_numpy(float), keyed["ts"].to_numpy(float)
        for c in ("actual", "reward"):
            has = by_id[c].notna().to_numpy()
            index = pd.MultiIndex.from_arrays(
                [by_id["request_id"].astype(object).to_numpy()[has],
                 by_id["row"].to_numpy()[has].astype(np.int64)])
            self._by_id[c] = _latest(index, by_id[c].to_numpy(float)[has], ts_id[has])
            has = keyed[c].notna().to_numpy()
            self._by_key[c] = []
            for on, at in groups.items():
                at = [i for i in at if has[i]]
                if at:
                    index = pd.MultiIndex.from_arrays(
                        [np.array([str(parsed[i][f]) for i in at], dtype=object) for f in on])
                    self._by_key[c].append((list(on), *_latest(
                        index, keyed[c].to_numpy(float)[at], ts_key[at])))

    def apply(self, request_id: Any, row: Any, fields: Mapping[str, Any]) -> dict[str, Any]:
        """``actual``, ``reward`` and ``feedback_ts`` (epoch seconds; NaN where none) of
        prediction rows given by their request id, row and request fields."""
        import pandas as pd

        n = len(request_id)
        target = pd.MultiIndex.from_arrays([np.asarray(request_id, dtype=object),
                                            np.asarray(row, dtype=np.int64)])
        as_text: dict[str, Any] = {}
        out: dict[str, Any] = {}
        when = np.full(n, np.nan)
        for c in ("actual", "reward"):
            index, vals, ts = self._by_id[c]
            value, at = np.full(n, np.nan), np.full(n, np.nan)
            if len(index):
                hit = index.get_indexer(target)
                ok = hit >= 0
                value[ok], at[ok] = vals[hit[ok]], ts[hit[ok]]
            key_value, key_at = np.full(n, np.nan), np.full(n, np.nan)
            for on, index, vals, ts in self._by_key[c]:
                if not all(f in fields for f in on):
                    continue
                for f in on:
                    if f not in as_text:
                        as_text[f] = pd.Series(fields[f]).astype(str).to_numpy(dtype=object)
                hit = index.get_indexer(pd.MultiIndex.from_arrays([as_text[f] for f in on]))
                found = hit >= 0
                t = np.where(found, ts[np.maximum(hit, 0)], np.nan)
                # the latest item of any group of fields; a tie goes to the later group
                ok = found & ~(key_at > t)
                key_value[ok], key_at[ok] = vals[hit[ok]], t[ok]
            by_key = np.isnan(value) & ~np.isnan(key_value)  # by id wins over by keys
            value[by_key], at[by_key] = key_value[by_key], key_at[by_key]
            out[c] = value
            when = np.fmax(when, at)
        out["feedback_ts"] = when
        return out


def _latest(index: Any, values: Any, ts: Any) -> tuple[Any, Any, Any]:
    """The index without repeats, the value and time of each entry's last occurrence
    (the rows come oldest first)."""
    last = ~index.duplicated(keep="last")
    return index[last], values[last], ts[last]


def join_feedback(directory: str | Path, request_id: Any, row: Any,
                  fields: Mapping[str, Any], read: FeedbackRead | None = None,
                  since: float | None = None) -> dict[str, Any]:
    """``actual``, ``reward`` and ``feedback_ts`` (epoch seconds; NaN where none) of
    prediction rows already read (their request ids, rows and request fields), as
    :func:`~cd4ml.predlog.batches` joins them: only the feedback that can match these
    rows is read (``since``: their earliest prediction time, :func:`read_feedback`)."""
    directory = Path(directory)
    read = read if read is not None else FeedbackRead()
    keyed = keyed_fields(directory, read)
    key_values = {f: str_values(fields[f]) for f in keyed if f in fields}
    fb = read_feedback(directory, [str(r) for r in np.asarray(request_id, dtype=object)],
                       {f: v for f, v in key_values.items() if v}, read, since=since)
    return FeedbackJoin(fb).apply(request_id, row, fields)


def feedback_marks(directory: str | Path) -> dict[str, int]:
    """How far each segment's feedback goes (its largest rowid; feedback is only ever
    appended): what :func:`feedback_after` later takes to give what came since."""
    def mark(con: Any, name: str) -> tuple[str, int]:
        return name, int(con.execute("SELECT COALESCE(MAX(rowid), 0) FROM feedback")
                         .fetchone()[0])

    return dict(visit(Path(directory), mark))


def feedback_after(directory: str | Path, marks: Mapping[str, int]) -> Any:
    """The feedback stored since ``marks`` (:func:`feedback_marks`): per segment, the rows
    after its mark (all of a segment the marks do not name), as a DataFrame of
    ``ts, request_id, row, keys, actual, reward``."""
    import pandas as pd

    def rows(con: Any, name: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in con.execute(
            "SELECT ts, request_id, row, keys, actual, reward FROM feedback WHERE rowid > ?",
            (int(marks.get(name, 0)),))]

    return pd.DataFrame([r for got in visit(Path(directory), rows) for r in got],
                        columns=list(_COLS))
