"""What ``cd4ml init`` reads off a data file: its columns' types, the time column, the
series keys, a row id, and the task the target calls for — each decision with its reason.

The rules, in order (each can be overridden by an option of ``cd4ml init``):

- **time column** (``--time``): a date column (Parquet dates, or text that parses strictly
  as ISO 8601 dates in every present row, as ``cd4ml run`` parses ``dates``).
- **series keys** (``--series``): when the time column repeats, the fewest integer or text
  columns (at most 3, fewest distinct values first) that make (keys, time) unique.
- **task** (``--task auto``): a time column, series keys and a numeric target → forecast;
  else a target with 2 values → binary classification; 3 to :data:`MAX_CLASSES` values
  (integers, text or bools) → multiclass; numeric with more values → regression.
- **row id** (``--id``): an integer or text column with a distinct value in every row
  (:func:`cd4ml.evaluation.leakage.find_leaks`' identifiers; the first is the id, the
  others are left out).

>>> import pandas as pd
>>> df = pd.DataFrame({"d": ["2010-01-01", "2010-01-08"] * 2, "s": [1, 1, 2, 2],
...                    "y": [1.5, 2.0, 3.0, 4.5]})
>>> find_series(parse_time_columns(df)[0], "d", target="y")
['s']
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as pdt

from cd4ml.data import parse_dates
from cd4ml.data._types import column_type
from cd4ml.errors import ConfigError, DataError

__all__ = ["MAX_CLASSES", "TaskChoice", "parse_time_columns", "find_series", "choose_task",
           "check_target", "frequency_days"]

#: a target with at most this many distinct values (not floats) is a class label
MAX_CLASSES = 20
#: series keys have at most this share of distinct values per row
_MAX_KEY_SHARE = 0.5


@dataclass(frozen=True)
class TaskChoice:
    """The task, the class labels (classification) and why."""

    task: str
    classes: list[Any] | None
    why: str


def parse_time_columns(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``df`` with its date-like text columns parsed, and the names of all date columns.

    A text column is date-like when every present value parses strictly as an ISO 8601
    date (``cd4ml.data.parse_dates``, the parser ``cd4ml run`` uses for ``dates``).
    """
    out, dates = df.copy(), []
    for col in df.columns:
        s = df[col]
        if column_type(s) == "date":
            dates.append(str(col))
        elif (s.dtype == object or pdt.is_string_dtype(s.dtype)) and s.notna().any():
            parsed, bad = parse_dates(s)
            if not bad.any() and parsed.notna().any():
                out[col] = parsed
                dates.append(str(col))
    return out, dates


def _key_like(s: pd.Series) -> bool:
    return column_type(s) in ("int", "string", "bool") and not s.isna().any()


def find_series(df: pd.DataFrame, time: str, *, target: str) -> list[str] | None:
    """The fewest key-like columns that with ``time`` identify each row, or None when no
    combination of up to 3 does; ``[]`` when ``time`` alone is unique (one series)."""
    if not df.duplicated(subset=[time]).any():
        return []
    n = len(df)
    cands = [c for c in df.columns if c not in (time, target)
             and _key_like(df[c]) and df[c].nunique() <= max(1, _MAX_KEY_SHARE * n)]
    cands.sort(key=lambda c: df[c].nunique())
    for k in (1, 2, 3):
        for combo in combinations(cands, k):
            if not df.duplicated(subset=[*combo, time]).any():
                return list(combo)
    return None


