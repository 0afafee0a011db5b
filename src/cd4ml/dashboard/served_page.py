"""The page of one served model, section by section (the data comes from ``served``).

Server (software metrics of the scrape), traffic and latency over time (the log), errors
and refused requests by reason (the scrape), input drift per feature and window with one
feature's reference and current histograms, the prediction distribution per window
beside the reference's, quality over time (realized on feedback, estimated without
labels, the holdout's figure as reference), protected-group metrics over time, firing
alerts with the latest window's concept-drift verdict, and for a forecast one series'
history and forecast.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from cd4ml.dashboard.charts import (WIDE, Series, bar_chart, empty, hbar_chart, heatmap,
                                    line_chart, short_number)
from cd4ml.dashboard.html import Links, Raw, badge, count, esc, fmt, section, table, when
from cd4ml.dashboard.promtext import ServerFigures
from cd4ml.dashboard.served import Activity

__all__ = ["server_section", "traffic_sections", "drift_section", "prediction_section",
           "quality_section", "groups_section", "latest_concept", "alerts_section",
           "forecast_section",
           "window_x", "drift_intensity"]


def window_x(w: dict[str, Any], by: str) -> float:
    """A window's place on a time axis: its start (time windows) or first row's time."""
    return float(w["start"]) if by == "time" else pd.Timestamp(w["first_ts"]).timestamp()


def server_section(fig: ServerFigures | None, source: str, problem: str) -> str:
    if fig is None:
        return section("Server", f'<p class="why" id="server-none">{esc(problem)}</p>',
                       id="server")
    proc = fig.process
    mem = f"{proc['rss_bytes'] / 2**20:,.0f} MiB" if "rss_bytes" in proc else \
        "not reported (several workers: no process metrics)"
    log = fig.log
    facts = [["source", source], ["ready", {1.0: "yes", 0.0: "no"}.get(fig.ready, "–")],
             ["requests in flight", count(fig.in_flight)],
             ["versions loaded", ", ".join(f"{m} v{v}" for m, v in fig.loaded) or "–"],
             ["resident memory", mem],
             ["CPU seconds", fmt(proc.get("cpu_seconds"))],
             ["log queue (records)", count(log.get("queue"))],
             ["log bytes not yet on disk", count(log.get("queued_bytes"))],
             ["log records written / dropped / rejected",
              " / ".join(count(log.get(k)) for k in ("written", "dropped", "rejected"))],
             ["log write errors / records lost",
              f"{count(log.get('write_errors'))} / {count(log.get('lost'))}"]]
    lat = [[ep, count(d["count"]), fmt(d["mean_ms"]), fmt(d["p50_ms"]), fmt(d["p90_ms"]),
            fmt(d["p99_ms"])] for ep, d in sorted(fig.latency.items()) if d["count"]]
    req = [[ep, st, count(n)] for ep, st, n in fig.requests]
    rows = [[m, v, ep, count(n)] for m, v, ep, n in fig.predictions]
    charts = ('<div class="grid2">'
              + hbar_chart("errors", "errors by endpoint and type (since start)", fig.errors,
                           why="no error answered since the server started")
              + hbar_chart("refusals", "refused requests by field and reason (since start)",
                           fig.refusals, why="no request refused since the server started")
              + "</div>")
    return section("Server", '<div class="grid2">' + table(["", ""], facts, cls="facts")
                   + table(["endpoint", "requests", "mean ms", "p50 ms", "p90 ms", "p99 ms"],
                           lat) + "</div>", charts,
                   "<h3>Requests by status</h3>" + table(["endpoint", "status", "requests"],
                                                         req),
                   "<h3>Rows predicted</h3>" + table(["model", "version", "endpoint", "rows"],
                                                     rows), id="server")


def traffic_sections(act: Activity) -> str:
    step = act.bucket_s
    per = f"{step / 3600:g} h" if step >= 3600 else f"{step / 60:g} min"
    why = "no logged request in this range"
    requests = line_chart("traffic", f"requests per {per} (log time)", [
        Series("requests", act.starts, act.requests)], why=why, zero=True)
    rows = line_chart("traffic-rows", f"rows predicted per {per}", [
        Series("rows", act.starts, act.rows)], why=why, zero=True)
    latency = line_chart("latency", f"latency per request, ms, per {per}", [
        Series("p50", act.starts, act.p50), Series("p95", act.starts, act.p95),
        Series("p99", act.starts, act.p99)], why=why,
        note="from the log: the time from the server taking the request to logging it")
    facts = table(["", ""], [["first", when(act.first)], ["last", when(act.last)],
                             ["requests", f"{act.total_requests:,}"],
                             ["rows", f"{act.total_rows:,}"],
                             ["by endpoint", ", ".join(f"{k}: {v:,}" for k, v in
                                                       sorted(act.endpoints.items()))]],
                  cls="facts")
    return section("Traffic and latency", '<div class="grid2">' + facts + latency + requests
                   + rows + "</div>", id="traffic")


def drift_intensity(d: dict[str, Any]) -> float | None:
    """A column's shift on a 0-1 scale across methods: 0.5 at its method's threshold
    (a distance at the threshold, a p-value at it), 1 at twice as far (a distance of
    twice it, a p-value of its square)."""
    from cd4ml.monitoring import METHODS

    score, m = d.get("score"), METHODS.get(d.get("method") or "")
    if score is None or m is None or not math.isfinite(score):
        return None
    if m.measures == "p_value":
        return min(1.0, math.log(max(score, 1e-300)) / math.log(m.threshold) / 2)
    return min(1.0, score / m.threshold / 2)


def drift_section(doc: dict[str, Any], hist: dict[str, Any] | None, feature: str | None,
                  window: int, links: Links, here: dict[str, Any], path: str) -> str:
    wins = doc["windows"]
    by = doc["by"]
    cols = list(wins[-1]["drift"]) if wins else []
    if not cols:
        why = (wins[-1].get("drift_message") if wins else None) or (
            "a forecast's requests name series and dates: its covariates' drift shows in "
            "new source data (cd4ml monitor --data)" if wins else "no window in this range")
        return section("Input drift", empty("drift", "drift score per feature and window",
                                            why), id="drift")
    cells = [[(drift_intensity(w["drift"].get(c, {})),
               ("!" if w["drift"].get(c, {}).get("drifted") else "")
               + f"{c} {when(window_x(w, by))}: {w['drift'].get(c, {}).get('state')} "
                 f"({w['drift'].get(c, {}).get('method')} "
                 f"{fmt(w['drift'].get(c, {}).get('score'))})") for w in wins] for c in cols]
    grid = heatmap("drift", "drift per feature and window (darker: larger shift; red: "
                   "drifted)", cols, [window_x(w, by) for w in wins], cells, width=WIDE)
    sel = wins[window]
    rows = [[links.a(c, path, **{**here, "feature": c}),
             d.get("method"), fmt(d.get("score")),
             badge(d.get("state") or "–", "bad" if d.get("drifted") else
                   "ok" if d.get("state") == "ok" else "warn")]
            for c, d in sorted(sel["drift"].items(),
                               key=lambda x: -(drift_intensity(x[1]) or 0))]
    share = sel["metrics"].get("drift.share")
    report = links.a("The full report of this window", path + "/window",
                     **_bounds(sel, doc, here))
    parts = [grid, f"<p>Window from {esc(when(window_x(sel, by)))} ({sel['rows']:,} rows): "
             f"{'–' if share is None else f'{share:.0%}'} of the features drifted. "
             f"{report} (drift tests, missing and new-category rates, skew).</p>"]
    if hist is not None and feature is not None:
        title = f"{feature}: reference (training rows) vs this window"
        miss = hist["missing"]
        note = (f"missing: reference {_pct(miss['reference'])}, window "
                f"{_pct(miss['current'])}"
                + (f"; categories never seen in training: {', '.join(hist['new'])}"
                   if hist.get("new") else ""))
        parts.append('<div class="grid2">' + bar_chart(
            "feature-histogram", title, hist["labels"],
            [("reference", hist["reference"]), ("window", hist["current"])], y_fmt=".0%",
            note=note, why="no value of this feature in the window")
                     + table(["feature", "method", "score", "state"], rows) + "</div>")
    return section("Input drift", *parts, id="drift")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def _bounds(w: dict[str, Any], doc: dict[str, Any], here: dict[str, Any]) -> dict[str, Any]:
    """The window as a time range ``[since, until)`` for ``cd4ml monitor``: a count
    window's first row's time to just after its last's."""
    if doc["by"] == "time":
        a, b = pd.Timestamp(w["start"], unit="s", tz="UTC"), pd.Timestamp(w["end"], unit="s",
                                                                         tz="UTC")
    else:
        a = pd.Timestamp(w["first_ts"])
        b = pd.Timestamp(w["last_ts"]) + pd.Timedelta(microseconds=1)
    return {"since": a.isoformat(), "until": b.isoformat()}


