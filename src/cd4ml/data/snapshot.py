"""A snapshot: a source's frame as deterministic Parquet bytes, its profile and metadata.

The snapshot id is the fingerprint (sha256) of the raw source file, so reading an
unchanged file again maps to the same snapshot. This module only builds the bytes; the
store decides where they live.

>>> import pandas as pd
>>> df = pd.DataFrame({"k": [1, 2], "d": pd.to_datetime(["2010-02-05", "2010-02-12"])})
>>> snap = make_snapshot("sales", df, fingerprint="ab" * 32)
>>> snap.id == "ab" * 32, snap.rows, [c["name"] for c in snap.columns], snap.columns[0]
(True, 2, ['k', 'd'], {'name': 'k', 'dtype': 'int64'})
>>> make_snapshot("sales", df, fingerprint="ab" * 32).data == snap.data  # deterministic
True
>>> read_snapshot_bytes(snap.data).equals(df)
True
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cd4ml.data.profile import profile as make_profile
from cd4ml.errors import DataError

__all__ = ["SnapshotData", "make_snapshot", "read_snapshot_bytes", "PARQUET_OPTIONS"]

#: Fixed writer settings: the same frame gives the same bytes (for one pyarrow version).
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "row_group_size": 1 << 20,
    "version": "2.6",
    "data_page_version": "1.0",
}
_META_KEY = b"cd4ml"


@dataclass(frozen=True)
class SnapshotData:
    """What a store keeps for one snapshot. ``id`` is the raw file's sha256."""

    id: str
    name: str
    data: bytes = field(repr=False)
    profile: dict[str, Any] = field(repr=False)
    rows: int
    columns: list[dict[str, str]]
    data_sha256: str
    parse_errors: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """JSON-able metadata: id, name, rows, columns, sizes, hashes, parse errors."""
        return {"id": self.id, "name": self.name, "rows": self.rows, "columns": self.columns,
                "bytes": len(self.data), "data_sha256": self.data_sha256,
                "parse_errors": self.parse_errors, "pyarrow": pa.__version__}


def make_snapshot(name: str, df: pd.DataFrame, *, fingerprint: str) -> SnapshotData:
    """Serialise ``df`` to Parquet and profile it. ``fingerprint`` becomes the snapshot id.

    ``df.attrs["parse_errors"]`` (from ``read_source``) travels inside the Parquet file and
    comes back from :func:`read_snapshot_bytes`, so a snapshot validates like its source.
    The index is not kept (reset it first if it carries data).
    """
    if not fingerprint:
        raise DataError(f"snapshot {name!r}: fingerprint is empty; pass the file's sha256")
    parse_errors = dict(df.attrs.get("parse_errors") or {})
    frame = df.copy(deep=False)
    frame.attrs = {}
    frame.columns = [str(c) for c in frame.columns]
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"snapshot {name!r}: cannot store as Parquet (mixed types in a "
                        f"column?): {str(exc).splitlines()[0]}") from None
    meta = dict(table.schema.metadata or {})
    meta[_META_KEY] = json.dumps({"name": name, "id": fingerprint,
                                  "parse_errors": parse_errors}, sort_keys=True).encode()
    table = table.replace_schema_metadata(meta)
    buf = io.BytesIO()
    pq.write_table(table, buf, **PARQUET_OPTIONS)
    data = buf.getvalue()
    return SnapshotData(
        id=fingerprint, name=name, data=data, profile=make_profile(df), rows=len(df),
        columns=[{"name": str(c), "dtype": str(t)} for c, t in df.dtypes.items()],
        data_sha256=hashlib.sha256(data).hexdigest(), parse_errors=parse_errors)


def read_snapshot_bytes(data: bytes) -> pd.DataFrame:
    """The frame stored by :func:`make_snapshot`, with ``attrs["parse_errors"]`` restored."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"snapshot bytes are not Parquet: {str(exc).splitlines()[0]}") from None
    raw = (table.schema.metadata or {}).get(_META_KEY)
    df = table.to_pandas()
    df.attrs = {}
    if raw:
        df.attrs["parse_errors"] = json.loads(raw).get("parse_errors", {})
    return df
