"""One window's full monitoring report: what ``cd4ml monitor --since A --until B`` says,
with every feature's reference and window histograms side by side.

The report is ``cd4ml.pipeline.monitor.monitor(..., log=True)`` (the document of
``monitor_log``): per column the method, score, threshold and its companion test, the
missing-value and new-category rates; the prediction's drift; quality on the labelled
rows and estimated on all; training-serving skew with examples.
"""

from __future__ import annotations

from typing import Any

from cd4ml.dashboard.html import badge, compact_json, esc, fmt, section, table, when
from cd4ml.dashboard.charts import bar_chart

__all__ = ["window_body"]


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
                      f"{when(ref.get('created'))}"]], cls="facts"))]
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
