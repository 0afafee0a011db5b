"""The reading side of the prediction log: queries, one row per prediction with feedback
joined, Parquet export, request lookup, status."""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cd4ml.errors import RequestError
from cd4ml.predlog.damage import is_damage, set_aside_files
from cd4ml.predlog.segments import (M_ARM, M_CTYPE, M_ENDPOINT, M_LATENCY, M_MODEL,
                                            M_NF, M_NROWS, M_REQLEN, M_RID, M_TABLE, M_TRUNC,
                                            M_TS, M_VERSION, columns, loads, output_names,
                                            output_widths, read_only, read_segment,
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


def _in_window(directory: Path, since: float | None, until: float | None) -> Iterator[Path]:
    segs = segments(directory)
    starts = sorted({start for start, _ in segs})
    ends = {s: e for s, e in zip(starts, [*starts[1:], float("inf")], strict=False)}
    for start, path in segs:
        end = ends[start]
        if until is not None and start > until:
            continue
        if since is not None and end <= since:
            continue
        yield path


def _keep(since: float | None, until: float | None, model: str | None,
          version: int | None, request_id: str | None) -> Any:
    """A test of one record's meta list against the filters."""
    def keep(m: list[Any]) -> bool:
        return ((since is None or m[M_TS] >= since) and (until is None or m[M_TS] < until)
                and (model is None or m[M_MODEL] == model)
                and (version is None or m[M_VERSION] == version)
                and (request_id is None or m[M_RID] == request_id))
    return keep


def _rows(directory: Path, sql: str, args: list[Any], since: float | None,
          until: float | None) -> Iterator[tuple[sqlite3.Connection, sqlite3.Row]]:
    for path in _in_window(directory, since, until):
        try:
            with closing(read_segment(path)) as con:
                con.row_factory = sqlite3.Row
                try:
                    cur = con.execute(sql, args)
                except sqlite3.OperationalError as exc:
                    if "no such table" in str(exc):
                        continue
                    raise
                for row in cur:
                    yield con, row
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            log.warning("prediction log: segment %s cannot be read (%s); skipped (the next "
                        "writer to start sets it aside)", path.name, exc)


def _blocks(directory: Path, cols: str, since: float | None,
            until: float | None) -> Iterator[tuple[sqlite3.Connection, sqlite3.Row]]:
    """The blocks that may hold records of the window, oldest first."""
    sql = (f"SELECT {cols} FROM blocks WHERE ts_max >= ? AND ts_min < ? "
           "ORDER BY ts_min, id")
    args = [-1e308 if since is None else since, 1e308 if until is None else until]
    yield from _rows(directory, sql, args, since, until)


def query(directory: str | Path, *, since: float | None = None, until: float | None = None,
          model: str | None = None, version: int | None = None,
          request_id: str | None = None, limit: int | None = None,
          newest_first: bool = False) -> list[dict[str, Any]]:
    """One dict per logged request in the window (without the feature and request bytes)."""
    import numpy as np

    keep = _keep(since, until, model, version, request_id)
    tables = TableReader()
    out = []
    for con, r in _blocks(Path(directory), "meta, inputs, rows, outputs", since, until):
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
                            "n_rows": n, "content_type": m[M_CTYPE], "inputs": ins,
                            "outputs": outs[off:off + n * width[k]].reshape(
                                n, -1).tolist() if width[k] > 1 else
                            outs[off:off + n].tolist(),
                            "output_names": output_names(m) or ["prediction"],
                            **_body_info(m)})
    out.sort(key=lambda d: d["ts"], reverse=newest_first)
    return out[:limit] if limit is not None else out


def _body_info(m: list[Any]) -> dict[str, Any]:
    """A record's body as received: its length, and the sha256 of a body stored
    truncated (None when the stored body is whole)."""
    cut = m[M_TRUNC] if len(m) > M_TRUNC else None
    return {"request_length": cut[0] if cut else m[M_REQLEN],
            "request_sha256": cut[1] if cut else None}


