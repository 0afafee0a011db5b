"""The reading side of the prediction log: queries, one row per prediction with feedback
joined, Parquet export, request lookup, status."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cd4ml.errors import RequestError
from cd4ml.predlog.damage import is_damage, set_aside_files
from cd4ml.predlog.feedback import (FeedbackJoin, FeedbackRead, keyed_fields, read_feedback,
                                    str_values)
from cd4ml.predlog.frames import body_info, decode_block, frame
from cd4ml.predlog.scan import blocks, keep_test
from cd4ml.predlog.segments import (M_ARM, M_CTYPE, M_ENDPOINT, M_LATENCY, M_MODEL,
                                    M_NROWS, M_RID, M_TABLE, M_TS, M_VERSION, columns,
                                    event_time, loads, output_names, output_widths, read_only,
                                    record_starts, segment_format, segments)
from cd4ml.predlog.tables import TableReader

__all__ = ["parse_time", "query", "predictions", "export_parquet", "status"]

log = logging.getLogger("cd4ml.predlog")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str | None, *, now: float | None = None) -> float | None:
    """Epoch seconds from an ISO date/time (UTC unless it says) or an age like ``2h``.

    >>> parse_time("2026-01-02T03:00:00Z")
    1767322800.0
    >>> parse_time("90m", now=10_000.0)
    4600.0
    """
    if text is None or text == "":
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise RequestError(f"time {text!r}: expected an ISO date/time (2026-11-23T10:00) or "
                           f"an age such as 30m, 2h, 7d") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def query(directory: str | Path, *, since: float | None = None, until: float | None = None,
          model: str | None = None, version: int | None = None,
          request_id: str | None = None, limit: int | None = None,
          newest_first: bool = False, event_since: float | None = None,
          event_until: float | None = None) -> list[dict[str, Any]]:
    """One dict per logged request in the window (without the feature and request bytes);
    ``event_ts``: its event time (epoch seconds), None if it gave none."""
    import numpy as np

    keep = keep_test(since, until, model, version, request_id, event_since=event_since,
                     event_until=event_until)
    tables = TableReader()
    out = []
    for con, r in blocks(Path(directory), "meta, inputs, rows, outputs", since, until):
        meta = loads(r["meta"])
        outs = np.frombuffer(r["outputs"], dtype="<f8")
        rows = np.frombuffer(r["rows"], dtype="<i4")
        inputs = None
        nrows, _, starts, rstarts = record_starts(meta)
        width = output_widths(meta)
        ostarts = np.cumsum(nrows * width) - nrows * width
        for k, m in enumerate(meta):
            n, off, roff = m[M_NROWS], ostarts[k], rstarts[k]
            if keep(m):
                if m[M_TABLE] is not None:
                    ins = tables.input_lists(con, m[M_TABLE], rows[roff:roff + n])
                else:
                    if inputs is None:
                        inputs = loads(r["inputs"])
                    ins = columns(inputs[k])
                out.append({"request_id": m[M_RID], "ts": m[M_TS], "model": m[M_MODEL],
                            "version": m[M_VERSION], "arm": m[M_ARM],
                            "endpoint": m[M_ENDPOINT], "latency_ms": m[M_LATENCY],
                            "event_ts": event_time(m), "n_rows": n,
                            "content_type": m[M_CTYPE], "inputs": ins,
                            "outputs": outs[off:off + n * width[k]].reshape(
                                n, -1).tolist() if width[k] > 1 else
                            outs[off:off + n].tolist(),
                            "output_names": output_names(m) or ["prediction"],
                            **body_info(m)})
    out.sort(key=lambda d: d["ts"], reverse=newest_first)
    return out[:limit] if limit is not None else out


def predictions(directory: str | Path, *, since: float | None = None,
                until: float | None = None, model: str | None = None,
                version: int | None = None, with_request: bool = False,
                with_features: bool = True, feedback_read: FeedbackRead | None = None,
                event_since: float | None = None, event_until: float | None = None) -> Any:
    """One row per prediction as a DataFrame: request fields, features, output, actuals.

    ``event_ts`` is the request's event time (NaT if it gave none); ``event_since`` and
    ``event_until`` keep the records whose event time is in ``[event_since,
    event_until)``, as :func:`~cd4ml.predlog.batches` does.

    Feature columns are ``feature.<name>``; versions with other features leave them
    null. ``actual``/``reward`` come from feedback, by request id (and row) or by the
    request fields (series keys and date); the latest feedback wins. Only the feedback
    that can match the window's predictions is read (feedback.py), counted in
    ``feedback_read`` if given. :func:`~cd4ml.predlog.batches` gives the same rows as
    Arrow record batches, a block at a time.
    """
    import pandas as pd

    directory = Path(directory)
    read = feedback_read if feedback_read is not None else FeedbackRead()
    keep = keep_test(since, until, model, version, event_since=event_since,
                     event_until=event_until)
    cols = "meta, inputs, rows, outputs" + (", features" if with_features else "") + \
        (", requests" if with_request else "")
    fields = keyed_fields(directory, read)
    tables = TableReader()
    frames, keys = [], []
    for con, r in blocks(directory, cols, since, until):
        parts = decode_block(con, r, keep, tables, features=with_features,
                             request=with_request)
        if parts is not None:
            parts = parts.kept_rows()
            frames.append(frame(parts))
            keys.append({f: v for f, v in parts.inputs.items() if f in fields})
    if not frames:
        return pd.DataFrame(columns=["request_id", "row", "ts", "model", "version", "arm",
                                     "endpoint", "latency_ms", "event_ts", "prediction",
                                     "actual", "reward"])
    _join_feedback(directory, frames, keys, read)
    df = pd.concat(frames, ignore_index=True)
    df = df[[c for c in df.columns if c not in ("actual", "reward")] + ["actual", "reward"]]
    df = df.sort_values("ts", kind="stable", ignore_index=True)
    df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    df["event_ts"] = pd.to_datetime(df["event_ts"], unit="s", utc=True)
    return df


def _join_feedback(directory: Path, frames: list[Any], keys: list[dict[str, Any]],
                   read: FeedbackRead) -> None:
    """Each block's frame gets the latest non-null ``actual`` and ``reward`` of its
    rows (by id wins over by keys; ``keys``: per frame, its request fields that keyed
    feedback names), from the feedback that can match them (feedback.py)."""
    ids = {i for df in frames for i in df["request_id"].tolist()}
    values: dict[str, set[str]] = {}
    for k in keys:
        for f, v in k.items():
            values.setdefault(f, set()).update(str_values(v))
    join = FeedbackJoin(read_feedback(directory, ids, values, read))
    for df, k in zip(frames, keys, strict=True):
        got = join.apply(df["request_id"].to_numpy(), df["row"].to_numpy(), k)
        df["actual"] = got["actual"]
        df["reward"] = got["reward"]


def export_parquet(directory: str | Path, output: str | Path, **filters: Any) -> int:
    """Write :func:`predictions` to Parquet (atomically); returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(output)
    if out.suffix != ".parquet":
        raise RequestError(f"--output {str(out)!r}: expected a file ending in .parquet")
    df = predictions(directory, **filters)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return len(df)


