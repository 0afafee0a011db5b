"""Row roles for tabular tasks: ``train``, ``validation``, ``holdout`` or ``excluded``.

The holdout (what the gate judges) and the excluded rows (never used to train, select
or gate) come from ``split.method(task)``: declared ``values`` of columns, ``time``
(rows from a point on), ``group`` (whole groups, hashed as :func:`group_split` does) or
``random``. The validation share, on which candidates are compared, is then drawn from
the training rows; with ``by: group`` it keeps groups together too.

Random draws are hash-based, never a shuffle: a row's draw is the 64-bit hash of its
values (``pandas.util.hash_pandas_object``, so it depends on values and dtypes) mixed
with the seed and the purpose (holdout or validation). A share is taken exactly within
each stratum (a class of the target, when stratified): the ``round(share * n)`` rows
with the smallest draws. So the roles depend on the rows and the seed only, not on row
order, and a row keeps its role when others are added (but near the boundary).

>>> import pandas as pd
>>> from cd4ml.config import SplitConfig
>>> df = pd.DataFrame({"year": [2015] * 10 + [2016] * 3 + [2017] * 2, "y": [0, 1] * 7 + [0]})
>>> split = SplitConfig(by="values", holdout={"year": [2016]}, exclude={"year": [2017]},
...                     validation={"share": 0.2})
>>> s = assign_roles(df, split, target="y", classification=True)
>>> s.summary()["counts"]
{'train': 8, 'validation': 2, 'holdout': 3, 'excluded': 2}
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from cd4ml.config import SplitConfig
from cd4ml.data.split import group_draws
from cd4ml.errors import DataError, short_repr

__all__ = ["RoleSplit", "assign_roles", "ROLES", "row_draws"]

TRAIN, VALIDATION, HOLDOUT, EXCLUDED = "train", "validation", "holdout", "excluded"
#: the roles a row can take, in the order summaries list them
ROLES = (TRAIN, VALIDATION, HOLDOUT, EXCLUDED)
_ROLE_DTYPE = np.dtype("<U10")


@dataclass(frozen=True)
class RoleSplit:
    """One role per row of the frame it was made from, and how they were chosen."""

    roles: np.ndarray
    method: str
    rule: str
    seed: int | None
    validation: dict[str, Any]
    unmatched: int = 0
    classes: dict[str, dict[str, int]] = field(default_factory=dict)

    def mask(self, role: str) -> np.ndarray:
        """Boolean mask of the rows with ``role`` (one of :data:`ROLES`)."""
        if role not in ROLES:
            raise ValueError(f"role == {role!r}, must be one of {list(ROLES)}")
        return self.roles == role

    def counts(self) -> dict[str, int]:
        """Rows per role, every role listed."""
        return {r: int((self.roles == r).sum()) for r in ROLES}

    def summary(self) -> dict[str, Any]:
        """Counts per role, the rule, the seeds and (classification) classes per role;
        JSON-ready, for run metadata and reports."""
        out: dict[str, Any] = {"method": self.method, "rule": self.rule, "seed": self.seed,
                               "validation": dict(self.validation), "counts": self.counts()}
        if self.unmatched:
            out["unmatched"] = self.unmatched
        if self.classes:
            out["classes"] = {r: dict(c) for r, c in self.classes.items()}
        return out


def assign_roles(frame: pd.DataFrame, split: SplitConfig, *, target: str | None,
                 classification: bool) -> RoleSplit:
    """Give each row of ``frame`` its role under ``split``.

    Stratification (``split.stratify`` for a random holdout, ``split.validation.stratify``
    for the validation share) applies to classification only, by the ``target`` column.
    Raises :class:`DataError` naming the key and value for a column not in the frame, a
    declared value no row has, a row that two roles select, or a role left empty.
    """
    method = split.method("classification" if classification else "regression")
    if method not in _HOLDOUT:
        raise DataError(f"split.by = {method!r} is not a tabular split; use one of "
                        f"{sorted(_HOLDOUT)}")
    if target is not None and target not in frame.columns:
        raise DataError(f"target {target!r} is not a column; columns: "
                        f"{short_repr(list(frame.columns), 200)}")
    strata = frame[target] if classification and target is not None else None
    roles, rule, seed, unmatched = _HOLDOUT[method](frame, split, strata)
    if not (roles == HOLDOUT).any():
        raise DataError(f"split: no holdout rows ({rule}); the gate needs some")
    if not (roles == TRAIN).any():
        raise DataError(f"split: no training rows: every row is held out or excluded ({rule})")
    validation = _validation(frame, split, roles, strata, method)
    classes: dict[str, dict[str, int]] = {}
    if strata is not None:
        for r in ROLES:
            vc = strata[roles == r].value_counts(dropna=False).sort_index()
            classes[r] = {str(k): int(v) for k, v in vc.items()}
    return RoleSplit(roles=roles, method=method, rule=rule, seed=seed,
                     validation=validation, unmatched=unmatched, classes=classes)


# -- holdout and excluded rows, one function per method ------------------------------

def _by_values(frame: pd.DataFrame, split: SplitConfig, strata: pd.Series | None,
               ) -> tuple[np.ndarray, str, None, int]:
    masks: dict[str, np.ndarray] = {}
    for role in ("train", "holdout", "exclude"):
        spec = getattr(split, role)
        if spec is None:
            continue
        if not spec:
            raise DataError(f"split.{role} = {{}}: give column: [values], or leave it out")
        m = np.ones(len(frame), dtype=bool)
        for col, values in spec.items():
            m &= _select(frame, col, values, f"split.{role}.{col}")
        if not m.any():
            raise DataError(f"split.{role} = {spec}: no row matches all of these together")
        masks[role] = m
    names = list(masks)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = masks[a] & masks[b]
            if both.any():
                raise DataError(_overlap(frame, split, a, b, both))
    roles = np.full(len(frame), TRAIN if "train" not in masks else EXCLUDED, dtype=_ROLE_DTYPE)
    unmatched = 0
    if "train" in masks:
        roles[masks["train"]] = TRAIN
        unmatched = int(len(frame) - sum(int(m.sum()) for m in masks.values()))
    if "holdout" in masks:
        roles[masks["holdout"]] = HOLDOUT
    if "exclude" in masks:
        roles[masks["exclude"]] = EXCLUDED
    rule = "; ".join(f"{role}: " + ", ".join(f"{c} in {list(v)}" for c, v in
                                             getattr(split, role).items())
                     for role in ("train", "holdout", "exclude") if role in masks)
    if "train" not in masks:
        rule += "; train: the other rows"
    return roles, rule, None, unmatched


def _select(frame: pd.DataFrame, col: str, values: list[Any], key: str) -> np.ndarray:
    """Rows whose ``col`` is one of ``values``; every value must occur."""
    s = _column(frame, col, key)
    if not values:
        raise DataError(f"{key} = []: give at least one value")
    wanted = [_as_column_values(s, v, key) for v in values]
    hit = s.isin([w for ws in wanted for w in ws]).to_numpy(dtype=bool)
    for v, ws in zip(values, wanted):
        if not s[hit].isin(ws).any():
            held = pd.Series(s.dropna().unique())
            shown = sorted(held.tolist(), key=str)[:10]
            raise DataError(f"{key} = {v!r}: no row has this value; {col} holds "
                            f"{short_repr(shown, 120)}{' ...' if len(held) > 10 else ''}")
    return hit


def _as_column_values(s: pd.Series, v: Any, key: str) -> list[Any]:
    """``v`` (from YAML) as values of ``s``'s kind, or a DataError saying what fits."""
    kind = s.dtype
    if isinstance(kind, pd.CategoricalDtype):
        kind = kind.categories.dtype
    if pd.api.types.is_bool_dtype(kind):
        if not isinstance(v, bool):
            raise DataError(f"{key} = {v!r}: {s.name} is a true/false column; give true or false")
        return [v]
    if pd.api.types.is_numeric_dtype(kind):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise DataError(f"{key} = {v!r}: {s.name} holds numbers; give a number")
        return [v]
    if pd.api.types.is_datetime64_any_dtype(kind):
        try:
            return [pd.to_datetime(str(v), format="ISO8601")]
        except ValueError:
            raise DataError(f"{key} = {v!r}: {s.name} holds dates; give a date like "
                            f"2016-01-01") from None
    return [v, str(v)]  # text columns: 2015 in YAML also matches "2015"


