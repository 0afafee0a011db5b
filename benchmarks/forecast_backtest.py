"""Backtests of the Walmart recipe: the project run on the real data cut at given dates.

Usage: python benchmarks/forecast_backtest.py [--data ../shared/data/walmart]
           [--cuts 2011-10-28,2012-01-27,2012-04-27] [--holdouts 13,26,39]
           [--set key.path=value ...] [--no-default] [--out benchmarks/results]

For each cut and holdout length, a fresh copy of examples/walmart whose sales end at the
cut runs `cd4ml run --json` as a user would, with ``split.holdout_periods`` set; every
choice (selection, fallback weights, search) is made on the weeks before that holdout
(the pipeline's validation window and the training window before it), and the holdout
only judges. Then the default split on all the data. The gate settings are the
example's. A cut whose data is too short for the split is reported with the pipeline's
refusal. Prints a table (the selected recipe's WMAE, the model alone's where it gave way,
seasonal naive's, the gate's verdict, whether the holdout spans Thanksgiving or
Christmas) and writes it as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FILES = ("train.csv.zip", "features.csv", "stores.csv")


def _project(dest: Path, data: Path, cut: str | None) -> Path:
    shutil.copytree(ROOT / "examples" / "walmart", dest,
                    ignore=shutil.ignore_patterns(".cd4ml", "data"))
    (dest / "data").mkdir()
    for f in FILES[1:]:
        shutil.copyfile(data / f, dest / "data" / f)
    if cut is None:
        shutil.copyfile(data / FILES[0], dest / "data" / FILES[0])
    else:
        sales = pd.read_csv(data / FILES[0])
        sales = sales[pd.to_datetime(sales.Date) <= pd.Timestamp(cut)]
        with zipfile.ZipFile(dest / "data" / FILES[0], "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("train.csv", sales.to_csv(index=False))
    return dest


def _holidays_in(start: str, end: str) -> list[str]:
    from cd4ml.features.holidays import christmas, thanksgiving

    lo, hi = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    found = []
    for y in range(lo.year, hi.year + 1):
        for name, day in (("Thanksgiving", thanksgiving(y)), ("Christmas", christmas(y))):
            # the week holding the day ends at most 6 days after it
            if lo <= day + dt.timedelta(days=6) and day <= hi:
                found.append(f"{name} {y}")
    return found


def _windows(data: Path, cut: str | None, holdout: int, sets: list[str]) -> dict[str, str]:
    """The split's windows (as the pipeline counts them: whole weeks back from the last
    week with sales)."""
    import yaml

    cfg = yaml.safe_load((ROOT / "examples" / "walmart" / "cd4ml.yaml").read_text())
    val = int(cfg["split"]["validation_periods"])
    for s in sets:
        if s.startswith("split.validation_periods="):
            val = int(s.split("=", 1)[1])
    end = pd.Timestamp(cut) if cut else pd.to_datetime(
        pd.read_csv(data / FILES[0], usecols=["Date"]).Date).max()
    week = pd.Timedelta(days=7)
    h0 = end - (holdout - 1) * week
    v1 = h0 - week
    return {"validation_start": str((v1 - (val - 1) * week).date()),
            "validation_end": str(v1.date()), "holdout_start": str(h0.date()),
            "holdout_end": str(end.date())}


def backtest(data: Path, cut: str | None, holdout: int, sets: list[str]) -> dict[str, Any]:
    """One run; its figures, or the pipeline's refusal."""
    with tempfile.TemporaryDirectory(prefix="cd4ml-backtest-") as tmp:
        proj = _project(Path(tmp) / "walmart", data, cut)
        args = [f"split.holdout_periods={holdout}", *sets]
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "cd4ml.cli", "run", "-p", str(proj),
                              "--json", *sum((["--set", s] for s in args), [])],
                             capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    row: dict[str, Any] = {"cut": cut or "all data", "holdout_weeks": holdout,
                           "seconds": round(seconds, 1)}
    if res.returncode != 0:
        row["refused"] = (res.stderr.strip().splitlines() or ["(no message)"])[-1]
        return row
    doc = json.loads(res.stdout)
    m, gate = doc["metrics"], doc.get("gate") or {}
    windows = _windows(data, cut, holdout, sets)
    row.update({
        "selected": doc.get("selected"),
        "wmae": m.get("holdout.selected.wmae"),
        "wmae_without_fallback": m.get("holdout.selected.wmae_without_fallback"),
        "seasonal_naive": m.get("holdout.seasonal_naive.wmae"),
        "validation_wmae": (m.get(f"validation.{doc.get('selected')}.wmae")
                            if doc.get("selected") else None),
        "validation_wmae_without_fallback": m.get(
            f"validation.{doc.get('selected')}.wmae_without_fallback"),
        "validation_seasonal_naive": m.get("validation.seasonal_naive.wmae"),
        "gate": "passed" if gate.get("passed") else "failed",
        "gate_failed_rules": [r["rule"] for r in gate.get("rules", []) if not r["passed"]],
        **{k: windows.get(k) for k in ("validation_start", "validation_end",
                                       "holdout_start", "holdout_end")},
    })
    if row.get("holdout_start"):
        row["holidays"] = _holidays_in(row["holdout_start"], row["holdout_end"])
    return row


