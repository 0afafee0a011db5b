"""How long the tabular transform takes to encode inputs, per source, on real ACS rows.

Usage: python benchmarks/tabular_encode.py [--data ../shared/data/acs-employment-ma/employment.parquet]

Fits the transform on 2015 (schema: the PUMS codes declared, AGEP 0-99, as in the tests)
and times, with timeit (best of 7), the encoding of 2016 rows: one plain JSON record (the
per-request shortcut), 1,000 records (shortcut and field-by-field path), one and 1,000
rows of a 2-D matrix, and the whole year as a DataFrame (batch scoring, training). The
figures are indicative: they move with whatever else runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tabular_fixtures import INPUTS, acs_schema  # noqa: E402

from cd4ml.config import InputsConfig  # noqa: E402
from cd4ml.features.tabular import TabularTransform, tabular_spec  # noqa: E402


def best(fn, number: int) -> float:  # type: ignore[no-untyped-def]
    return min(timeit.repeat(fn, number=number, repeat=7)) / number


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path,
                    default=ROOT.parent / "shared/data/acs-employment-ma/employment.parquet")
    args = ap.parse_args()
    df = pd.read_parquet(args.data)
    train, hold = df[df.year == 2015], df[df.year == 2016]
    spec = tabular_spec([acs_schema()], train, InputsConfig(drop=["year"]), "employed", "id")
    t = TabularTransform.fit(spec, train)
    recs = json.loads(hold[INPUTS].head(1000).to_json(orient="records"))
    one = recs[:1]
    M = hold[INPUTS].head(1000).to_numpy(float)
    rows = [
        ("1 record (plain shortcut)", best(lambda: t.encode_records(one), 20000), 1),
        ("1 record (field-by-field path)", best(lambda: t.encoder.records(one), 2000), 1),
        ("1,000 records (plain shortcut)", best(lambda: t.encode_records(recs), 50), 1000),
        ("1,000 records (field-by-field path)", best(lambda: t.encoder.records(recs), 10),
         1000),
        ("1 matrix row", best(lambda: t.encode_matrix(M[:1]), 20000), 1),
        ("1,000 matrix rows", best(lambda: t.encode_matrix(M), 50), 1000),
        (f"{len(hold):,} frame rows (batch, training)", best(lambda: t.matrix(hold), 3),
         len(hold)),
    ]
    print(f"{'what':42} {'per call':>12} {'rows/s':>12}")
    for what, s, n in rows:
        per = f"{s * 1e6:.1f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms"
        print(f"{what:42} {per:>12} {n / s:>12,.0f}")


if __name__ == "__main__":
    main()
