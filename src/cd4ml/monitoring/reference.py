"""A reference profile: what a model version was trained on and what it answered on its
holdout, as exact column summaries, stored once per version at registration.

``features`` summarise the training rows' inputs (what a request carries, or for a
forecast the covariates its features come from); ``outputs`` summarise the model's
answers on the holdout (the reference for prediction drift). A reference is stored as one
Parquet file (a row per column and distinct value, the rest in the file's metadata):

>>> import pandas as pd
>>> ref = Reference.from_frame(pd.DataFrame({"age": [30, 40, 40], "city": ["a", "b", None]}))
>>> ref.kinds
{'age': 'numeric', 'city': 'categorical'}
>>> back = Reference.from_bytes(ref.to_bytes())
>>> back.features["city"].missing, back.features["age"].counts.tolist(), back.rows
(1, [1, 2], 3)
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.monitoring.drift import DriftReport, DriftSettings, compare_summaries
from cd4ml.monitoring.summary import ColumnSummary, Kind

__all__ = ["Reference", "summarise", "infer_kinds", "compare", "reference_of",
           "ReferenceLookup", "REFERENCE_FORMAT"]

#: Bumped when the stored layout changes.
REFERENCE_FORMAT = 1


def infer_kinds(df: pd.DataFrame) -> dict[str, Kind]:
    """``numeric`` for number columns, ``categorical`` for text, bool and category ones;
    dates are left out (compare them as derived numbers if they matter)."""
    kinds: dict[str, Kind] = {}
    for c in df.columns:
        t = df[c].dtype
        if pd.api.types.is_datetime64_any_dtype(t):
            continue
        if pd.api.types.is_bool_dtype(t) or not pd.api.types.is_numeric_dtype(t):
            kinds[str(c)] = "categorical"
        else:
            kinds[str(c)] = "numeric"
    return kinds


def summarise(df: pd.DataFrame, kinds: Mapping[str, Kind]) -> dict[str, ColumnSummary]:
    """One summary per column named in ``kinds`` that the frame holds."""
    return {c: ColumnSummary.of(df[c], k) for c, k in kinds.items() if c in df.columns}


@dataclass
class Reference:
    features: dict[str, ColumnSummary]
    outputs: dict[str, ColumnSummary] = field(default_factory=dict)
    rows: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def kinds(self) -> dict[str, str]:
        return {c: s.kind for c, s in self.features.items()}

    @classmethod
    def from_frame(cls, features: pd.DataFrame, *, kinds: Mapping[str, Kind] | None = None,
                   outputs: pd.DataFrame | None = None, **meta: Any) -> Reference:
        """The reference of a frame of inputs (and optionally of the holdout's outputs)."""
        kinds = dict(kinds) if kinds is not None else infer_kinds(features)
        outs = (summarise(outputs, {str(c): "numeric" for c in outputs.columns})
                if outputs is not None else {})
        meta.setdefault("created", time.time())
        return cls(summarise(features, kinds), outs, len(features), meta)

    # -- storage ----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts: list[pd.DataFrame] = []
        info: dict[str, Any] = {}
        for side, group in (("feature", self.features), ("output", self.outputs)):
            for name, s in group.items():
                info[f"{side}:{name}"] = {"kind": s.kind, "missing": s.missing}
                num = s.kind == "numeric"
                parts.append(pd.DataFrame({
                    "side": side, "column": name,
                    "number": s.values.astype(np.float64) if num else np.nan,
                    "label": None if num else s.values.astype(object),
                    "count": s.counts}))
        df = (pd.concat(parts, ignore_index=True) if parts else
              pd.DataFrame({"side": [], "column": [], "number": [], "label": [], "count": []}))
        schema = pa.schema([("side", pa.string()), ("column", pa.string()),
                            ("number", pa.float64()), ("label", pa.string()),
                            ("count", pa.int64())])
        table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
        table = table.replace_schema_metadata({"cd4ml.reference": json.dumps(
            {"format": REFERENCE_FORMAT, "rows": self.rows, "columns": info,
             "meta": self.meta}, default=str)})
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Reference:
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        head = json.loads(table.schema.metadata[b"cd4ml.reference"])
        if head.get("format") != REFERENCE_FORMAT:
            raise ValueError(f"reference format {head.get('format')!r}: this cd4ml reads "
                             f"format {REFERENCE_FORMAT}")
        df = table.to_pandas()
        groups: dict[str, dict[str, ColumnSummary]] = {"feature": {}, "output": {}}
        by = {k: g for k, g in df.groupby(["side", "column"], sort=False)}
        for key, info in head["columns"].items():
            side, name = key.split(":", 1)
            g = by.get((side, name))
            kind = info["kind"]
            if g is None:
                s = ColumnSummary.empty(kind)
                s = ColumnSummary(kind, s.values, s.counts, int(info["missing"]))
            else:
                vals = (g["number"].to_numpy(np.float64) if kind == "numeric"
                        else g["label"].to_numpy(dtype=object))
                s = ColumnSummary(kind, vals, g["count"].to_numpy(np.int64),
                                  int(info["missing"]))
            groups[side][name] = s
        return cls(groups["feature"], groups["output"], int(head["rows"]), head["meta"])


def compare(reference: Reference, current: pd.DataFrame | Mapping[str, ColumnSummary], *,
            settings: DriftSettings | None = None,
            columns: Iterable[str] | None = None) -> DriftReport:
    """Data drift of a frame (or of summaries already made) against the reference's
    features (``columns``: only those)."""
    ref = reference.features
    if columns is not None:
        wanted = list(columns)
        ref = {c: ref[c] for c in wanted if c in ref}
    cur = (summarise(current, {c: s.kind for c, s in ref.items()})
           if isinstance(current, pd.DataFrame) else current)
    return compare_summaries(ref, cur, settings)


@dataclass(frozen=True)
class ReferenceLookup:
    """A version's reference profile, or why there is none (``state`` ``"no reference"``:
    a version registered before reference profiles, or its profile is gone)."""

    reference: Reference | None
    state: str
    message: str = ""


def reference_of(version: Mapping[str, Any], artifacts: Any) -> ReferenceLookup:
    """The reference profile recorded in a version row's lineage (``cd4ml run`` stores one
    with every registration), read from the artifact store."""
    from cd4ml.errors import NotFoundError

    name = f"{version.get('model_name', '?')} v{version.get('version', '?')}"
    digest = (version.get("lineage") or {}).get("reference")
    if not digest:
        return ReferenceLookup(None, "no reference", (
            f"{name} has no reference profile: it was registered before cd4ml stored one "
            f"per version; run `cd4ml run` to register a version that has one"))
    try:
        data = artifacts.get_bytes(digest)
    except NotFoundError:
        return ReferenceLookup(None, "no reference", (
            f"{name}: its reference profile {digest[:12]} is not in the artifact store "
            f"(deleted?)"))
    return ReferenceLookup(Reference.from_bytes(data), "ok")