def _table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    def f(v: Any) -> str:
        return "-" if v is None else f"{v:,.1f}" if isinstance(v, float) else str(v)

    t = Table("cut", "holdout", "weeks", "selected", "WMAE", "alone", "naive", "vs naive",
              "gate", "holidays", title="Walmart backtests (every choice before the holdout)")
    for r in rows:
        if "refused" in r:
            t.add_row(r["cut"], "-", str(r["holdout_weeks"]), "refused: " + r["refused"],
                      *["-"] * 6)
            continue
        ratio = (f"{(r['wmae'] / r['seasonal_naive'] - 1) * 100:+.1f} %"
                 if r.get("wmae") and r.get("seasonal_naive") else "-")
        t.add_row(r["cut"], f"{r['holdout_start']}..{r['holdout_end']}",
                  str(r["holdout_weeks"]), f(r["selected"]), f(r["wmae"]),
                  f(r["wmae_without_fallback"]), f(r["seasonal_naive"]), ratio, r["gate"],
                  ", ".join(r.get("holidays") or []) or "-")
    Console(width=160).print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "walmart")
    ap.add_argument("--cuts", default="2011-10-28,2012-01-27,2012-04-27")
    ap.add_argument("--holdouts", default="13,26,39")
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="a config override for every run (key.path=value)")
    ap.add_argument("--no-default", action="store_true", help="skip the default split")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    if not (args.data / FILES[0]).is_file():
        sys.exit(f"full Walmart data not found in {args.data}")
    dates = pd.to_datetime(pd.read_csv(args.data / FILES[0], usecols=["Date"]).Date)
    first, last = dates.min(), dates.max()
    cuts = [c.strip() for c in args.cuts.split(",") if c.strip()]
    for c in cuts:
        try:
            when = pd.Timestamp(c)
        except ValueError:
            sys.exit(f"--cuts = {c!r}: not a date (YYYY-MM-DD)")
        if not first <= when <= last:
            sys.exit(f"--cuts = {c!r}: outside the data, whose weeks run from "
                     f"{first.date()} to {last.date()}")
    for h in args.holdouts.split(","):
        if not h.strip().isdigit() or int(h) < 1:
            sys.exit(f"--holdouts = {h!r}: expected whole numbers of weeks >= 1")
    plan = [(c, int(h)) for c in cuts for h in args.holdouts.split(",")]
    if not args.no_default:
        plan.append((None, 39))
    rows = []
    for i, (cut, h) in enumerate(plan, 1):
        print(f"[{i}/{len(plan)}] cut {cut or 'none (all data)'}, holdout {h} weeks ...",
              flush=True)
        rows.append(backtest(args.data, cut, h, args.sets))
        r = rows[-1]
        print("  " + (f"refused: {r['refused']}" if "refused" in r else
                      f"WMAE {r['wmae']:,.1f} vs seasonal naive {r['seasonal_naive']:,.1f}, "
                      f"gate {r['gate']} ({r['seconds']:.0f} s)"), flush=True)
    _table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H%M")
    path = args.out / f"forecast_backtest-{stamp}.json"
    path.write_text(json.dumps({"sets": args.sets, "rows": rows}, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
