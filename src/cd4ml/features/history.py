"""How much history each forecast feature needs, and the split's check of it.

A feature of the row of date ``d`` reads the target some periods back (``compute.py``),
so in a training window of ``T`` periods it is known only on the rows far enough from
the window's start. Counting the row itself, a feature that reads ``k`` periods back
needs ``k + 1`` periods of history for one known training row:

- every value derived from the target: ``horizon + 1`` (each is read at or before
  ``d - horizon``). Less is refused: the models would have nothing to learn from.
- ``lag_k`` (``features.lags``): ``k + 1``. Less is refused: the lag asked for would be
  missing on every training row, so the validation fit never sees it.
- ``seasonal_naive``, ``seasonal_mean``, ``seasonal_mean3``: ``s1 + 1``, ``s1`` the first
  whole year back (``j * seasonal_period``) that is at least the horizon; all
  ``seasonal_years`` years from ``s_last + 1`` (``seasonal_mean3`` a period earlier: it
  reads ``s1 - 1`` too). Falls back: missing before (models take missing values),
  ``seasonal_mean`` averages the years there are, and
  ``seasonal_baseline`` is the rolling level until a year is there.
- ``roll_<stat>_w``: ``horizon + 1`` (std: ``+ 2``), the whole window from
  ``horizon + w``. Falls back: partial windows.
- ``trend_w``: ``horizon + seasonal_period + 1``. Falls back: missing.

:func:`check_history` refuses, before any fit, a split whose training window (the
validation fit's, the shortest) is shorter than a refused feature needs, with the numbers
and the config keys.

>>> from cd4ml.config import FeaturesConfig
>>> feats = FeaturesConfig(horizon=39, lags=[39, 52])
>>> [(n.key, n.value, n.periods) for n in history_needs(feats) if n.refused]
[('features.horizon', 39, 40), ('features.lags', 39, 40), ('features.lags', 52, 53)]
>>> check_history(26, feats, validation_periods=78, holdout_periods=39)
Traceback (most recent call last):
...
cd4ml.errors.DataError: split.validation_periods 78 + split.holdout_periods 39 weeks leave \
26 weeks of training; features.lags 52 needs at least 53 (lag_52 reads 52 weeks back), \
features.lags 39 at least 40, features.horizon 39 at least 40 (every value derived from \
the target is read 39 weeks back): shorten the validation or holdout, or drop the lags \
that need more (README: History the features need)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cd4ml.errors import DataError

__all__ = ["Need", "history_needs", "check_history"]


@dataclass(frozen=True)
class Need:
    """A feature's need: ``periods`` of training history for one known row."""

    feature: str
    key: str  #: the config key that sets it
    value: Any  #: that key's value (the lag, the horizon, ...)
    periods: int
    refused: bool  #: True: a shorter window is refused; False: the feature falls back
    why: str = ""


def _unit(frequency_days: int) -> str:
    return {7: "weeks", 1: "days"}.get(frequency_days, f"periods of {frequency_days} days")


def history_needs(feats: Any, frequency_days: int = 7) -> list[Need]:
    """The needs of the features ``feats`` (a FeaturesConfig or FeatureSpec) sets."""
    from cd4ml.features.compute import FeatureSpec

    h, p = feats.horizon, feats.seasonal_period
    unit = _unit(frequency_days)
    seas = FeatureSpec(keys=[], time="", target="", horizon=h, seasonal_period=p,
                       seasonal_years=feats.seasonal_years).seasonal_lags
    out = [Need("target-derived values", "features.horizon", h, h + 1, True,
                f"every value derived from the target is read {h} {unit} back")]
    out += [Need(f"lag_{k}", "features.lags", k, k + 1, True, f"lag_{k} reads {k} {unit} back")
            for k in sorted(set(feats.lags))]
    out.append(Need("seasonal_naive", "features.seasonal_period", p, seas[0] + 1, False))
    out.append(Need("seasonal_mean", "features.seasonal_years", feats.seasonal_years,
                    seas[-1] + 1, False))
    for w in feats.rolling_windows:
        out.append(Need(f"roll_*_{w}", "features.rolling_windows", w, h + w, False))
        if w < p:
            out.append(Need(f"trend_{w}", "features.rolling_windows", w, h + p + 1, False))
    return out


def check_history(train_periods: int, feats: Any, *, validation_periods: int,
                  holdout_periods: int, frequency_days: int = 7, span: str = "") -> None:
    """Refuse (DataError, one line) a training window of ``train_periods`` periods that is
    shorter than a refused need of :func:`history_needs`; ``span`` (e.g. its dates) is
    shown after the count."""
    short = sorted((n for n in history_needs(feats, frequency_days)
                    if n.refused and n.periods > train_periods),
                   key=lambda n: (-n.periods, n.key != "features.lags"))
    if not short:
        return
    unit = _unit(frequency_days)
    first = short[0]
    parts = [f"{first.key} {first.value} needs at least {first.periods} ({first.why})"]
    parts += [f"{n.key} {n.value} at least {n.periods}"
              + (f" ({n.why})" if n.key == "features.horizon" else "") for n in short[1:]]
    fix = "drop the lags that need more" if any(n.key == "features.lags" for n in short) \
        else "a shorter features.horizon"
    raise DataError(
        f"split.validation_periods {validation_periods} + split.holdout_periods "
        f"{holdout_periods} {unit} leave {train_periods} {unit} of training{span}; "
        + ", ".join(parts)
        + f": shorten the validation or holdout, or {fix} (README: History the features "
          f"need)")
