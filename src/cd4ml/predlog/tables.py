"""Features by reference: a loaded version's feature matrix as the log writes it
(:class:`FeatureTable`) and reads it back (:class:`TableReader`).

A server computes the features of every servable (series, date) when a version loads
and looks rows up per request, so a logged record needs only the row numbers. A segment
stores, per table, its keys (``feature_tables``: names, series, dates) and the vector of
every row its blocks reference, once (``feature_rows``, written in the transaction of
the first block that references the row); readers join them back.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from cd4ml.errors import Cd4mlError
from cd4ml.predlog.segments import dumps, loads

__all__ = ["FeatureTable", "TableReader"]


class FeatureTable:
    """A loaded model version's feature matrix, which the log stores by reference.

    A server computes the features of every servable row when a version loads and looks
    rows up per request; a record then needs only the row numbers. The writer stores each
    row's vector once per segment (the first time a flush references it, in the same
    transaction as the block), and ``inputs`` turns a row number back into the validated
    request fields: series keys and date. The bytes stored are those of ``X``, the very
    array the model was called on, not features recomputed when the log is read.
    """

    __slots__ = ("key", "model", "version", "X", "names", "inputs")

    def __init__(self, model: str, version: int | None, X: Any, names: Sequence[str],
                 fields: Sequence[str], series: Sequence[Sequence[Any]],
                 dates: Sequence[str]) -> None:
        if X.dtype != np.dtype("<f4") or X.ndim != 2 or not X.flags.c_contiguous:
            raise ValueError("FeatureTable: X must be a C-contiguous float32 matrix")
        if X.shape != (len(series) * len(dates), len(names)):
            raise ValueError(f"FeatureTable: X is {X.shape}, expected "
                             f"({len(series)} series x {len(dates)} dates, {len(names)})")
        self.key = uuid.uuid4().hex[:16]
        self.model, self.version, self.X, self.names = model, version, X, list(names)
        #: row r is series r // n_dates at date r % n_dates; keys by field, then the dates
        self.inputs = dumps({"fields": list(fields), "n_dates": len(dates),
                              "series": {f: [s[j] for s in series]
                                         for j, f in enumerate(fields[:-1])},
                              "dates": list(dates)})

    @classmethod
    def of(cls, model: Any) -> FeatureTable:
        """The table of a loaded model version (a ``ServableModel``)."""
        fields, series, dates = model.row_keys()
        return cls(model.name, model.version, model.X, model.predictor.feature_names,
                   fields, series, dates)


class TableReader:
    """The feature tables of the segments a read goes through, each loaded once: a
    row's request fields, and a segment's stored feature vectors."""

    def __init__(self) -> None:
        self._inputs: dict[str, tuple[list[str], int, dict[str, Any], Any]] = {}
        self._names: dict[tuple[Any, str], list[str]] = {}
        self._X: dict[tuple[Any, str], tuple[Any, Any]] = {}

    def _load(self, con: sqlite3.Connection, tab: str) -> None:
        row = con.execute("SELECT names, inputs FROM feature_tables WHERE tab = ?",
                          (tab,)).fetchone()
        if row is None:
            raise Cd4mlError(f"prediction log: feature table {tab} is missing from its "
                             f"segment (the segment is damaged)")
        self._names[(con, tab)] = json.loads(row[0])
        if tab not in self._inputs:
            d = loads(row[1])
            self._inputs[tab] = (d["fields"], d["n_dates"],
                                 {f: np.asarray(v) for f, v in d["series"].items()},
                                 np.asarray(d["dates"], dtype=object))

    def inputs(self, con: sqlite3.Connection, tab: str, rows: Any) -> dict[str, Any]:
        """The request fields of table rows, a column per field."""
        if tab not in self._inputs:
            self._load(con, tab)
        fields, n_dates, series, dates = self._inputs[tab]
        s = rows // n_dates
        out = {f.lower(): series[f][s] for f in fields[:-1]}
        out[fields[-1].lower()] = dates[rows % n_dates]
        return out

    def input_lists(self, con: sqlite3.Connection, tab: str, rows: Any) -> dict[str, list[Any]]:
        """:meth:`inputs` as lists of Python values (what ``query`` returns)."""
        return {f: v.tolist() for f, v in self.inputs(con, tab, rows).items()}

    def features(self, con: sqlite3.Connection, tab: str, rows: Any) -> tuple[list[str], Any]:
        """Feature names and the vectors of table rows, as this segment stores them.

        Only the rows the segment references are loaded (sorted, found by binary search),
        and only for the segment being read: a read of many segments holds one at a time.
        """
        key = (con, tab)
        if key not in self._X:
            self._X = {k: v for k, v in self._X.items() if k[0] is con}
            if key not in self._names:
                self._load(con, tab)
            width = len(self._names[key])
            parts = con.execute("SELECT rows, data FROM feature_rows WHERE tab = ?",
                                (tab,)).fetchall()
            have = np.concatenate([np.frombuffer(r, "<i4") for r, _ in parts] or
                                  [np.empty(0, "<i4")])
            data = np.concatenate([np.frombuffer(d, "<f4") for _, d in parts] or
                                  [np.empty(0, "<f4")]).reshape(-1, width)
            order = np.argsort(have, kind="stable")
            self._X[key] = (have[order], data[order])
        have, data = self._X[key]
        at = np.searchsorted(have, rows)
        if len(rows) and (at.max() >= len(have) or (have[at] != rows).any()):
            raise Cd4mlError(f"prediction log: rows of feature table {tab} are missing from "
                             f"their segment (the segment is damaged)")
        return self._names[key], data[at]

    def table_names(self, con: sqlite3.Connection, tab: str) -> list[str]:
        """The feature names of a table (what :meth:`features` gives), without its rows."""
        if (con, tab) not in self._names:
            self._load(con, tab)
        return self._names[(con, tab)]

    def names(self, con: sqlite3.Connection, model: str, version: int | None,
              n_features: int) -> list[str]:
        """The names of inline features (records without a table)."""
        key = (con, f"{model}\0{version}")
        if key not in self._names:
            row = con.execute("SELECT names FROM feature_names WHERE model = ? AND "
                              "version IS ?", (model, version)).fetchone()
            self._names[key] = json.loads(row[0]) if row else []
        names = self._names[key]
        return names if len(names) == n_features else [f"f{i}" for i in range(n_features)]
