"""A forecast model's page also draws one series: its history and the model's forecast.

The version is loaded as the server loads it (``cd4ml.registry.loader.load_version``:
hashes verified, features of every servable row computed once), and kept for the next
view (:class:`ServableCache`, one version at a time: a forecast servable holds every
series' features). The history is the one bundled at training (the bundle's Parquet
file, ``manifest["history"]``): the weeks the model learned from, up to its
``history_end``; the forecast is ``predict`` on every servable date after it, as
``/predict`` answers them.

A series is chosen by its key fields in the query (``?store=1&dept=3``, the request
fields' names); without them, the series with the largest mean target.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping
from typing import Any

import pandas as pd

from cd4ml.errors import RequestError

__all__ = ["ServableCache", "series_forecast"]


class ServableCache:
    """The last forecast version loaded, by digest (thread-safe: pages run in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: str | None = None
        self._value: tuple[Any, pd.DataFrame] | None = None

    def get(self, stores: Any, row: dict[str, Any], *, forecast_table: bool = True,
            ) -> tuple[Any, pd.DataFrame]:
        """(the servable, its bundled history) of a version row."""
        from cd4ml.registry.loader import load_version

        with self._lock:
            if self._key == row["digest"] and self._value is not None:
                return self._value
            model = load_version(stores.metadata, stores.artifacts, row["model_name"],
                                 row["version"], forecast_table=forecast_table)
            manifest = stores.artifacts.get_json(row["digest"])
            history = pd.read_parquet(io.BytesIO(
                stores.artifacts.get_bytes(manifest["history"]["digest"])))
            self._key, self._value = row["digest"], (model, history)
            return self._value


def _value(field: str, text: str, numeric: bool) -> Any:
    if not numeric:
        return text
    try:
        v = float(text)
    except ValueError:
        raise RequestError(f"query parameter {field!r} = {text!r}: expected a number",
                           errors=[{"field": field, "value": text,
                                    "problem": "expected a number"}]) from None
    return int(v) if v.is_integer() else v


def series_forecast(model: Any, history: pd.DataFrame, query: Mapping[str, str],
                    ) -> dict[str, Any]:
    """The chosen series' history (dates, target) and forecast (dates after the
    history's end, predictions); a RequestError naming the field for a series the
    model never saw."""
    fields, series, _dates = model.row_keys()
    keys, time_field = fields[:-1], fields[-1]
    spec = model.spec
    cols = [model.fields[f] for f in keys]
    if any(f in query for f in keys):
        missing = [f for f in keys if f not in query]
        if missing:
            raise RequestError(f"query parameter {missing[0]!r} is missing: a series is "
                               f"named by {keys}", errors=[{"field": missing[0],
                                                            "problem": "required"}])
        chosen = tuple(_value(f, query[f], model.numeric[f]) for f in keys)
        if chosen not in set(series):
            desc = ", ".join(f"{f}={v!r}" for f, v in zip(keys, chosen, strict=True))
            raise RequestError(f"query parameters {', '.join(keys)}: series {desc} is not "
                               f"in the model's history",
                               errors=[{"field": keys[0], "value": desc,
                                        "problem": "unknown series"}])
    else:
        means = history.groupby(cols)[spec.target].mean()
        best = means.idxmax() if len(means) else series[0]
        best = best if isinstance(best, tuple) else (best,)
        chosen = tuple(int(v) if isinstance(v, float) and v.is_integer() else v
                       for v in best)
    mask = pd.Series(True, index=history.index)
    for c, v in zip(cols, chosen, strict=True):
        mask &= history[c].astype(str) == str(v)
    past = history.loc[mask & history[spec.target].notna(), [spec.time, spec.target]]
    end = pd.Timestamp(model.history_end)
    step = pd.Timedelta(days=spec.frequency_days)
    ahead = pd.date_range(end + step, model.last, freq=step)
    rec = dict(zip(keys, chosen, strict=True))
    preds = model.predict([{**rec, time_field: str(d.date())} for d in ahead]) \
        if len(ahead) else pd.DataFrame({"prediction": []})
    return {"keys": keys, "series": dict(zip(keys, chosen, strict=True)),
            "target": spec.target, "history_end": str(end.date()),
            "history": {"dates": [t.timestamp() for t in pd.to_datetime(past[spec.time])],
                        "values": past[spec.target].astype(float).tolist()},
            "forecast": {"dates": [d.timestamp() for d in ahead],
                         "values": preds["prediction"].astype(float).tolist()},
            "choices": series[:2000]}