def _overlap(frame: pd.DataFrame, split: SplitConfig, a: str, b: str, both: np.ndarray) -> str:
    row = int(np.flatnonzero(both)[0])
    spec_a, spec_b = getattr(split, a), getattr(split, b)

    def name(role: str, spec: dict[str, Any]) -> str:
        return " and ".join(f"split.{role}.{c} = {_plain(frame[c].iloc[row])!r}" for c in spec)

    return (f"{name(a, spec_a)} and {name(b, spec_b)} both select {int(both.sum()):,} rows "
            f"(e.g. row {row}); a row can have only one role")


def _plain(v: Any) -> Any:
    """A numpy scalar as the Python value (for messages); a midnight timestamp as a date."""
    if isinstance(v, pd.Timestamp) and v == v.normalize():
        return str(v.date())
    return v.item() if isinstance(v, np.generic) else v


def _column(frame: pd.DataFrame, col: str, key: str) -> pd.Series:
    if col not in frame.columns:
        raise DataError(f"{key}: {col!r} is not a column; columns: "
                        f"{short_repr(list(frame.columns), 200)}")
    return frame[col]


def _by_time(frame: pd.DataFrame, split: SplitConfig, strata: pd.Series | None,
             ) -> tuple[np.ndarray, str, None, int]:
    s = _column(frame, split.column, "split.column")
    if s.isna().any():
        raise DataError(f"split.column = {split.column!r}: {int(s.isna().sum()):,} missing "
                        f"value(s); every row needs a time to be split by time")
    t, start = _times(s, split.holdout_from, "split.holdout_from")
    roles = np.full(len(frame), TRAIN, dtype=_ROLE_DTYPE)
    hold = (t >= start).to_numpy(dtype=bool, copy=True)
    rule = f"holdout: {split.column} >= {split.holdout_from}"
    if split.exclude_from is not None:
        _, end = _times(s, split.exclude_from, "split.exclude_from")
        if end <= start:
            raise DataError(f"split.exclude_from = {split.exclude_from!r}: must be later than "
                            f"split.holdout_from = {split.holdout_from!r}")
        excl = (t >= end).to_numpy(dtype=bool)
        hold &= ~excl
        roles[excl] = EXCLUDED
        rule += f" and < {split.exclude_from}; excluded: {split.column} >= {split.exclude_from}"
    if not hold.any():
        raise DataError(f"split.holdout_from = {split.holdout_from!r}: no row is from then on "
                        f"(before any exclude_from); {split.column} ends at {_plain(t.max())}")
    if (hold | (roles == EXCLUDED)).all():
        raise DataError(f"split.holdout_from = {split.holdout_from!r}: no row is earlier, so "
                        f"none is left to train; {split.column} starts at {_plain(t.min())}")
    roles[hold] = HOLDOUT
    return roles, rule, None, 0


