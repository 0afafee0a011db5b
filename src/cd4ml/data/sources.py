"""Read a declared source (CSV, zipped or gzipped CSV, Parquet) into a DataFrame.

Date columns are parsed strictly (``%Y-%m-%d`` or ISO 8601). A value that is not a date in
that form becomes NaT and is recorded in ``df.attrs["parse_errors"]`` so that validation
reports it with examples, instead of the read failing or silently guessing day/month order.

>>> import tempfile
>>> from cd4ml.config import SourceConfig
>>> root = Path(tempfile.mkdtemp())
>>> _ = (root / "s.csv").write_text("k,d,y\\n1,2010-02-05,1.5\\n2,05/02/2010,2.0\\n")
>>> df = read_source("sales", SourceConfig(path="s.csv", dates=["d"]), root)
>>> df["d"].tolist()
[Timestamp('2010-02-05 00:00:00'), NaT]
>>> df.attrs["parse_errors"]
{'d': {'count': 1, 'examples': [{'row': 1, 'value': '05/02/2010'}]}}
>>> read_source("sales", SourceConfig(path="nope.csv"), root)  # doctest: +ELLIPSIS
Traceback (most recent call last):
cd4ml.errors.SourceError: source 'sales': file not found: .../nope.csv
"""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as pdt

from cd4ml.config import SourceConfig
from cd4ml.data._types import examples
from cd4ml.errors import SourceError
from cd4ml.store.fingerprint import file_fingerprint

__all__ = ["read_source", "parse_dates", "file_fingerprint", "source_format"]

_COMPRESSION = (".zip", ".gz", ".bz2", ".xz", ".zst")
_ISO_SHAPE = (r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?"
              r"(Z|[+-]\d{2}(:?\d{2})?)?")
