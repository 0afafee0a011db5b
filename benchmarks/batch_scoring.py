"""Throughput of batch scoring (`cd4ml predict`) on a large generated input.

Usage: python benchmarks/batch_scoring.py [-p examples/walmart] [--rows 2000000]
                                          [--format parquet|csv] [--chunk-rows 100000]

Needs a registered model in the project (`make demo` or `cd4ml run -p examples/walmart`).
Generates ``--rows`` rows by drawing (seeded) from every servable (store, dept, date) of
the model, writes them to a temporary Parquet or CSV file, scores them with
``cd4ml.serving.batch.score_file`` and prints rows/s and the peak RSS of the process.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def servable_table(model, n: int, seed: int = 0, piece: int = 500_000):
    """Tables of ``piece`` rows drawn from the model's servable (series, date) pairs."""
    keys = sorted(model.series_index)
    dates = np.array([str((model.start + k * model.step).date())
                      for k in range(model.n_dates)], dtype=object)
    cols = [c for c in model.fields.values() if c != model.spec.time]
    rng = np.random.default_rng(seed)
    for lo in range(0, n, piece):
        m = min(piece, n - lo)
        s = rng.integers(len(keys), size=m)
        d = rng.integers(len(dates), size=m)
        data = {c: pa.array([keys[i][j] for i in s]) for j, c in enumerate(cols)}
        data[model.spec.time] = pa.array(dates[d], pa.string())
        data["row_id"] = pa.array(np.arange(lo, lo + m))
        yield pa.table(data)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-p", "--project", type=Path, default=ROOT / "examples" / "walmart")
    ap.add_argument("--model", default=None,
                    help="NAME@alias (default: models.name@serving.alias)")
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    ap.add_argument("--chunk-rows", type=int, default=100_000)
    args = ap.parse_args()

    from cd4ml.config import load_config
    from cd4ml.errors import Cd4mlError
    from cd4ml.registry.loader import load_model
    from cd4ml.serving.batch import score_file

    try:
        cfg, _ = load_config(args.project.resolve())
        uri = args.model or f"{cfg.models.name}@{cfg.serving.alias}"
        t0 = time.perf_counter()
        model = load_model(uri, project_dir=args.project)
    except Cd4mlError as exc:
        sys.exit(f"cannot load the model: {exc} (train one first: cd4ml run -p {args.project})")
    print(f"model {model.name} v{model.version} loaded in {time.perf_counter() - t0:.1f}s; "
          f"{len(model.X):,} servable rows")
    with tempfile.TemporaryDirectory(prefix="cd4ml-batch-") as tmp:
        src = Path(tmp) / f"rows.{args.format}"
        t0 = time.perf_counter()
        writer = None
        for t in servable_table(model, args.rows):
            if args.format == "parquet":
                writer = writer or pq.ParquetWriter(src, t.schema)
                writer.write_table(t)
            else:
                writer = writer or pacsv.CSVWriter(src, t.schema)
                writer.write_table(t)
        if writer is not None:
            writer.close()
        print(f"generated {args.rows:,} rows ({src.stat().st_size / 1e6:,.1f} MB "
              f"{args.format}) in {time.perf_counter() - t0:.1f}s")
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        s = score_file(model, src, Path(tmp) / "scored.parquet", chunk_rows=args.chunk_rows)
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"scored {s['rows']:,} rows in {s['seconds']:.2f}s: {s['rows_per_s']:,.0f} rows/s "
          f"(chunks of {args.chunk_rows:,}; peak RSS {rss0:,.0f} -> {rss1:,.0f} MB)")


if __name__ == "__main__":
    main()
