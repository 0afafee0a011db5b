"""Gate reports and leakage warnings as readable lines; plain Python, so printing a
cached verdict is cheap."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["render_gate", "render_leakage"]


def render_leakage(findings: Iterable[Any]) -> list[str]:
    """One warning line per leakage finding: a ``Leak`` or its ``to_dict()`` (a run's
    ``leakage``), saying how to keep the column on purpose.

    >>> (line,) = render_leakage([{"message": "column 'n' looks like an identifier"}])
    >>> for part in line.split("; "):
    ...     print(part)
    WARNING leakage: column 'n' looks like an identifier
    kept on purpose? list it in evaluation.leakage.allow
    """
    lines = []
    for f in findings:
        text = f["message"] if isinstance(f, Mapping) else f.message()
        lines.append(f"WARNING leakage: {text}; kept on purpose? list it in "
                     f"evaluation.leakage.allow")
    return lines


def render_gate(report: Mapping[str, Any]) -> str:
    """The GateReport as readable lines: a verdict, then ``PASS``/``FAIL`` per rule."""
    verdict = "PASSED" if report["passed"] else "FAILED"
    lines = [f"GATE {verdict}: {report['metric']} against baseline {report['baseline']}"]
    for rule in report["rules"]:
        lines.append(f"{'PASS' if rule['passed'] else 'FAIL'} {rule['rule']}: {rule['detail']}")
        if not rule["passed"]:
            lines.extend(f"  {_slice_text(s)}" for s in rule.get("offenders", []))
            if rule["rule"] == "max_group_gap":
                lines.append(f"  {rule['column']} {rule['metric']} by gated group: "
                             + ", ".join(_group_text(g, rule["metric"])
                                         for g in rule["groups"]))
    skipped = report.get("slices_not_gated") or []
    if skipped:
        lines.append(f"not gated: {len(skipped)} slice(s) — "
                     + ", ".join(f"{s['column']}={s['value']}" for s in skipped[:10])
                     + (", ..." if len(skipped) > 10 else ""))
    fb = report.get("fallback")
    if fb:
        lines.append(_fallback_text(fb, report["metric"]))
    small = report.get("groups_not_gated") or []
    if small:
        lines.append(f"not gated: {len(small)} group(s) — "
                     + ", ".join(f"{g['column']}={g['value']} ({g['reason']})"
                                 for g in small[:10])
                     + (", ..." if len(small) > 10 else ""))
    return "\n".join(lines)


def _fallback_text(fb: Mapping[str, Any], metric: str) -> str:
    """One line: which slices gave way to the baseline (chosen on validation), and the
    model alone's figure on the judged window."""
    by = ", ".join(fb["by"])
    parts = []
    for s in fb["slices"][:8]:
        key = ",".join(f"{k}={v}" for k, v in s["slice"].items())
        parts.append(f"{key} {s['model_weight']:g}")
    more = ", ..." if len(fb["slices"]) > 8 else ""
    alone = fb.get("without_fallback", {}).get(metric)
    return (f"fallback: {len(fb['slices'])} slice(s) by {by} give way to {fb['to']} "
            f"(model weight, chosen on {fb['chosen_on']}): {', '.join(parts)}{more}; "
            f"{fb['rows_mixed']:,} of {fb['rows']:,} rows mixed; the model alone: "
            f"{metric} {_fmt(alone)}")


def _group_text(g: Mapping[str, Any], metric: str) -> str:
    v = g.get(metric)
    return f"{g['value']} {'n/a' if v is None else f'{v:.3f}'} (n {g['n']:,})"


def _fmt(x: float | None) -> str:
    """Numbers for sentences: 1549.1, 0.5432, 123,457."""
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 1e5 else f"{x:.6g}"


def _slice_text(e: Mapping[str, Any]) -> str:
    pct = e["regression_pct"]
    change = "n/a" if pct is None else f"{pct:+.2f}%"
    return (f"{e['column']}={e['value']} {change} ({_fmt(e['candidate'])} vs "
            f"{_fmt(e['baseline'])}, weight share {e['weight_share']:.3g})")
