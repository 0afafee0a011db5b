"""The frames of the monitoring benchmark, written once to Parquet in a cache folder.

Every tool's process reads the same bytes before its timing starts. Runs in the cd4ml venv
(LightGBM scores the ACS rows for CBPE); the peers only read the files.

- Walmart: ``train.csv.zip`` joined with ``features.csv`` on (Store, Date, IsHoliday) and
  ``stores.csv`` on Store; reference = rows with Date < 2011-11-01 (267,184), current = the
  rest (154,386). MarkDown1-5 are all missing in the reference (the real onset): cd4ml and
  NannyML get that data as it is; Evidently refuses an all-missing reference column, so a
  second variant has MarkDown1-5 filled with 0 (reference and current) for it. Replicated:
  reference and current each x10 (4.2 M rows in all) and x25 (10.5 M).
- ACS employment: features = every column but ``id``, ``employed`` (the target) and
  ``year``: 16. Drift: reference = 2015 (68,785), current = 2016-2018 (208,892), and x10.
  A plain LightGBM (defaults, seeded) fitted on 2015 scores every row; ``y_pred_proba``,
  ``y_pred`` (proba >= 0.5) and ``employed`` are stored with the features. CBPE: reference =
  2016 (the holdout: labelled, with predictions), analysis = 2017-2018 in chunks of 10,000;
  and the issue's hard case, 2017-2018 people aged 16 and over sorted by AGEP.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["SIZES", "QUICK", "Size", "Case", "ensure_frames", "WALMART_NUM", "WALMART_CAT",
           "ACS_FEATURES", "ACS_NUM", "ACS_CAT"]

FRAMES_VERSION = "1"  # bump when a frame's definition changes: the cache is rebuilt
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
WALMART_CUT = "2011-11-01"
MARKDOWNS = [f"MarkDown{i}" for i in range(1, 6)]
#: the compared Walmart columns (Date is the time axis, not compared) and their types
WALMART_NUM = ["Weekly_Sales", "Temperature", "Fuel_Price", *MARKDOWNS, "CPI", "Unemployment",
               "Size"]
WALMART_CAT = ["Store", "Dept", "IsHoliday", "Type"]
ACS_FEATURES = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
                "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]
ACS_NUM = ["AGEP"]  # age in years; the others are ACS PUMS category codes
ACS_CAT = [c for c in ACS_FEATURES if c not in ACS_NUM]
ACS_TARGET, ACS_PROBA, ACS_PRED = "employed", "y_pred_proba", "y_pred"
ACS_SEED = 13
CHUNK = 10_000


@dataclass(frozen=True)
class Size:
    name: str
    dataset: str  # "walmart" | "acs"
    factor: int   # reference and current each replicated this many times
    label: str


SIZES = {s.name: s for s in [
    Size("walmart", "walmart", 1, "Walmart 0.42 M rows"),
    Size("walmart-4.2m", "walmart", 10, "Walmart x10, 4.2 M rows"),
    Size("walmart-10.5m", "walmart", 25, "Walmart x25, 10.5 M rows"),
    Size("acs", "acs", 1, "ACS 2015 vs 2016-2018, 0.28 M rows"),
    Size("acs-x10", "acs", 10, "ACS x10, 2.8 M rows"),
]}
QUICK = ["walmart", "acs"]


@dataclass
class Case:
    """One comparison handed to every tool: paths of a frame pair and the column types."""

    size: str
    task: str  # "drift" | "cbpe"
    name: str
    reference: str
    current: str
    numerical: list[str]
    categorical: list[str]
    rows: dict[str, int]
    #: per tool, the frame pair it gets instead (Evidently: MarkDowns filled with 0)
    variants: dict[str, dict[str, str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def job(self, tool: str) -> dict[str, Any]:
        d = asdict(self)
        d.update(self.variants.get(tool, {}))
        d.pop("variants")
        d["tool"] = tool
        return d


def _write(df: pd.DataFrame, path: Path, factor: int = 1) -> int:
    """Write ``df`` replicated ``factor`` times (row groups of one copy each)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    with pq.ParquetWriter(path, table.schema) as w:
        for _ in range(factor):
            w.write_table(table)
    return len(df) * factor


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def walmart_frames(data: Path = SHARED / "walmart") -> tuple[pd.DataFrame, pd.DataFrame]:
    train = pd.read_csv(data / "train.csv.zip")
    features = pd.read_csv(data / "features.csv")
    stores = pd.read_csv(data / "stores.csv")
    df = (train.merge(features, on=["Store", "Date", "IsHoliday"], how="left")
          .merge(stores, on="Store", how="left"))
    df["Date"] = pd.to_datetime(df["Date"])
    df["Type"] = df["Type"].astype(object)  # plain strings for every pandas (2 and 3)
    df = df.sort_values(["Date", "Store", "Dept"], kind="stable").reset_index(drop=True)
    cut = pd.Timestamp(WALMART_CUT)
    return df[df["Date"] < cut].reset_index(drop=True), df[df["Date"] >= cut].reset_index(
        drop=True)