def prediction_section(doc: dict[str, Any]) -> str:
    wins = doc["windows"]
    by = doc["by"]
    hists = [w["prediction"]["histogram"] for w in wins]
    edges = next((h["edges"] for h in hists if h["edges"]), [])
    out = (wins[0]["prediction"]["output"] if wins else None) or "output"
    if not edges:
        return section("Predictions", empty("prediction-distribution",
                                            "prediction distribution per window",
                                            "no window with predictions, or no reference"),
                       id="predictions")
    n = len(edges) - 1
    labels = [f"{short_number(edges[i])}–{short_number(edges[i + 1])}"
              for i in reversed(range(n))]
    top = max([max(h["current"] or [0]) for h in hists] + [max(hists[0]["reference"])]) or 1
    cols = [None, *[window_x(w, by) for w in wins]]
    col_labels = ["reference", *[when(window_x(w, by))[5:16] for w in wins]]
    cells = [[(hists[0]["reference"][i] / top, f"reference {labels[n - 1 - i]}: "
               f"{hists[0]['reference'][i]:.1%}")]
             + [((h["current"][i] / top) if h["current"] else None,
                 f"{when(window_x(w, by))} {labels[n - 1 - i]}: "
                 f"{h['current'][i]:.1%}" if h["current"] else "")
                for h, w in zip(hists, wins, strict=True)] for i in reversed(range(n))]
    grid = heatmap("prediction-distribution", f"{out}: share of rows per bin, reference "
                   f"(holdout) then each window", labels, cols, cells,  # type: ignore[arg-type]
                   col_labels=col_labels)
    score = line_chart("prediction-drift", f"{out}: drift score against the holdout's",
                       [Series("score", [window_x(w, by) for w in wins],
                               [w["metrics"].get("prediction.score") for w in wins])],
                       why="no window with a prediction score")
    return section("Predictions", '<div class="grid2">' + grid + score + "</div>",
                   id="predictions")


