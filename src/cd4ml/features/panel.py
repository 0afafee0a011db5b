"""The panel: every series on one dense time grid, with its joins, extended by the horizon.

The panel is what a model version carries as its history. Rows after the last observed
date (up to ``horizon`` periods) have no target but carry their ``known_ahead``
covariates, so the same feature code serves forecasts of the weeks after the data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cd4ml.config import DataConfig, FeaturesConfig
from cd4ml.errors import DataError

__all__ = ["build_panel", "panel_columns", "join_sources"]


def panel_columns(data: DataConfig, feats: FeaturesConfig) -> list[str]:
    """The raw columns a panel keeps: keys, time, target, covariates and static attributes."""
    cols = [*data.series, data.time, data.target]
    for c in [*feats.covariates, *feats.static]:
        if c not in cols:
            cols.append(c)
    return cols


def join_sources(main: pd.DataFrame, frames: dict[str, pd.DataFrame], data: DataConfig,
                 wanted: list[str] | None) -> pd.DataFrame:
    """``main`` left-joined with each of ``data.joins`` (keys checked unique); only the
    ``wanted`` columns of a joined source are kept (None: all of them)."""
    out = main
    for j in data.joins:
        right = frames[j.source]
        missing = [c for c in j.on if c not in right.columns or c not in out.columns]
        if missing:
            raise DataError(f"join with source {j.source!r}: key column(s) {missing} missing; "
                            f"it has {list(right.columns)}")
        cols = j.columns if j.columns is not None else [c for c in right.columns if c not in j.on]
        absent = [c for c in cols if c not in right.columns]
        if absent:
            raise DataError(f"join with source {j.source!r}: column(s) {absent} not in it; "
                            f"it has {list(right.columns)}")
        cols = [c for c in cols if wanted is None or c in wanted]
        if not cols:
            continue
        dup = right.duplicated(j.on)
        if dup.any():
            ex = right.loc[dup, j.on].head(3).to_dict("records")
            raise DataError(f"join with source {j.source!r}: keys {j.on} are not unique "
                            f"({int(dup.sum())} duplicated, e.g. {ex})")
        right = right[[*j.on, *cols]]
        out = out.merge(right, on=j.on, how="left", suffixes=("", "__j"))
        for c in cols:  # a column in both: the main source wins where it has a value
            if c + "__j" in out.columns:
                out[c] = out[c].where(out[c].notna(), out.pop(c + "__j"))
    return out


def build_panel(frames: dict[str, pd.DataFrame], data: DataConfig, feats: FeaturesConfig,
                ) -> pd.DataFrame:
    """Join the sources and lay every series on a dense grid of dates.

    The grid runs from the first date of the main source to its last date plus
    ``feats.horizon`` periods. Rows are sorted by series keys then time, so the panel
    reshapes to (series, dates) for the feature code.
    """
    main = frames[data.main]
    keys, time, target = data.series, data.time, data.target
    for c in [*keys, time, target]:
        if c not in main.columns:
            raise DataError(f"source {data.main!r}: column {c!r} missing; "
                            f"it has {list(main.columns)}")
    if main.empty:
        raise DataError(f"source {data.main!r} has no rows")
    main = main[main[time].notna()]
    dup = main.duplicated([*keys, time])
    if dup.any():
        ex = main.loc[dup, [*keys, time]].head(3).astype(str).to_dict("records")
        raise DataError(f"source {data.main!r}: {int(dup.sum())} rows repeat a "
                        f"({', '.join([*keys, time])}) key, e.g. {ex}")
    step = pd.Timedelta(days=data.frequency_days)
    start, end = main[time].min(), main[time].max()
    off = ((main[time] - start) % step) != pd.Timedelta(0)
    if off.any():
        bad = main.loc[off, time].iloc[0]
        raise DataError(f"source {data.main!r}: {time} = {bad.date()} is not on the grid of "
                        f"every {data.frequency_days} days from {start.date()}")
    dates = pd.date_range(start, end + feats.horizon * step, freq=step)
    series = main[keys].drop_duplicates().sort_values(keys).reset_index(drop=True)
    grid = pd.DataFrame({k: np.repeat(series[k].to_numpy(), len(dates)) for k in keys})
    grid[time] = np.tile(dates.to_numpy(), len(series))
    wanted = panel_columns(data, feats)
    main_cols = [c for c in main.columns if c in wanted]
    panel = grid.merge(main[main_cols], on=[*keys, time], how="left")
    panel = join_sources(panel, frames, data, wanted)
    missing = [c for c in wanted if c not in panel.columns]
    if missing:
        raise DataError(f"feature column(s) {missing} are in no source or join; "
                        f"available: {sorted(panel.columns)}")
    panel = panel[wanted].sort_values([*keys, time], kind="stable").reset_index(drop=True)
    panel.attrs["history_end"] = str(end.date())
    return panel