_FORMATS = {".csv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}


def source_format(path: Path, declared: str | None = None) -> str:
    """``declared`` if given, else the format named by the extension (compression ignored).

    >>> source_format(Path("train.csv.zip")), source_format(Path("x.parquet"))
    ('csv', 'parquet')
    """
    if declared:
        return declared
    name = path.name.lower()
    for ext in _COMPRESSION:
        name = name.removesuffix(ext)
    fmt = _FORMATS.get(Path(name).suffix)
    if fmt is None:
        raise SourceError(f"cannot tell the format of {path.name}: set format: csv or "
                          f"parquet in the source's config")
    return fmt


def parse_dates(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Parse strictly as ``%Y-%m-%d``, else ISO 8601. Returns (dates, error mask).

    The mask marks values that were present but are not dates in that form; missing
    values are NaT without being errors.

    >>> d, bad = parse_dates(pd.Series(["2010-02-05", "2010-02-05T10:30", "5/2/2010", None]))
    >>> [str(x) for x in d], bad.tolist()
    (['2010-02-05 00:00:00', '2010-02-05 10:30:00', 'NaT', 'NaT'], [False, False, True, False])
    """
    present = raw.notna().to_numpy()
    if pdt.is_datetime64_any_dtype(raw.dtype):
        return raw, np.zeros(len(raw), dtype=bool)
    if raw.dtype == object and len(raw.dropna()) and raw.dropna().map(
            lambda v: isinstance(v, (dt.date, pd.Timestamp))).all():
        out = pd.to_datetime(raw, errors="coerce")  # datetime.date objects from Parquet
    else:
        text = raw.astype("str").where(raw.notna())
        out = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
        retry = out.isna().to_numpy() & present
        if retry.any():  # only text shaped like ISO 8601 (pandas also takes 2010/02/05)
            retry &= text.str.fullmatch(_ISO_SHAPE).to_numpy(dtype=bool, na_value=False)
        if retry.any():
            try:
                iso = pd.to_datetime(text[retry], format="ISO8601", errors="coerce")
            except ValueError:  # mixed time zones
                iso = pd.to_datetime(text[retry], format="ISO8601", errors="coerce", utc=True)
            if iso.notna().any():
                if getattr(iso.dt, "tz", None) is not None:
                    iso = iso.dt.tz_convert(None)
                out = out.where(~retry, iso.reindex(out.index))
    bad = present & out.isna().to_numpy()
    return out, bad


def _header(path: Path, fmt: str) -> list[str]:
    """The column names as the file has them (pandas renames a repeated CSV name 'a' to
    'a.1', which would hide the repeat)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    first = pd.read_csv(path, header=None, nrows=1, dtype="str", keep_default_na=False)
    return [str(v) for v in first.iloc[0]] if len(first) else []


def _no_repeated_names(name: str, path: Path, fmt: str) -> None:
    names = _header(path, fmt)
    seen: dict[str, int] = {}
    for i, col in enumerate(names):
        if col in seen:
            raise SourceError(f"source {name!r}: column name {col!r} appears twice in "
                              f"{path.name} (columns {seen[col] + 1} and {i + 1}); names "
                              f"must be unique")
        seen[col] = i


_SCALARS = (str, bool, int, float, np.generic, dt.date, dt.time, pd.Timestamp, bytes)


def _no_nested_values(name: str, path: Path, df: pd.DataFrame) -> None:
    """Refuse a Parquet column of lists, arrays or structs (no schema type fits one);
    the first 1,000 present values of each object column are looked at."""
    for col in df.columns:
        if df[col].dtype != object:
            continue
        for v in df[col].dropna().head(1000):
            if not isinstance(v, _SCALARS):
                raise SourceError(
                    f"source {name!r}: column {col!r} of {path.name} holds "
                    f"{type(v).__name__} values ({str(v)[:40]}); a column holds numbers, "
                    f"text, true/false or dates: flatten or drop it")


def _read(name: str, path: Path, fmt: str, dates: list[str]) -> pd.DataFrame:
    try:
        _no_repeated_names(name, path, fmt)
        if fmt == "parquet":
            df = pd.read_parquet(path)
            _no_nested_values(name, path, df)
            return df
        return pd.read_csv(path, dtype={c: "str" for c in dates}, low_memory=False)
    except pd.errors.EmptyDataError:
        raise SourceError(f"source {name!r}: file is empty (no header): {path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, zipfile.BadZipFile, OSError,
            ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"source {name!r}: cannot read {path} as {fmt}: {first}") from None
    except Exception as exc:  # pyarrow's errors have no common public base we can name
        if type(exc).__module__.startswith("pyarrow"):
            raise SourceError(f"source {name!r}: cannot read {path} as {fmt}: "
                              f"{str(exc).splitlines()[0]}") from None
        raise


def read_source(name: str, src: SourceConfig, root: Path) -> pd.DataFrame:
    """Read source ``name`` from ``root / src.path``; raise :class:`SourceError` if unusable.

    Unparseable dates are NaT plus ``df.attrs["parse_errors"][column] = {"count": n,
    "examples": [{"row": i, "value": raw}, ...]}`` (at most 5 examples, 0-based rows).
    """
    path = Path(src.path)
    path = path if path.is_absolute() else Path(root) / path
    if not path.is_file():
        raise SourceError(f"source {name!r}: file not found: {path}")
    if path.stat().st_size == 0:
        raise SourceError(f"source {name!r}: file is empty (0 bytes): {path}")
    fmt = source_format(path, src.format)
    df = _read(name, path, fmt, list(src.dates))
    if len(df.columns) == 0:
        raise SourceError(f"source {name!r}: file has no columns: {path}")
    if len(df) == 0:
        raise SourceError(f"source {name!r}: file has a header but no rows: {path}")
    missing = [c for c in src.dates if c not in df.columns]
    if missing:
        raise SourceError(f"source {name!r}: date column {missing[0]!r} is not in {path.name}; "
                          f"columns: {', '.join(map(str, df.columns))}")
    errors: dict[str, Any] = {}
    for col in src.dates:
        raw = df[col]
        parsed, bad = parse_dates(raw)
        df[col] = parsed
        if bad.any():
            errors[col] = {"count": int(bad.sum()), "examples": examples(bad, raw)}
    df.attrs["parse_errors"] = errors
    return df


