"""Data: read sources, snapshot them, infer and check schemas, profile, split.

::

    read_source ─▶ make_snapshot (Parquet bytes + profile, id = file sha256)
                └▶ infer_schema / save_schema / load_schema ─▶ validate ─▶ ValidationReport
                                                              time_windows / group_split
                                                              assign_roles (tabular)

>>> import pandas as pd
>>> df = pd.DataFrame({"k": [1, 2, 2], "y": [1.0, -1.0, None]})
>>> schema = infer_schema(df, name="toy")
>>> validate(df.assign(y=[1.0, 2.0, 3.0]), schema).summary()
'toy: ok (3 rows, 2 columns)'
"""

from __future__ import annotations

from cd4ml.data.profile import profile
from cd4ml.data.schema import (Column, Schema, infer_schema, load_schema, save_schema,
                               schema_yaml)
from cd4ml.data.snapshot import SnapshotData, make_snapshot, read_snapshot_bytes
from cd4ml.data.sources import file_fingerprint, parse_dates, read_source
from cd4ml.data.split import Windows, group_split, time_windows
from cd4ml.data.tabular_split import RoleSplit, assign_roles
from cd4ml.data.validate import Failure, ValidationReport, validate

__all__ = [
    "read_source", "parse_dates", "file_fingerprint",
    "Column", "Schema", "infer_schema", "save_schema", "schema_yaml", "load_schema",
    "validate", "ValidationReport", "Failure",
    "profile",
    "SnapshotData", "make_snapshot", "read_snapshot_bytes",
    "Windows", "time_windows", "group_split",
    "RoleSplit", "assign_roles",
]