def _times(s: pd.Series, bound: Any, key: str) -> tuple[pd.Series, Any]:
    """The column and the bound as comparable values (numbers, or timestamps)."""
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        try:
            return s, float(bound)
        except (TypeError, ValueError):
            raise DataError(f"{key} = {bound!r}: column {s.name!r} holds numbers; give a "
                            f"number") from None
    try:
        b = pd.to_datetime(str(bound), format="ISO8601")
    except ValueError:
        raise DataError(f"{key} = {bound!r}: not a date; give one like 2016-01-01") from None
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return s, b
    t = pd.to_datetime(s.astype("str"), errors="coerce", format="ISO8601")
    bad = t.isna()
    if bad.any():
        raise DataError(f"split.column = {s.name!r}: {int(bad.sum()):,} value(s) are not "
                        f"dates (e.g. {s[bad].iloc[0]!r}); declare it in the source's dates")
    return t, b


def _by_group(frame: pd.DataFrame, split: SplitConfig, strata: pd.Series | None,
              ) -> tuple[np.ndarray, str, int, int]:
    keys = _group_keys(frame, split.columns)
    hold = group_draws(keys, seed=split.seed) < split.holdout_share
    roles = np.where(hold, HOLDOUT, TRAIN).astype(_ROLE_DTYPE)
    n = int(keys.drop_duplicates().shape[0])
    rule = (f"holdout: groups of {split.columns} whose hash < {split.holdout_share} "
            f"({n:,} groups)")
    return roles, rule, split.seed, 0


