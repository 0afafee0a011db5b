"""The reading side of the prediction log: queries, one row per prediction with feedback
joined, Parquet export, request lookup, status."""

from __future__ import annotations

import json
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
from cd4ml.serving.predlog.segments import columns, read_only, segments

__all__ = ["parse_time", "query", "predictions", "export_parquet", "find_request", "status"]

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
    for i, (start, path) in enumerate(segs):
        end = segs[i + 1][0] if i + 1 < len(segs) else float("inf")
        if until is not None and start > until:
            continue
        if since is not None and end <= since:
            continue
        yield path


def _where(since: float | None, until: float | None, model: str | None,
           version: int | None, request_id: str | None) -> tuple[str, list[Any]]:
    conds, args = [], []
    for cond, val in (("ts >= ?", since), ("ts < ?", until), ("model = ?", model),
                      ("version = ?", version), ("request_id = ?", request_id)):
        if val is not None:
            conds.append(cond)
            args.append(val)
    return (" WHERE " + " AND ".join(conds)) if conds else "", args


def _rows(directory: Path, sql: str, args: list[Any], since: float | None,
          until: float | None) -> Iterator[tuple[sqlite3.Connection, sqlite3.Row]]:
    for path in _in_window(directory, since, until):
        with closing(read_only(path)) as con:
            con.row_factory = sqlite3.Row
            try:
                cur = con.execute(sql, args)
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    continue
                raise
            for row in cur:
                yield con, row


def query(directory: str | Path, *, since: float | None = None, until: float | None = None,
          model: str | None = None, version: int | None = None,
          request_id: str | None = None, limit: int | None = None,
          newest_first: bool = False) -> list[dict[str, Any]]:
    """One dict per logged request in the window (without the feature and output bytes)."""
    where, args = _where(since, until, model, version, request_id)
    sql = ("SELECT request_id, ts, model, version, arm, endpoint, latency_ms, n_rows, "
           f"content_type, inputs, outputs FROM predictions{where} ORDER BY ts")
    import numpy as np

    out = []
    for _, r in _rows(Path(directory), sql, args, since, until):
        d = dict(r)
        d["inputs"] = columns(d["inputs"])
        d["outputs"] = np.frombuffer(d["outputs"], dtype="<f8").tolist()
        out.append(d)
    out.sort(key=lambda d: d["ts"], reverse=newest_first)
    return out[:limit] if limit is not None else out


def predictions(directory: str | Path, *, since: float | None = None,
                until: float | None = None, model: str | None = None,
                version: int | None = None, with_request: bool = False,
                with_features: bool = True) -> Any:
    """One row per prediction as a DataFrame: request fields, features, output, actuals.

    Feature columns are ``feature.<name>``; versions with other features leave them
    null. ``actual``/``reward`` come from feedback, by request id (and row) or by the
    request fields (series keys and date); the latest feedback wins.
    """
    import numpy as np
    import pandas as pd

    directory = Path(directory)
    where, args = _where(since, until, model, version, None)
    sql = f"SELECT * FROM predictions{where} ORDER BY ts"
    names: dict[tuple[str, int | None], list[str]] = {}
    frames = []
    for con, r in _rows(directory, sql, args, since, until):
        key = (r["model"], r["version"])
        if key not in names:
            row = con.execute("SELECT names FROM feature_names WHERE model = ? AND "
                              "version IS ?", key).fetchone()
            names[key] = json.loads(row[0]) if row else [
                f"f{i}" for i in range(r["n_features"])]
        n = r["n_rows"]
        cols: dict[str, Any] = {
            "request_id": [r["request_id"]] * n, "row": np.arange(n),
            "ts": [r["ts"]] * n, "model": [r["model"]] * n, "version": [r["version"]] * n,
            "arm": [r["arm"]] * n, "endpoint": [r["endpoint"]] * n,
            "latency_ms": [r["latency_ms"]] * n}
        for f, vals in columns(r["inputs"]).items():
            cols[f] = vals
        cols["prediction"] = np.frombuffer(r["outputs"], dtype="<f8")
        if with_features:
            feats = np.frombuffer(r["features"], dtype="<f4").reshape(n, r["n_features"])
            for j, name in enumerate(names[key]):
                cols[f"feature.{name}"] = feats[:, j]
        if with_request:
            body = r["request"]
            cols["request"] = [None if body is None else bytes(body)] * n
            cols["content_type"] = [r["content_type"]] * n
        frames.append(pd.DataFrame(cols))
    if not frames:
        return pd.DataFrame(columns=["request_id", "row", "ts", "model", "version", "arm",
                                     "endpoint", "latency_ms", "prediction", "actual",
                                     "reward"])
    df = pd.concat(frames, ignore_index=True)
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


def find_request(directory: str | Path, request_id: str) -> dict[str, Any] | None:
    """The newest logged request with this id: its n_rows, model, version, inputs."""
    for path in reversed([p for _, p in segments(directory)]):
        with closing(read_only(path)) as con:
            try:
                r = con.execute("SELECT n_rows, model, version, inputs, ts FROM predictions "
                                "WHERE request_id = ? ORDER BY ts DESC LIMIT 1",
                                (request_id,)).fetchone()
            except sqlite3.OperationalError:
                continue
        if r:
            return {"n_rows": r[0], "model": r[1], "version": r[2],
                    "inputs": columns(r[3]), "ts": r[4]}
    return None


def status(directory: str | Path) -> dict[str, Any]:
    """Segments (period, records, predictions, feedback, bytes, time range) and losses."""
    d = Path(directory)
    segs = []
    for start, path in segments(d):
        with closing(read_only(path)) as con:
            try:
                n, rows, t0, t1 = con.execute(
                    "SELECT count(*), coalesce(sum(n_rows), 0), min(ts), max(ts) "
                    "FROM predictions").fetchone()
                (fb,) = con.execute("SELECT count(*) FROM feedback").fetchone()
            except sqlite3.OperationalError:
                n = rows = fb = 0
                t0 = t1 = None
        size = sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal")
                   if Path(f"{path}{s}").exists())
        segs.append({"segment": path.name, "period_start": start, "requests": n,
                     "predictions": rows, "feedback": fb, "bytes": size,
                     "first": t0, "last": t1})
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
            "lost_total": sum(x["lost"] for x in losses), "live_writers": live}