def quality_section(doc: dict[str, Any], metric: str, held: float | None) -> str:
    wins = doc["windows"]
    by = doc["by"]
    xs = [window_x(w, by) for w in wins]
    realized = [w["metrics"].get(f"quality.{metric}") for w in wins]
    series = [Series(f"realized {metric} (feedback)", xs, realized)]
    if any(f"estimated.{metric}" in w["metrics"] for w in wins):
        series.append(Series(f"estimated {metric} (no labels)", xs,
                             [w["metrics"].get(f"estimated.{metric}") for w in wins]))
    if held is not None and xs:
        series.append(Series(f"holdout {metric}", [xs[0], xs[-1]], [held, held], dashed=True))
    states = [[when(x), count(w["rows"]), w["quality"].get("state"),
               count(w["quality"].get("rows")),
               fmt(w["metrics"].get(f"quality.{metric}")),
               fmt(w["metrics"].get(f"estimated.{metric}")),
               fmt(w["metrics"].get("quality.degradation"))]
              for x, w in zip(xs, wins, strict=True)]
    chart = line_chart("quality", f"{metric} per window", series, width=WIDE,
                       why="no window with labels or an estimate yet")
    return section("Quality", chart, table(["window", "rows", "labels", "labelled rows",
                                            f"realized {metric}", f"estimated {metric}",
                                            "degradation"], states), id="quality")