def _group_keys(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    for c in columns:
        _column(frame, c, "split.columns")
    return frame[list(columns)]


def _by_random(frame: pd.DataFrame, split: SplitConfig, strata: pd.Series | None,
               ) -> tuple[np.ndarray, str, int, int]:
    by = strata if split.stratify else None
    hold = _take_share(row_draws(frame, seed=split.seed, purpose="holdout"), by,
                       split.holdout_share)
    roles = np.where(hold, HOLDOUT, TRAIN).astype(_ROLE_DTYPE)
    rule = (f"holdout: {split.holdout_share:.0%} of rows at random"
            + (f", stratified by {by.name}" if by is not None else ""))
    return roles, rule, split.seed, 0


_HOLDOUT: dict[str, Callable[..., tuple[np.ndarray, str, int | None, int]]] = {
    "values": _by_values, "time": _by_time, "group": _by_group, "random": _by_random}


# -- the validation share ----------------------------------------------------------------

def _validation(frame: pd.DataFrame, split: SplitConfig, roles: np.ndarray,
                strata: pd.Series | None, method: str) -> dict[str, Any]:
    v = split.validation
    train = np.flatnonzero(roles == TRAIN)
    sub = frame.iloc[train]
    info: dict[str, Any] = {"share": v.share, "seed": v.seed}
    if method == "group":
        keys = _group_keys(sub, split.columns)
        pick = group_draws(keys, seed=v.seed, purpose="validation") < v.share
        info.update(by="groups", columns=list(split.columns))
    else:
        by = strata.iloc[train] if strata is not None and v.stratify else None
        pick = _take_share(row_draws(sub, seed=v.seed, purpose="validation"), by, v.share)
        info.update(by="rows", stratify=by.name if by is not None else None)
    if not pick.any() or pick.all():
        raise DataError(f"split.validation.share = {v.share} of {len(train):,} training rows "
                        f"leaves {'no validation' if not pick.any() else 'no training'} rows; "
                        f"use more rows or another share")
    roles[train[pick]] = VALIDATION
    return info


def _take_share(draws: np.ndarray, strata: pd.Series | None, share: float) -> np.ndarray:
    """True for the ``round(share * n)`` smallest draws of each stratum."""
    codes = (np.zeros(len(draws), dtype=np.int64) if strata is None else
             pd.factorize(strata, use_na_sentinel=False)[0])
    order = np.lexsort((draws, codes))
    sizes = np.bincount(codes) if len(codes) else np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    take = np.floor(share * sizes + 0.5).astype(np.int64)
    sorted_codes = codes[order]
    rank = np.arange(len(order)) - starts[sorted_codes]
    pick = np.zeros(len(draws), dtype=bool)
    pick[order[rank < take[sorted_codes]]] = True
    return pick


def row_draws(frame: pd.DataFrame, *, seed: int, purpose: str) -> np.ndarray:
    """Per row, a uint64 that depends on its values (and dtypes), ``seed`` and ``purpose``
    only: the row hash of pandas mixed with a salt by splitmix64's finaliser."""
    h = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    salt = hashlib.blake2b(f"{purpose}:{int(seed)}".encode(), digest_size=8).digest()
    x = h ^ np.uint64(int.from_bytes(salt, "big"))
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x