def acs_scored(path: Path = SHARED / "acs-employment-ma" / "employment.parquet",
               ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every ACS row with the scores of a plain LightGBM fitted on 2015."""
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    df = pd.read_parquet(path).sort_values(["year", "id"], kind="stable").reset_index(drop=True)
    train = df[df["year"] == 2015]
    model = lgb.LGBMClassifier(random_state=ACS_SEED, deterministic=True, n_jobs=2,
                               verbose=-1)
    model.fit(train[ACS_FEATURES], train[ACS_TARGET])
    df[ACS_PROBA] = model.predict_proba(df[ACS_FEATURES])[:, 1]
    df[ACS_PRED] = (df[ACS_PROBA] >= 0.5).astype(np.int64)
    info = {"model": "lightgbm.LGBMClassifier defaults", "lightgbm": lgb.__version__,
            "random_state": ACS_SEED, "trained_on": "2015",
            "auc_by_year": {int(y): float(roc_auc_score(g[ACS_TARGET], g[ACS_PROBA]))
                            for y, g in df.groupby("year")}}
    return df, info


def _build(size: Size, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    k = size.factor
    files: dict[str, int] = {}
    extra: dict[str, Any] = {}
    if size.dataset == "walmart":
        ref, cur = walmart_frames()
        files["reference.parquet"] = _write(ref, folder / "reference.parquet", k)
        files["current.parquet"] = _write(cur, folder / "current.parquet", k)
        for name, part in (("reference-filled.parquet", ref), ("current-filled.parquet", cur)):
            files[name] = _write(part.fillna({m: 0.0 for m in MARKDOWNS}), folder / name, k)
    else:
        df, extra = acs_scored()
        cols = ["id", *ACS_FEATURES, ACS_TARGET, ACS_PROBA, ACS_PRED, "year"]
        df = df[cols]
        y = df["year"]
        parts = {"reference.parquet": df[y == 2015], "current.parquet": df[y >= 2016],
                 "cbpe-reference.parquet": df[y == 2016],
                 "cbpe-analysis.parquet": df[y >= 2017]}
        if k == 1:  # the hard case at its real size only: sorting a replica changes nothing
            old = df[(y >= 2017) & (df["AGEP"] >= 16)]
            parts["cbpe-sorted-analysis.parquet"] = old.sort_values(["AGEP", "id"],
                                                                    kind="stable")
        for name, part in parts.items():
            files[name] = _write(part.reset_index(drop=True), folder / name, k)
    return {"version": FRAMES_VERSION, "size": asdict(size), "rows": files,
            "sha256_16": {n: _sha(folder / n) for n in files}, **extra}


def ensure_frames(size: Size, cache: Path, *, console: Any = None) -> list[Case]:
    """The cases of one size, their frames written to ``cache/<size>`` when missing."""
    folder = cache / f"v{FRAMES_VERSION}" / size.name
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        if console is not None:
            console.print(f"writing the frames of {size.label} to {folder}")
        doc = _build(size, folder)
        manifest.write_text(json.dumps(doc, indent=1))
    doc = json.loads(manifest.read_text())
    rows = doc["rows"]

    def p(name: str) -> str:
        return str(folder / name)

    if size.dataset == "walmart":
        filled = {"reference": p("reference-filled.parquet"),
                  "current": p("current-filled.parquet")}
        return [Case(size.name, "drift", "walmart drift", p("reference.parquet"),
                     p("current.parquet"), WALMART_NUM, WALMART_CAT,
                     {"reference": rows["reference.parquet"],
                      "current": rows["current.parquet"]},
                     variants={"evidently": filled}, extra={"chunk_size": CHUNK})]
    cases = [Case(size.name, "drift", "acs drift", p("reference.parquet"), p("current.parquet"),
                  ACS_NUM, ACS_CAT, {"reference": rows["reference.parquet"],
                                     "current": rows["current.parquet"]},
                  extra={"chunk_size": CHUNK, "prediction": ACS_PROBA})]
    cbpe = {"chunk_size": CHUNK, "y_true": ACS_TARGET, "y_pred_proba": ACS_PROBA,
            "y_pred": ACS_PRED, "model": {k: v for k, v in doc.items()
                                          if k in ("model", "lightgbm", "auc_by_year")}}
    cases.append(Case(size.name, "cbpe", "acs cbpe", p("cbpe-reference.parquet"),
                      p("cbpe-analysis.parquet"), ACS_NUM, ACS_CAT,
                      {"reference": rows["cbpe-reference.parquet"],
                       "current": rows["cbpe-analysis.parquet"]}, extra=cbpe))
    if "cbpe-sorted-analysis.parquet" in rows:
        cases.append(Case(size.name, "cbpe", "acs cbpe sorted by AGEP",
                          p("cbpe-reference.parquet"), p("cbpe-sorted-analysis.parquet"),
                          ACS_NUM, ACS_CAT, {"reference": rows["cbpe-reference.parquet"],
                                             "current": rows["cbpe-sorted-analysis.parquet"]},
                          extra=cbpe))
    return cases