def _block_frame(con: sqlite3.Connection, r: sqlite3.Row, keep: Any, with_request: bool,
                 with_features: bool, tables: TableReader) -> Any:
    """One row per prediction of a block's records that pass ``keep`` (None if none)."""
    import numpy as np
    import pandas as pd

    meta = loads(r["meta"])
    kept = np.fromiter((keep(m) for m in meta), dtype=bool, count=len(meta))
    if not kept.any():
        return None
    n, is_ref, starts, rstart = record_starts(meta)
    total = int(n.sum())
    rec = np.repeat(np.arange(len(meta)), n)

    def per_row(j: int) -> Any:
        return np.array([m[j] for m in meta], dtype=object)[rec]

    cols: dict[str, Any] = {
        "request_id": per_row(M_RID), "row": np.arange(total) - starts[rec],
        "ts": np.fromiter((m[M_TS] for m in meta), dtype=np.float64, count=len(meta))[rec],
        "model": per_row(M_MODEL), "version": per_row(M_VERSION), "arm": per_row(M_ARM),
        "endpoint": per_row(M_ENDPOINT),
        "latency_ms": np.fromiter((m[M_LATENCY] for m in meta), dtype=np.float64,
                                  count=len(meta))[rec]}
    # records of a feature table ("ref") hold row numbers; the others their own inputs
    tab = [m[M_TABLE] for m in meta]
    table_rows = np.frombuffer(r["rows"], dtype="<i4")
    by_table: dict[str, list[int]] = {}
    for k, t in enumerate(tab):
        if t is not None:
            by_table.setdefault(t, []).append(k)

    def positions(ks: list[int]) -> tuple[Any, Any]:
        """Block rows of records ``ks`` and their table rows."""
        pos = np.concatenate([np.arange(starts[k], starts[k] + n[k]) for k in ks])
        rows = np.concatenate([table_rows[rstart[k]:rstart[k] + n[k]] for k in ks])
        return pos, rows

    inputs: dict[str, Any] = {}
    if not is_ref.all():
        inputs = _inline_inputs(loads(r["inputs"]), n, starts, total)
    if len(by_table) == 1 and is_ref.all():
        ((t, _),) = by_table.items()
        inputs = tables.inputs(con, t, table_rows)
    else:
        for t, ks in by_table.items():
            pos, rows = positions(ks)
            for f, v in tables.inputs(con, t, rows).items():
                col = inputs.setdefault(f, np.full(total, None, dtype=object))
                if col.dtype != object:
                    col = inputs[f] = col.astype(object)
                col[pos] = v
    for f, vals in inputs.items():
        if f not in cols:
            cols[f] = vals
    cols.update(_outputs(meta, np.frombuffer(r["outputs"], dtype="<f8"), n, starts, total))
    if with_features:
        feats = np.frombuffer(r["features"], dtype="<f4")
        nf = np.fromiter((m[M_NF] for m in meta), dtype=np.int64, count=len(meta))
        inline = n * nf * ~is_ref
        fstart = np.cumsum(inline) - inline
        groups: dict[tuple[str, Any, int], list[int]] = {}
        for k, m in enumerate(meta):
            if tab[k] is None:
                groups.setdefault((m[M_MODEL], m[M_VERSION], int(nf[k])), []).append(k)
        if len(groups) == 1 and not by_table:
            (model, version, width), = groups
            mat = feats.reshape(-1, width) if width else np.empty((total, 0), "<f4")
            for j, name in enumerate(tables.names(con, model, version, width)):
                cols[f"feature.{name}"] = mat[:, j]
        elif len(by_table) == 1 and not groups:
            ((t, _),) = by_table.items()
            names, mat = tables.features(con, t, table_rows)
            for j, name in enumerate(names):
                cols[f"feature.{name}"] = mat[:, j]
        else:  # a swap inside the block: each version's own features, null elsewhere
            def column(name: str) -> Any:
                return cols.setdefault(f"feature.{name}", np.full(total, np.nan, dtype="<f4"))

            for (model, version, width), ks in groups.items():
                for j, name in enumerate(tables.names(con, model, version, width)):
                    col = column(name)
                    for k in ks:
                        mat = feats[fstart[k]:fstart[k] + n[k] * width].reshape(-1, width)
                        col[starts[k]:starts[k] + n[k]] = mat[:, j]
            for t, ks in by_table.items():
                pos, rows = positions(ks)
                names, mat = tables.features(con, t, rows)
                for j, name in enumerate(names):
                    column(name)[pos] = mat[:, j]
    if with_request:
        lens = [m[M_REQLEN] for m in meta]
        body = r["requests"]
        offs = np.cumsum(lens) - lens
        reqs = np.array([None if body is None else bytes(body[o:o + ln])
                         for o, ln in zip(offs, lens, strict=True)], dtype=object)
        cols["request"] = reqs[rec]
        info = [_body_info(m) for m in meta]
        cols["request_length"] = np.array([x["request_length"] for x in info])[rec]
        cols["request_sha256"] = np.array([x["request_sha256"] for x in info],
                                          dtype=object)[rec]
        cols["content_type"] = per_row(M_CTYPE)
    df = pd.DataFrame(cols)
    return df if kept.all() else df[kept[rec]]


