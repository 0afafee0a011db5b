"""One window's full monitoring report: what ``cd4ml monitor --since A --until B`` says,
with every feature's reference and window histograms side by side.

The report is ``cd4ml.pipeline.monitor.monitor(..., log=True)`` (the document of
``monitor_log``): per column the method, score, threshold and its companion test, the
missing-value and new-category rates; the prediction's drift; quality on the labelled
rows and estimated on all; the concept-drift verdict and where the model errs (per input,
the error of each bin of the labelled rows against the window's); training-serving skew
with examples.
"""

from __future__ import annotations

from typing import Any

from cd4ml.dashboard.charts import bar_chart
from cd4ml.dashboard.html import badge, compact_json, esc, fmt, section, table, when
from cd4ml.monitoring.residuals import MIN_BIN_ROWS

__all__ = ["window_body", "concept_line", "residuals_section", "RESIDUAL_INPUTS"]

#: inputs charted under "Where the model errs", those whose worst bin is furthest above
#: the window's error first
RESIDUAL_INPUTS = 6
_CONCEPT_BADGE = {"ok": "ok", "inputs drifted": "warn", "suspected": "bad"}


def _state(d: dict[str, Any]) -> Any:
    s = d.get("state") or "–"
    return badge(s, "bad" if d.get("drifted") else "ok" if s == "ok" else "warn")


def _columns(cols: dict[str, Any]) -> str:
    rows = []
    for c, d in cols.items():
        comp = d.get("companion") or {}
        miss = d.get("missing") or {}
        new = d.get("new_categories") or {}
        rows.append([c, d.get("kind"), d.get("method"), fmt(d.get("score")),
                     fmt(d.get("threshold")),
                     f"{comp.get('method')} {fmt(comp.get('score'))}" if comp else "–",
                     f"{fmt(miss.get('reference'))} → {fmt(miss.get('current'))}",
                     (f"{fmt(new.get('rate'))} ({', '.join(map(str, new.get('values') or []))})"
                      if new else "–"),
                     _state(d), d.get("message") or ""])
    return table(["column", "kind", "method", "score", "threshold", "second opinion",
                  "missing rate", "new categories", "state", ""], rows, cls="drift")


def concept_line(concept: dict[str, Any] | None) -> str:
    """The concept-drift verdict (``monitor_log``'s ``concept``) in one line."""
    if concept is None:
        return ""
    head = "<strong>Concept drift:</strong> "
    state = concept.get("state") or "–"
    figures = [f"{name} {concept[k]:.1%}" for k, name in (
        ("degradation", "degradation against the holdout"),
        ("estimated_gap", "realized below the estimate"),
        ("min_effect", "flagged from")) if isinstance(concept.get(k), float)]
    note = f' <span class="note">({esc("; ".join(figures))})</span>' if figures else ""
    return (f'<p id="concept">{head}{badge(state, _CONCEPT_BADGE.get(state, "muted"))} '
            f"{esc(concept.get('message') or '')}{note}</p>")


def _residual_chart(col: str, d: dict[str, Any], overall: float, name: str) -> str:
    bins = [b for b in d["bins"] if b["rows"] or d.get("kind") == "numeric"]
    worst = ", ".join(d.get("worst") or []) or "none above the window's"
    return bar_chart(
        f"residuals-{col}", f"{col} ({d.get('kind')}): {name} per bin; worst: {worst}",
        [b["bin"] for b in bins], [(name, [b["error"] for b in bins])],
        reference=(f"window's {name}", overall),
        faded=[b["rows"] < MIN_BIN_ROWS for b in bins],
        hovers=[f"{b['rows']:,} rows, mean residual {fmt(b['mean_residual'])}"
                for b in bins],
        note=(f"worst bin {fmt(d.get('excess'))} above the window's {name}" if d.get("worst")
              else f"no bin of {MIN_BIN_ROWS} rows or more above the window's {name}"),
        why="no labelled row with a value of this input")


