"""The promotion gate: does a candidate beat its baseline without hurting any big slice?

:func:`apply_gate` checks a candidate's report (from
:func:`~cd4ml.evaluation.report.evaluate`) against baseline reports with the rules of
:class:`~cd4ml.config.GateConfig` and returns a JSON-able GateReport:

* ``max_metric`` (if set; metrics where lower is better): the overall metric is at
  most ``cfg.max_metric``; ``min_metric`` (if set; higher is better, e.g. ROC AUC): at
  least ``cfg.min_metric``;
* ``beats_baseline``: the candidate improves on the baseline by at least
  ``cfg.min_improvement_pct`` percent (:func:`~cd4ml.evaluation.report.improvement_pct`;
  with 0 it must be strictly better: lower, or higher where higher is better);
* ``slice_regression`` (if ``cfg.max_slice_regression_pct`` is set): on every slice
  holding at least ``cfg.slice_min_weight_share`` of the weight, the candidate is not
  worse than the baseline by more than that percent. Smaller slices are listed in
  ``slices_not_gated``;
* ``max_group_gap``, one per rule of ``cfg.max_group_gap``: in the candidate's group
  report of ``rule.column`` (:mod:`~cd4ml.evaluation.fairness`, at the decision
  threshold the report was made with), the gap of ``rule.metric`` between the gated
  groups, in percentage points (the difference times 100), is at most ``rule.points``.
  A column with fewer than 2 gated groups passes, with a note; its small groups are
  listed in ``groups_not_gated``.

The baseline is ``cfg.baseline``, or with ``'best'`` the baseline with the best overall
metric. Whether higher is better comes from ``higher`` or, when None, from
:data:`~cd4ml.evaluation.metrics.HIGHER_IS_BETTER`.

>>> from cd4ml.config import GateConfig
>>> cand = {"overall": {"wmae": 1549.1, "n": 10, "weight_sum": 10.0}, "slices": {}}
>>> naive = {"overall": {"wmae": 1800.0, "n": 10, "weight_sum": 10.0}, "slices": {}}
>>> gate = apply_gate(cand, {"naive": naive}, GateConfig(max_metric=1800), metric="wmae")
>>> print(render_gate(gate))
GATE PASSED: wmae against baseline naive
PASS max_metric: wmae 1549.1 <= 1800
PASS beats_baseline: wmae 1549.1 vs baseline naive 1800 is 13.94% better (needs strictly better)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cd4ml.config import GateConfig, GroupGapRule
from cd4ml.evaluation.metrics import METRIC_NAMES
from cd4ml.evaluation.render import _fmt, _slice_text, render_gate
from cd4ml.evaluation.report import Report, _overall, higher_is_better, improvement_pct

__all__ = ["apply_gate", "render_gate", "GATE_METRICS"]

#: Metrics a gate can use: the forecast metrics and every task's.
GATE_METRICS: tuple[str, ...] = METRIC_NAMES

_MAX_OFFENDERS = 10


def apply_gate(candidate: Report, baselines: Mapping[str, Report], cfg: GateConfig, *,
               metric: str, higher: bool | None = None) -> dict[str, Any]:
    """Check ``candidate`` against ``baselines`` with the rules of ``cfg``; see the module.

    Raises ValueError for an unknown metric or baseline, a bound on the wrong side
    (``max_metric`` for a metric where higher is better, ``min_metric`` for one where
    lower is), when the candidate and the baseline were evaluated on different rows
    (different ``n`` or ``weight_sum``), when slice rules are on and the baseline lacks a
    slice column of the candidate, or when a group rule names a column or metric that
    the candidate's report has no groups or gap for.
    """
    if metric not in GATE_METRICS and higher is None:
        raise ValueError(f"metric == {metric!r} cannot be gated; use one of "
                         f"{list(GATE_METRICS)}")
    up = higher_is_better(metric, higher)
    bound = "max_metric" if up else "min_metric"
    if getattr(cfg, bound) is not None:
        other = "min_metric" if up else "max_metric"
        raise ValueError(f"gate.{bound} == {getattr(cfg, bound)!r}, but for {metric} "
                         f"{'higher' if up else 'lower'} is better; set gate.{other}")
    if not baselines:
        raise ValueError("no baseline reports; the gate needs at least one baseline")
    cand_value = _overall(candidate, metric, "candidate report")
    base_values = {n: _overall(r, metric, f"baseline {n!r} report")
                   for n, r in baselines.items()}
    sign = -1.0 if up else 1.0
    if cfg.baseline == "best":
        base_name = min(base_values, key=lambda n: (sign * base_values[n], n))
    elif cfg.baseline in baselines:
        base_name = cfg.baseline
    else:
        raise ValueError(f"gate.baseline == {cfg.baseline!r} is not among the baseline "
                         f"reports {sorted(baselines)}; name one of them or 'best'")
    base = baselines[base_name]
    _same_rows(candidate, base, base_name)
    rules = []
    if cfg.max_metric is not None:
        rules.append(_bound_rule("max_metric", metric, cand_value, cfg.max_metric))
    if cfg.min_metric is not None:
        rules.append(_bound_rule("min_metric", metric, cand_value, cfg.min_metric))
    rules.append(_beats_rule(metric, cand_value, base_name, base_values[base_name],
                             cfg.min_improvement_pct, up))
    not_gated: list[dict[str, Any]] = []
    if cfg.max_slice_regression_pct is not None:
        rule, not_gated = _slice_rule(candidate, base, base_name, metric, cfg, up)
        rules.append(rule)
    report = {"passed": False, "metric": metric, "higher_is_better": up,
              "candidate": cand_value, "baseline": base_name,
              "baseline_value": base_values[base_name], "rules": rules,
              "slices_not_gated": not_gated}
    if cfg.max_group_gap:
        groups_not_gated: list[dict[str, Any]] = []
        for i, gap_rule in enumerate(cfg.max_group_gap):
            rule, small = _group_gap_rule(candidate, gap_rule, i)
            rules.append(rule)
            groups_not_gated.extend(g for g in small if g not in groups_not_gated)
        report["groups_not_gated"] = groups_not_gated
    report["passed"] = all(r["passed"] for r in rules)
    return report


def _same_rows(candidate: Report, base: Report, base_name: str) -> None:
    for key in ("n", "weight_sum"):
        c, b = candidate["overall"].get(key), base["overall"].get(key)
        if c is not None and b is not None and abs(float(c) - float(b)) > 1e-9 * max(
                1.0, abs(float(b))):
            raise ValueError(
                f"candidate and baseline {base_name!r} were evaluated on different rows "
                f"({key} {_fmt(c)} vs {_fmt(b)}); evaluate both on the same holdout")


def _bound_rule(name: str, metric: str, value: float, bound: float) -> dict[str, Any]:
    passed = value <= bound if name == "max_metric" else value >= bound
    op = {("max_metric", True): "<=", ("max_metric", False): ">",
          ("min_metric", True): ">=", ("min_metric", False): "<"}[name, passed]
    return {"rule": name, "passed": passed,
            "detail": f"{metric} {_fmt(value)} {op} {_fmt(bound)}",
            "value": value, "threshold": bound}


def _beats_rule(metric: str, value: float, base_name: str, base_value: float,
                min_pct: float, up: bool) -> dict[str, Any]:
    imp = improvement_pct(value, base_value, metric, higher=up)
    if min_pct == 0:
        passed = value > base_value if up else value < base_value
        need = "needs strictly better"
    else:
        passed = imp is not None and imp >= min_pct
        need = f"needs >= {min_pct:g}% better"
    if imp is None:
        how = "cannot be compared in percent (baseline is 0)"
    elif imp >= 0:
        how = f"is {imp:.2f}% better"
    else:
        how = f"is {-imp:.2f}% worse"
    return {"rule": "beats_baseline", "passed": passed,
            "detail": f"{metric} {_fmt(value)} vs baseline {base_name} {_fmt(base_value)} "
                      f"{how} ({need})",
            "candidate": value, "baseline": base_value, "improvement_pct": imp,
            "min_improvement_pct": min_pct}


def _regression_pct(cand: float, base: float, up: bool = False) -> float | None:
    """How much worse ``cand`` is than ``base``, in percent; None: infinitely (base 0)."""
    if base == 0:
        return 0.0 if cand == 0 else None
    if up:
        return (base - cand) / abs(base) * 100.0
    return (cand - base) / base * 100.0


def _slice_rule(candidate: Report, base: Report, base_name: str, metric: str,
                cfg: GateConfig, up: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    limit = float(cfg.max_slice_regression_pct or 0.0)
    min_share = cfg.slice_min_weight_share
    gated: list[dict[str, Any]] = []
    not_gated: list[dict[str, Any]] = []
    base_slices = base.get("slices") or {}
    missing = [c for c in candidate.get("slices") or {} if c not in base_slices]
    if missing:
        raise ValueError(f"baseline {base_name!r} report has no slices for {missing}; "
                         "evaluate candidate and baselines with the same slices")
    for column, rows in (candidate.get("slices") or {}).items():
        base_rows = {_key(r["value"]): r for r in base_slices.get(column, [])}
        for row in rows:
            b = base_rows.get(_key(row["value"]))
            entry = {"column": column, "value": row["value"],
                     "weight_share": row["weight_share"], "candidate": row.get(metric),
                     "baseline": None if b is None else b.get(metric)}
            if entry["candidate"] is None or entry["baseline"] is None:
                reason = ("not in the baseline report" if b is None
                          else f"{metric} undefined on the slice's rows")
                not_gated.append({**entry, "regression_pct": None, "reason": reason})
                continue
            entry["regression_pct"] = _regression_pct(entry["candidate"], entry["baseline"],
                                                      up)
            if row["weight_share"] < min_share:
                not_gated.append({**entry, "reason": f"weight share "
                                  f"{row['weight_share']:.4g} < {min_share:g}"})
            else:
                gated.append(entry)
    worst_first = sorted(gated, key=_badness, reverse=True)
    offenders = [e for e in worst_first
                 if e["regression_pct"] is None or e["regression_pct"] > limit]
    scope = (f"{len(gated)} slice(s) with weight share >= {min_share:g} vs baseline "
             f"{base_name}")
    if offenders:
        detail = (f"{len(offenders)} of {scope} are more than {limit:g}% worse; worst: "
                  + "; ".join(_slice_text(e) for e in offenders[:3]))
    elif worst_first:
        detail = (f"none of {scope} is more than {limit:g}% worse; worst: "
                  + _slice_text(worst_first[0]))
    else:
        detail = f"no slice to gate ({scope})"
    rule = {"rule": "slice_regression", "passed": not offenders, "detail": detail,
            "max_regression_pct": limit, "min_weight_share": min_share,
            "gated": len(gated), "failed": len(offenders),
            "offenders": offenders[:_MAX_OFFENDERS],
            "worst": worst_first[0] if worst_first else None}
    return rule, not_gated


def _key(value: Any) -> Any:
    """Slice values match across reports even if one went through JSON (1 == 1.0)."""
    return ("num", float(value)) if isinstance(value, (int, float)) and not isinstance(
        value, bool) else ("other", value)


def _badness(entry: Mapping[str, Any]) -> float:
    pct = entry["regression_pct"]
    return float("inf") if pct is None else float(pct)


def _group_gap_rule(candidate: Report, rule: GroupGapRule, i: int,
                    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    where = f"gate.max_group_gap[{i}]"
    groups = candidate.get("groups") or {}
    if rule.column not in groups:
        raise ValueError(f"{where}.column == {rule.column!r}: the candidate report has no "
                         f"groups for it (it has {sorted(groups)}); list the column in "
                         "evaluation.protected")
    rep = groups[rule.column]
    gap = rep["gaps"].get(rule.metric)
    if gap is None:
        why = (rep.get("undefined") or {}).get(rule.metric)
        raise ValueError(f"{where}.metric == {rule.metric!r}: no such gap for "
                         f"{rule.column} ({why or 'not compared'}); use one of "
                         f"{sorted(rep['gaps'])}")
    small = [{"column": rule.column, **g} for g in rep.get("not_gated", [])]
    entry: dict[str, Any] = {
        "rule": "max_group_gap", "column": rule.column, "metric": rule.metric,
        "max_points": rule.points, "threshold": rep.get("threshold"),
        "groups": [{"value": g["value"], "n": g["n"], rule.metric: g.get(rule.metric)}
                   for g in rep["groups"] if g["gated"]]}
    if gap["value"] is None:
        entry.update(passed=True, points=None, ci_points=None,
                     detail=f"{rule.column} {rule.metric} gap not gated: {gap.get('note')}")
        return entry, small
    points = gap["value"] * 100
    ci = gap.get("ci")
    ci_points = None if ci is None else [ci["low"] * 100, ci["high"] * 100]
    passed = points <= rule.points
    interval = ("no interval (bootstrap 0)" if ci_points is None
                else f"95 % CI {ci_points[0]:.1f}-{ci_points[1]:.1f}")
    entry.update(
        passed=passed, points=points, ci_points=ci_points,
        max_group=gap["max_group"], max_value=gap["max_value"],
        min_group=gap["min_group"], min_value=gap["min_value"],
        detail=(f"{rule.column} {rule.metric} gap {points:.1f} points (group "
                f"{gap['max_group']} {gap['max_value']:.3f} vs group {gap['min_group']} "
                f"{gap['min_value']:.3f}; {interval}) {'<=' if passed else '>'} "
                f"{rule.points:g}"))
    return entry, small