def status(directory: str | Path) -> dict[str, Any]:
    """Segments (period, log format, records, predictions, feedback, bytes, time range,
    and the problem of one SQLite cannot read), losses, and the files set aside; a
    segment of another log format is listed (with its format), not read."""
    d = Path(directory)
    segs = []
    for start, path in segments(d):
        problem = None
        fmt = None
        n = rows = fb = 0
        t0 = t1 = None
        try:
            with closing(read_only(path)) as con:
                fmt = segment_format(con)
                try:
                    n, rows, t0, t1 = con.execute(
                        "SELECT coalesce(sum(n), 0), coalesce(sum(n_rows), 0), min(ts_min), "
                        "max(ts_max) FROM blocks").fetchone()
                    (fb,) = con.execute("SELECT count(*) FROM feedback").fetchone()
                except sqlite3.OperationalError:
                    n = rows = fb = 0
                    t0 = t1 = None
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            problem = str(exc)
        size = sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal")
                   if Path(f"{path}{s}").exists())
        segs.append({"segment": path.name, "period_start": start, "format": fmt,
                     "requests": n, "predictions": rows, "feedback": fb, "bytes": size,
                     "first": t0, "last": t1, "problem": problem})
    losses: list[dict[str, Any]] = []
    if (d / "state.db").exists():
        with closing(sqlite3.connect(d / "state.db", timeout=30)) as con:
            con.row_factory = sqlite3.Row
            try:
                losses = [dict(r) for r in con.execute(
                    "SELECT * FROM losses ORDER BY detected_at")]
            except sqlite3.OperationalError:
                losses = []
    live = sorted(p.name for p in (d / "sessions").glob("*.cnt")) if (d / "sessions").is_dir() \
        else []
    return {"dir": str(d), "segments": segs, "losses": losses,
            "lost_total": sum(x["lost"] for x in losses), "live_writers": live,
            "set_aside": set_aside_files(d)}