def groups_section(doc: dict[str, Any], protected: list[str], metric: str) -> str:
    wins = doc["windows"]
    by = doc["by"]
    if not protected:
        return section("Protected groups", "<p>No protected column in the project "
                       "(evaluation.protected).</p>", id="groups")
    charts = []
    for col in protected:
        values: dict[str, dict[int, float]] = {}
        gaps: dict[str, dict[int, float]] = {}
        for j, w in enumerate(wins):
            rep = (w["quality"].get("report") or {}).get("groups") or {}
            g = rep.get(col) or {}
            for grp in g.get("groups") or []:
                m = grp.get(metric, grp.get("tpr"))
                if grp.get("gated") and m is not None:
                    values.setdefault(str(grp.get("value")), {})[j] = m
            for name, gap in (g.get("gaps") or {}).items():
                if name in ("tpr", "fpr", "selection_rate") and gap.get("value") is not None:
                    gaps.setdefault(name, {})[j] = gap["value"]
        xs = [window_x(w, by) for w in wins]
        charts.append(line_chart(f"groups-{col}", f"{metric} per {col} group (gated groups)",
                                 [Series(f"{col}={v}", xs, [d.get(j) for j in range(len(wins))])
                                  for v, d in sorted(values.items())],
                                 why="no labelled window with a group large enough"))
        charts.append(line_chart(f"gaps-{col}", f"{col}: largest gap between groups",
                                 [Series(n, xs, [d.get(j) for j in range(len(wins))])
                                  for n, d in sorted(gaps.items())],
                                 why="no labelled window with two gated groups"))
    return section("Protected groups", '<div class="grid2">' + "".join(charts) + "</div>",
                   id="groups")


def latest_concept(doc: dict[str, Any], links: Links, path: str,
                   here: dict[str, Any]) -> str:
    """The latest window's concept-drift verdict, from its ``concept.drift`` metric (the
    timeline keeps the metrics, not the verdict's state and message: 1 is suspected, 0
    not, missing not judged), with a link to the window's report, which says why."""
    wins = doc["windows"]
    if not wins:
        return ""
    last = wins[-1]
    v = last["metrics"].get("concept.drift")
    mark = (badge("suspected", "bad") if v == 1.0 else badge("not suspected", "ok")
            if v == 0.0 else badge("not judged", "muted"))
    why = ("" if "concept.drift" in last["metrics"] else
           " (this window was judged before the verdict existed)")
    report = links.a("its report", path + "/window", **_bounds(last, doc, here))
    return (f'<p id="concept-latest">Concept drift in the latest window (from '
            f"{esc(when(window_x(last, doc['by'])))}): {mark}{esc(why)}; {report} says "
            f"why and where the model errs.</p>")


def alerts_section(alerts: list[dict[str, Any]] | None, subject: str,
                   concept: str = "") -> str:
    """Firing alerts, after ``concept`` (:func:`latest_concept`'s line)."""
    if alerts is None:
        return section("Alerts", concept, '<p class="why" id="alerts-none">no alert store '
                       "yet: this cd4ml's metadata store has no alerts table</p>", id="alerts")
    if not alerts:
        return section("Alerts", concept, f"<p>No alert firing on {esc(subject)}.</p>",
                       id="alerts")
    return section("Alerts", concept, table(["rule", "severity", "metric", "value",
                                             "threshold", "firing since (UTC)", "rows",
                                             "message"], [
        [a.get("rule"), badge(str(a.get("severity") or "firing"), "bad"), a.get("metric"),
         fmt(a.get("value")), fmt(a.get("threshold")), when(a.get("fired_at")),
         a.get("rows"), a.get("message")] for a in alerts], cls="alerts"), id="alerts")


def forecast_section(fc: dict[str, Any] | None, problem: str, links: Links, path: str,
                     here: dict[str, Any]) -> str:
    if fc is None:
        return section("Forecast", f'<p class="why">{esc(problem)}</p>', id="forecast")
    name = ", ".join(f"{k} {v}" for k, v in fc["series"].items())
    chart = line_chart("forecast", f"{fc['target']} of {name}: history and forecast", [
        Series("history", fc["history"]["dates"], fc["history"]["values"]),
        Series("forecast", fc["forecast"]["dates"], fc["forecast"]["values"])], marks=False,
        width=WIDE, why="the bundle holds no history for this series")
    inputs = "".join(f'<label>{esc(k)} <input name="{esc(k)}" value="{esc(v)}" size="6">'
                     f"</label>" for k, v in fc["series"].items())
    keep = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">'
                   for k, v in here.items() if v is not None and k not in fc["series"])
    form = (f'<form method="get" action="{esc(links.url(path))}" class="inline">{inputs}'
            f"{keep}<button>Show series</button></form>")
    return section("Forecast", form, chart, Raw(
        f"<p>History up to {esc(fc['history_end'])} (bundled at training); "
        f"{len(fc['forecast']['dates'])} weeks forecast after it.</p>"), id="forecast")
