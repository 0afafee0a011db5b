"""The promotion gate: does a candidate beat its baseline without hurting any big slice?

:func:`apply_gate` checks a candidate's report (from
:func:`~cd4ml.evaluation.report.evaluate`) against baseline reports with the rules of
:class:`~cd4ml.config.GateConfig` and returns a JSON-able GateReport:

* ``max_metric`` (if set): the overall metric is at most ``cfg.max_metric``;
* ``beats_baseline``: the candidate improves on the baseline by at least
  ``cfg.min_improvement_pct`` percent, ``(baseline - candidate) / baseline * 100``
  (with 0 it must be strictly better);
* ``slice_regression`` (if ``cfg.max_slice_regression_pct`` is set): on every slice
  holding at least ``cfg.slice_min_weight_share`` of the weight, the candidate is not
  worse than the baseline by more than that percent. Smaller slices are listed in
  ``slices_not_gated``.

The baseline is ``cfg.baseline``, or with ``'best'`` the baseline with the lowest overall
metric. Only error metrics (lower is better) can be gated.

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

from cd4ml.config import GateConfig
from cd4ml.evaluation.metrics import HIGHER_IS_BETTER, METRICS
from cd4ml.evaluation.render import _fmt, _slice_text, render_gate
from cd4ml.evaluation.report import Report, _overall, improvement_pct

__all__ = ["apply_gate", "render_gate", "GATE_METRICS"]

#: Metrics a gate can use: the error metrics, where lower is better.
GATE_METRICS: tuple[str, ...] = tuple(m for m in METRICS if m not in HIGHER_IS_BETTER)

_MAX_OFFENDERS = 10


def apply_gate(candidate: Report, baselines: Mapping[str, Report], cfg: GateConfig, *,
               metric: str) -> dict[str, Any]:
    """Check ``candidate`` against ``baselines`` with the rules of ``cfg``; see the module.

    Raises ValueError for an unknown metric or baseline, when the candidate and the
    baseline were evaluated on different rows (different ``n`` or ``weight_sum``), or
    when slice rules are on and the baseline lacks a slice column of the candidate.
    """
    if metric not in GATE_METRICS:
        raise ValueError(f"metric == {metric!r} cannot be gated; use one of "
                         f"{list(GATE_METRICS)} (lower is better)")
    if not baselines:
        raise ValueError("no baseline reports; the gate needs at least one baseline")
    cand_value = _overall(candidate, metric, "candidate report")
    base_values = {n: _overall(r, metric, f"baseline {n!r} report")
                   for n, r in baselines.items()}
    if cfg.baseline == "best":
        base_name = min(base_values, key=lambda n: (base_values[n], n))
    elif cfg.baseline in baselines:
        base_name = cfg.baseline
    else:
        raise ValueError(f"gate.baseline == {cfg.baseline!r} is not among the baseline "
                         f"reports {sorted(baselines)}; name one of them or 'best'")
    base = baselines[base_name]
    _same_rows(candidate, base, base_name)
    rules = []
    if cfg.max_metric is not None:
        rules.append(_max_metric_rule(metric, cand_value, cfg.max_metric))
    rules.append(_beats_rule(metric, cand_value, base_name, base_values[base_name],
                             cfg.min_improvement_pct))
    not_gated: list[dict[str, Any]] = []
    if cfg.max_slice_regression_pct is not None:
        rule, not_gated = _slice_rule(candidate, base, base_name, metric, cfg)
        rules.append(rule)
    return {"passed": all(r["passed"] for r in rules), "metric": metric,
            "candidate": cand_value, "baseline": base_name,
            "baseline_value": base_values[base_name], "rules": rules,
            "slices_not_gated": not_gated}




def _same_rows(candidate: Report, base: Report, base_name: str) -> None:
    for key in ("n", "weight_sum"):
        c, b = candidate["overall"].get(key), base["overall"].get(key)
        if c is not None and b is not None and abs(float(c) - float(b)) > 1e-9 * max(
                1.0, abs(float(b))):
            raise ValueError(
                f"candidate and baseline {base_name!r} were evaluated on different rows "
                f"({key} {_fmt(c)} vs {_fmt(b)}); evaluate both on the same holdout")


def _max_metric_rule(metric: str, value: float, threshold: float) -> dict[str, Any]:
    passed = value <= threshold
    op = "<=" if passed else ">"
    return {"rule": "max_metric", "passed": passed,
            "detail": f"{metric} {_fmt(value)} {op} {_fmt(threshold)}",
            "value": value, "threshold": threshold}


def _beats_rule(metric: str, value: float, base_name: str, base_value: float,
                min_pct: float) -> dict[str, Any]:
    imp = improvement_pct(value, base_value, metric)
    if min_pct == 0:
        passed = value < base_value
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


def _regression_pct(cand: float, base: float) -> float | None:
    """How much worse ``cand`` is than ``base``, in percent; None: infinitely (base 0)."""
    if base == 0:
        return 0.0 if cand == 0 else None
    return (cand - base) / base * 100.0


def _slice_rule(candidate: Report, base: Report, base_name: str, metric: str,
                cfg: GateConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
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
                          else f"{metric} undefined (zero weight)")
                not_gated.append({**entry, "regression_pct": None, "reason": reason})
                continue
            entry["regression_pct"] = _regression_pct(entry["candidate"], entry["baseline"])
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
