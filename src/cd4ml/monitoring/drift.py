"""Data drift of a window against a reference: one finding per column, and the dataset's.

Per column, three signals, each with its own state:

- **distribution** — the column's method (:mod:`cd4ml.monitoring.methods`) on its
  non-missing values, with the second opinion a verdict needs (significance and a
  practical effect); ``insufficient`` below ``min_rows`` non-missing values on either
  side, ``not comparable`` when the reference holds no value at all (an all-missing
  training column is a finding of the missing-rate signal, not an error);
- **missing rate** — drifted when the share of missing values moved by at least
  ``missing_rate_change`` and a two-proportion z-test gives p < ``alpha``;
- **new categories** — the share of a categorical column's current values the
  reference never saw; drifted at ``new_category_rate`` or more.

A column drifts when any of its signals does. The dataset drifts when the share of
drifted columns reaches ``drift_share``. Nothing here raises on odd data: an empty
window, a constant column or an all-missing one each give a state and a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from cd4ml.monitoring import stats
from cd4ml.monitoring.methods import (COMPANIONS, METHODS, Method, compared_as,
                                      default_method, method_named)
from cd4ml.monitoring.summary import ColumnSummary

__all__ = ["DriftSettings", "ColumnRule", "ColumnDrift", "DriftReport", "compare_summaries"]


@dataclass(frozen=True)
class ColumnRule:
    """A column's own method and threshold (either may be left to the default)."""

    method: str | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class DriftSettings:
    """How a window is judged (``monitoring.drift`` in cd4ml.yaml)."""

    alpha: float = 0.05
    min_effect: float = 0.1
    require_both: bool = True
    min_rows: int = 30
    missing_rate_change: float = 0.1
    new_category_rate: float = 0.05
    drift_share: float = 0.5
    columns: Mapping[str, ColumnRule] = field(default_factory=dict)
    multivariate: bool = False  #: also judge the inputs together (``multivariate``)

    def __post_init__(self) -> None:
        for name, lo, hi in (("alpha", 0, 1), ("min_effect", 0, float("inf")),
                             ("missing_rate_change", 0, 1), ("new_category_rate", 0, 1),
                             ("drift_share", 0, 1)):
            v = getattr(self, name)
            if not lo < v <= hi:
                raise ValueError(f"monitoring.drift.{name} == {v}, must be in ({lo}, {hi}]")
        if self.min_rows < 1:
            raise ValueError(f"monitoring.drift.min_rows == {self.min_rows}, must be >= 1")

    @classmethod
    def from_config(cls, cfg: Any) -> DriftSettings:
        """The settings of a ``monitoring.drift`` config section (``DriftConfig``)."""
        d = cfg.model_dump()
        cols = {k: ColumnRule(**v) for k, v in d.pop("columns").items()}
        return cls(**d, columns=cols)


@dataclass
class ColumnDrift:
    """What one column's signals found."""

    column: str
    kind: str
    state: str  # drifted | ok | insufficient | not comparable
    drifted: bool
    method: str | None = None
    score: float | None = None
    threshold: float | None = None
    statistic: float | None = None
    method_drifted: bool | None = None  # the method's own verdict, before the second opinion
    companion: dict[str, Any] | None = None
    missing: dict[str, Any] = field(default_factory=dict)
    new_categories: dict[str, Any] | None = None
    rows: dict[str, int] = field(default_factory=dict)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DriftReport:
    columns: dict[str, ColumnDrift]
    drift_share: float
    share_drifted: float | None
    dataset_drifted: bool
    rows: dict[str, int]

    @property
    def drifted_columns(self) -> list[str]:
        return [c for c, d in self.columns.items() if d.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": {c: d.to_dict() for c, d in self.columns.items()},
                "drifted": self.drifted_columns, "share_drifted": self.share_drifted,
                "drift_share": self.drift_share, "dataset_drifted": self.dataset_drifted,
                "rows": self.rows}


def _missing(ref: ColumnSummary, cur: ColumnSummary, s: DriftSettings) -> dict[str, Any]:
    out: dict[str, Any] = {"reference": ref.missing_rate, "current": cur.missing_rate,
                           "drifted": False}
    if not ref.rows or not cur.rows:
        return out
    change = abs(cur.missing_rate - ref.missing_rate)  # type: ignore[operator]
    p = stats.proportions_test(ref.missing, ref.rows, cur.missing, cur.rows)
    out.update(change=change, p_value=p,
               drifted=bool(change >= s.missing_rate_change and p < s.alpha))
    return out


def _new_categories(ref: ColumnSummary, cur: ColumnSummary,
                    s: DriftSettings) -> dict[str, Any] | None:
    if ref.kind != "categorical" or cur.n == 0:
        return None
    known = set(ref.values.tolist())
    new = [(v, int(k)) for v, k in zip(cur.values.tolist(), cur.counts.tolist(), strict=True)
           if v not in known]
    rate = sum(k for _, k in new) / cur.n
    new.sort(key=lambda vk: -vk[1])
    return {"rate": rate, "values": [v for v, _ in new[:10]], "n_values": len(new),
            "drifted": bool(ref.n > 0 and rate >= s.new_category_rate)}