def _inline_inputs(recs: list[Any], n: Any, starts: Any, total: int) -> dict[str, Any]:
    """The request fields of a block's inline records, a column per field (None where a
    record lacks it): rows (objects, lower-case names), or columns as logged."""
    import numpy as np

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
    import numpy as np

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


def predictions(directory: str | Path, *, since: float | None = None,
                until: float | None = None, model: str | None = None,
                version: int | None = None, with_request: bool = False,
                with_features: bool = True) -> Any:
    """One row per prediction as a DataFrame: request fields, features, output, actuals.

    Feature columns are ``feature.<name>``; versions with other features leave them
    null. ``actual``/``reward`` come from feedback, by request id (and row) or by the
    request fields (series keys and date); the latest feedback wins.
    """
    import pandas as pd

    directory = Path(directory)
    keep = _keep(since, until, model, version, None)
    cols = "meta, inputs, rows, outputs" + (", features" if with_features else "") + \
        (", requests" if with_request else "")
    tables = TableReader()
    frames = []
    for con, r in _blocks(directory, cols, since, until):
        df = _block_frame(con, r, keep, with_request, with_features, tables)
        if df is not None:
            frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["request_id", "row", "ts", "model", "version", "arm",
                                     "endpoint", "latency_ms", "prediction", "actual",
                                     "reward"])
    df = pd.concat(frames, ignore_index=True)
    df = df.sort_values("ts", kind="stable", ignore_index=True)
    df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    return _join_feedback(directory, df)


def _feedback(directory: Path) -> list[dict[str, Any]]:
    out = []
    for _, r in _rows(directory, "SELECT * FROM feedback ORDER BY ts", [], None, None):
        out.append(dict(r))
    return out


def _join_feedback(directory: Path, df: Any) -> Any:
    """Latest non-null ``actual`` and ``reward`` per prediction; by id wins over by keys."""
    import pandas as pd

    fb = _feedback(directory)
    df["actual"] = float("nan")
    df["reward"] = float("nan")
    if not fb:
        return df
    fbd = pd.DataFrame(fb).sort_values("ts", kind="stable")
    by_id = fbd[fbd["request_id"].notna()]
    by_key = fbd[fbd["request_id"].isna() & fbd["keys"].notna()]
    for c in ("actual", "reward"):
        ids = by_id[by_id[c].notna()].drop_duplicates(["request_id", "row"], keep="last")
        if len(ids):
            m = df[["request_id", "row"]].merge(ids[["request_id", "row", c]],
                                                on=["request_id", "row"], how="left")
            df[c] = m[c].to_numpy()
        keyed = by_key[by_key[c].notna()]
        if len(keyed):
            keys = pd.DataFrame([json.loads(k) for k in keyed["keys"]])
            on = list(keys.columns)
            if all(k in df.columns for k in on):
                keys[f"{c}_k"] = keyed[c].to_numpy()
                keys = keys.astype({k: str for k in on}).drop_duplicates(on, keep="last")
                m = df[on].astype(str).merge(keys, on=on, how="left")
                df[c] = df[c].combine_first(pd.Series(m[f"{c}_k"].to_numpy(), index=df.index))
    return df


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