def check_target(df: pd.DataFrame, target: str, file: str) -> pd.Series:
    """The target's present values; a one-line error when it is missing, empty or constant."""
    if target not in df.columns:
        sep = next((c for c in (";", "\t", "|") if len(df.columns) == 1
                    and c in str(df.columns[0])), None)
        hint = (f" (one column whose name holds {sep!r}: cd4ml reads comma-separated "
                f"files; save it with commas)" if sep else "")
        raise ConfigError(f"not a column of {file}; columns: "
                          f"{', '.join(map(str, df.columns))}{hint}", key="--target",
                          value=target)
    y = df[target].dropna()
    if y.empty:
        raise DataError(f"target {target!r} of {file} has no values: all {len(df):,} rows "
                        f"are missing; choose another --target")
    if len(y) < len(df):  # cd4ml run refuses them too: a label on every row
        first = int(np.flatnonzero(df[target].isna().to_numpy())[0])
        raise DataError(f"target {target!r} of {file} is missing in {len(df) - len(y):,} of "
                        f"{len(df):,} rows (first at row {first}); a run needs a target on "
                        f"every row: drop those rows or fill them")
    if y.nunique() == 1:
        raise DataError(f"target {target!r} of {file} is constant (every present value is "
                        f"{_label(y.iloc[0])!r}): there is nothing to learn; choose another "
                        f"--target")
    return y


def _integer_valued(y: pd.Series) -> bool:
    if pdt.is_bool_dtype(y.dtype) or pdt.is_integer_dtype(y.dtype):
        return True
    if pdt.is_float_dtype(y.dtype):
        return bool(np.all(np.mod(y.to_numpy(), 1) == 0))
    return False


def _label(v: Any) -> Any:
    """A class label as YAML writes it: numpy scalars as Python ones, integral floats as ints."""
    v = v.item() if hasattr(v, "item") else v
    return int(v) if isinstance(v, float) and v.is_integer() else v


def choose_task(y: pd.Series, target: str, *, asked: str, forecastable: str | None) -> TaskChoice:
    """The task for target values ``y`` (present only). ``forecastable`` is why a forecast
    is possible (a time column and series keys), or None; ``asked`` is ``--task``."""
    n = int(y.nunique())
    numeric = pdt.is_numeric_dtype(y.dtype) and not pdt.is_bool_dtype(y.dtype)
    shown = ", ".join(map(str, sorted(map(_label, y.unique()))[:MAX_CLASSES]))
    classes = sorted(map(_label, y.unique())) if n <= MAX_CLASSES else None
    if asked == "forecast" or (asked == "auto" and forecastable and numeric
                               and n > MAX_CLASSES):
        if not numeric:
            raise ConfigError(f"a forecast needs a numeric target; {target!r} is "
                              f"{column_type(y)}", key="--task", value="forecast")
        if not forecastable:
            raise ConfigError("a forecast needs a time column and series keys that identify "
                              "each row with it (give --time and --series)", key="--task",
                              value="forecast")
        return TaskChoice("forecast", None, f"{forecastable}, and the target {target!r} is "
                          f"numeric with {n:,} values")
    if asked == "classification" or (asked == "auto" and (
            n == 2 or (n <= MAX_CLASSES and (not numeric or _integer_valued(y))))):
        if classes is None:
            raise ConfigError(f"target {target!r} has {n:,} distinct values: too many "
                              f"classes (at most {MAX_CLASSES})", key="--task",
                              value="classification")
        kind = "binary" if n == 2 else f"multiclass, {n} classes"
        return TaskChoice("classification", classes,
                          f"the target {target!r} has {n} values ({shown}): {kind}")
    if not numeric:
        raise DataError(f"target {target!r} is text with {n:,} distinct values: too many "
                        f"for classes (at most {MAX_CLASSES}) and not a number for a "
                        f"regression; choose another --target")
    return TaskChoice("regression", None,
                      f"the target {target!r} is numeric with {n:,} distinct values")


def frequency_days(times: pd.Series) -> int:
    """The data's period in days: the most common gap between successive distinct times."""
    days = pd.Series(times.dropna().unique()).sort_values().diff().dropna().dt.days
    days = days[days > 0]
    if days.empty:
        raise DataError(f"time column {times.name!r} has a single distinct time: a forecast "
                        f"needs a history")
    return int(days.mode().iloc[0])