def residuals_section(res: dict[str, Any] | None, quality: dict[str, Any]) -> str:
    """Per input (at most :data:`RESIDUAL_INPUTS`, largest ``excess`` first), the error of
    each bin with the window's as a dashed line; bins under ``MIN_BIN_ROWS`` rows faded."""
    title = "Where the model errs"
    if res is None:
        why = quality.get("message") or "no labelled rows in this window"
        return section(title, f'<p class="why" id="residuals-none">no residuals: '
                       f"{esc(why)}</p>")
    if res.get("state") == "not computed":
        return section(title, f'<p class="why" id="residuals-none">residuals not computed: '
                       f"{esc(res.get('message') or '')}</p>")
    ranked = sorted((res.get("inputs") or {}).items(), key=lambda kv: -kv[1]["excess"])
    name, overall = res["error_name"], res["error"]
    if not ranked or overall is None:
        return section(title, '<p class="why" id="residuals-none">no labelled row to '
                       "compare predictions with</p>")
    label = {"brier": "Brier score", "mae": "mean absolute error"}.get(name, name)
    charts = "".join(_residual_chart(c, d, overall, name)
                     for c, d in ranked[:RESIDUAL_INPUTS])
    return section(title, f"<p>{esc(label)} per bin of each input on the "
                   f"{res['rows']:,} labelled rows (the window's: {fmt(overall)}, dashed); "
                   f"the {min(len(ranked), RESIDUAL_INPUTS)} of {len(ranked)} inputs whose "
                   f"worst bin is furthest above it. Faded: bins of fewer than "
                   f"{MIN_BIN_ROWS} rows, not ranked. A bar's title gives its rows and "
                   f"mean residual (actual minus prediction).</p>",
                   f'<div class="grid2">{charts}</div>', id="residuals")


def window_body(doc: dict[str, Any], hists: dict[str, dict[str, Any]]) -> str:
    """The page's sections from the monitoring document and each feature's histogram."""
    ref = doc["reference"]
    if ref.get("state") != "ok":
        return f'<p class="why">{esc(ref.get("message") or ref.get("state"))}</p>'
    log = doc["log"]
    win = log.get("window") or {}
    drift = log.get("drift") or {}
    out = [section("Window", table(["", ""], [
        ["from", win.get("first_ts") or "–"], ["to", win.get("last_ts") or "–"],
        ["rows", f"{log.get('rows', 0):,}"], ["requests", f"{log.get('requests', 0):,}"],
        ["features drifted", f"{fmt(drift.get('share_drifted'))} (dataset drift from "
                             f"{fmt(drift.get('drift_share'))}): "
                             f"{', '.join(drift.get('drifted') or []) or 'none'}"],
        ["reference", f"{ref.get('rows', 0):,} training rows, made "
                      f"{when(ref.get('created'))}"]], cls="facts"),
                   concept_line(log.get("concept")))]
    if drift.get("columns"):
        out.append(section("Input drift", _columns(drift["columns"])))
    elif drift.get("message"):
        out.append(section("Input drift", f'<p class="why">{esc(drift["message"])}</p>'))
    if hists:
        charts = "".join(bar_chart(f"hist-{c}", f"{c} ({h['kind']})", h["labels"],
                                   [("reference", h["reference"]), ("window", h["current"])],
                                   y_fmt=".0%") for c, h in hists.items())
        out.append(section("Reference vs window, per feature",
                           f'<div class="grid3">{charts}</div>'))
    pred = log.get("prediction") or {}
    if pred.get("columns"):
        out.append(section("Prediction drift", _columns(pred["columns"])))
    q = log.get("quality") or {}
    if q.get("state") == "ok":
        overall = q["report"].get("overall") or {}
        out.append(section("Quality on feedback", table(["metric", "value"], [
            [k, fmt(v)] for k, v in overall.items() if isinstance(v, (int, float))])))
    else:
        out.append(section("Quality on feedback",
                           f"<p>{esc(q.get('state'))}: {esc(q.get('message') or '')}</p>"))
    est = log.get("estimated")
    if est:
        out.append(section("Estimated without labels", table(["metric", "value"], [
            [k, fmt(v) if not isinstance(v, dict) else compact_json(v)]
            for k, v in est.items()])))
    out.append(residuals_section(log.get("residuals"), q))
    skew = log.get("skew")
    if skew:
        bad = {f: d for f, d in (skew.get("features") or {}).items() if d.get("mismatches")}
        rows = [[f, d["mismatches"], compact_json(d.get("examples") or [], 200)]
                for f, d in bad.items()]
        out.append(section("Training-serving skew", f"<p>{esc(skew.get('state'))}: share of "
                           f"rows with a difference {fmt(skew.get('share'))} over "
                           f"{skew.get('rows', 0):,} rows</p>",
                           table(["feature", "rows differing", "examples"], rows)
                           if rows else "<p>every feature recomputed by the training path "
                                        "equals the served vector</p>"))
    return "".join(out)