def _known(ref: ColumnSummary, cur: ColumnSummary) -> ColumnSummary:
    """The current values the reference has seen (the new ones are their own signal)."""
    if ref.kind != "categorical":
        return cur
    import pandas as pd

    keep = pd.Index(ref.values).get_indexer(cur.values) >= 0  # hashed: labels are text
    return ColumnSummary(cur.kind, cur.values[keep], cur.counts[keep], cur.missing)


def _distribution(name: str, ref: ColumnSummary, cur: ColumnSummary, s: DriftSettings,
                  out: ColumnDrift) -> None:
    if ref.n == 0:
        out.state, out.message = "not comparable", (
            "the reference holds no value (all missing in training): only its missing "
            "rate is compared")
        return
    cur = _known(ref, cur)
    if ref.n < s.min_rows or cur.n < s.min_rows:
        out.state, out.message = "insufficient", (
            f"{min(ref.n, cur.n)} non-missing rows, fewer than min_rows ({s.min_rows})")
        return
    rule = s.columns.get(name, ColumnRule())
    kind = compared_as(ref, cur)
    m: Method = METHODS[rule.method] if rule.method else default_method(ref, cur)
    threshold = m.threshold if rule.threshold is None else rule.threshold
    score, statistic = m.score(ref, cur)
    own = m.drifted(score, threshold)
    out.method, out.score, out.threshold, out.statistic = m.name, score, threshold, statistic
    out.method_drifted = own
    verdict = own
    if s.require_both and own:  # the second opinion is only asked when the first says drift
        family = ("numeric" if m.name in ("ks", "wasserstein") else "categorical"
                  if m.name in ("chisquare", "z") else kind)
        sig, eff = COMPANIONS[family]
        other = METHODS[sig if m.measures == "distance" else eff]
        limit = s.alpha if other.measures == "p_value" else s.min_effect
        o_score = other.score(ref, cur)[0]
        o_ok = other.drifted(o_score, limit)
        out.companion = {"method": other.name, "score": o_score, "threshold": limit,
                         "drifted": o_ok}
        verdict = own and o_ok
    out.state = "drifted" if verdict else "ok"
    if own and not verdict:
        need = "significant" if m.measures == "distance" else "large enough"
        out.message = (f"{m.name} {score:.4g} crosses {threshold:g}, but the shift is not "
                       f"{need} ({other.name} {o_score:.4g}, needs "
                       f"{'<' if other.measures == 'p_value' else '>='} {limit:g})")


def compare_column(name: str, ref: ColumnSummary, cur: ColumnSummary,
                   settings: DriftSettings) -> ColumnDrift:
    out = ColumnDrift(name, ref.kind, "ok", False, rows={"reference": ref.rows,
                                                       "current": cur.rows})
    if cur.rows == 0:
        out.state, out.message = "insufficient", "no rows in the window"
        return out
    out.missing = _missing(ref, cur, settings)
    out.new_categories = _new_categories(ref, cur, settings)
    _distribution(name, ref, cur, settings, out)
    out.drifted = bool(out.state == "drifted" or out.missing.get("drifted")
                       or (out.new_categories or {}).get("drifted"))
    if out.drifted and out.state != "drifted":
        why = [w for w, hit in (("missing rate", out.missing.get("drifted")),
                                ("new categories", (out.new_categories or {}).get("drifted")))
               if hit]
        out.message = "; ".join(filter(None, [out.message, f"drifted: {', '.join(why)}"]))
    return out


def compare_summaries(reference: Mapping[str, ColumnSummary],
                      current: Mapping[str, ColumnSummary],
                      settings: DriftSettings | None = None) -> DriftReport:
    """The drift of ``current`` against ``reference``, column by column (the reference's
    columns; one missing from the current window is reported, not skipped silently)."""
    s = settings or DriftSettings()
    for name, rule in s.columns.items():
        if name not in reference:
            raise ValueError(f"monitoring.drift.columns names {name!r}, which the reference "
                             f"does not hold; it has {', '.join(reference)}")
        if rule.method:  # a numeric column may also be compared as categories
            kind = reference[name].kind
            method_named(rule.method, "categorical" if kind == "numeric" and rule.method in
                         ("chisquare", "z") else kind, column=name)
    cols: dict[str, ColumnDrift] = {}
    for name, ref in reference.items():
        cur = current.get(name)
        if cur is None:
            cols[name] = ColumnDrift(name, ref.kind, "missing column", True,
                                     rows={"reference": ref.rows, "current": 0},
                                     message="the column is not in the current data")
            continue
        cols[name] = compare_column(name, ref, cur, s)
    judged = [d for d in cols.values() if d.state != "insufficient"]
    share = sum(d.drifted for d in judged) / len(judged) if judged else None
    rows = max((d.rows.get("current", 0) for d in cols.values()), default=0)
    return DriftReport(cols, s.drift_share, share,
                       bool(share is not None and share >= s.drift_share),
                       {"reference": max((r.rows for r in reference.values()), default=0),
                        "current": rows})
