"""Runs, model versions and the audit trail: what ``cd4ml runs``, ``runs diff``,
``models`` and the registry's audit log hold, as pages.

- ``/runs`` — the tracked runs with the project metric on the holdout, charted over runs;
  two radio columns pick the runs to compare;
- ``/runs/{id}`` — one run: its leaderboard, metrics, gate verdict, stages and params;
- ``/runs/compare?a=&b=`` — params that differ and every metric side by side, as MLflow's
  compare view, with the holdout metrics of both charted;
- ``/models`` — every model, its aliases and versions (gate verdict, metric, run);
- ``/models/{name}/{version}`` — a version's gate report rule by rule, its metrics,
  lineage and aliases;
- ``/audit`` — who did what when, and why (``?object=`` narrows it, ``?limit=``).
"""

from __future__ import annotations

from typing import Any

from cd4ml.dashboard.charts import WIDE, Series, bar_chart, line_chart
from cd4ml.dashboard.html import Links, Raw, badge, compact_json, esc, fmt, section, table, when
from cd4ml.store.params import flat

__all__ = ["runs_page", "run_page", "compare_page", "models_page", "version_page",
           "audit_page"]


def _gate_badge(gate: dict[str, Any] | None, kind: str = "candidate") -> Raw:
    if not gate:
        return badge("no gate", "muted")
    if gate.get("passed"):
        return badge("passed", "ok")
    return badge("baseline" if kind == "baseline" else "failed", "muted" if
                 kind == "baseline" else "bad")


def runs_page(md: Any, cfg: Any, links: Links, limit: int) -> str:
    rows = md.list_runs(limit)
    key = f"holdout.selected.{cfg.evaluation.metric}"
    if not rows:
        return "<p>No runs yet: <code>cd4ml run</code> trains, gates and registers.</p>"
    chrono = list(reversed(rows))
    chart = line_chart("runs-metric", f"{key} by run, oldest first", [Series(
        cfg.evaluation.metric, [float(i) for i in range(1, len(chrono) + 1)],
        [(r.get("metrics") or {}).get(key) for r in chrono])], x_time=False, width=WIDE,
        note="x: the run's place in time order (1 = the oldest shown)",
        why="no run with this metric")
    body = []
    for r in rows:
        summ = r.get("summary") or {}
        rid = r["id"]
        body.append([Raw(f'<input type="radio" name="a" value="{esc(rid)}">'),
                     Raw(f'<input type="radio" name="b" value="{esc(rid)}">'),
                     links.run(rid), badge(r["status"], "ok" if r["status"] == "succeeded"
                                           else "bad" if r["status"] == "failed" else "warn"),
                     when(r["started_at"]),
                     f"{r['duration_s']:.1f}s" if r.get("duration_s") is not None else "–",
                     (r.get("git_commit") or "–")[:8] + ("*" if r.get("git_dirty") else ""),
                     summ.get("selected") or "–", _gate_badge(r.get("gate")),
                     fmt((r.get("metrics") or {}).get(key))])
    form = (f'<form method="get" action="{esc(links.url("/runs/compare"))}">'
            + table(["A", "B", "run", "status", "started (UTC)", "duration", "git",
                     "selected", "gate", key], body, cls="runs")
            + '<p><button type="submit">Compare A and B</button></p></form>')
    return chart + form


def run_page(md: Any, cfg: Any, links: Links, run_id: str) -> str:
    r = md.get_run(run_id)
    summ = r.get("summary") or {}
    metric = cfg.evaluation.metric
    board = summ.get("leaderboard") or []
    parts = [table(["run", "status", "started (UTC)", "ended", "git", "config"], [[
        r["id"], r["status"], when(r["started_at"]), when(r.get("ended_at")),
        (r.get("git_commit") or "–") + (" (dirty)" if r.get("git_dirty") else ""),
        (r.get("config_hash") or "")[:12]]])]
    if summ.get("message"):
        parts.append(f"<p>{esc(summ['message'])}</p>")
    if board:
        scored = [b for b in board if not b.get("error")]  # failed models: no metric
        parts.append(bar_chart("leaderboard", f"validation {metric} per candidate",
                               [str(b["model"]) for b in scored],
                               [(metric, [b.get(metric) for b in scored])], width=WIDE))
        errors = any(b.get("error") for b in board)
        parts.append(table(["rank", "model", "baseline", metric, "improvement %",
                            *(["error"] if errors else [])], [[
            b.get("rank") or "–", b.get("model"), "yes" if b.get("is_baseline") else "",
            fmt(b.get(metric)), fmt(b.get("improvement_pct")),
            *([b.get("error") or ""] if errors else [])] for b in board]))
    out = [section("Run", *parts)]
    if r.get("gate"):
        out.append(section("Gate", _gate_table(r["gate"])))
    m = r.get("metrics") or {}
    out.append(section("Metrics", table(["metric", "value"],
                                        [[k, fmt(v)] for k, v in sorted(m.items())])))
    trials = md.child_runs([r["id"]])[r["id"]]
    if trials:
        out.append(section("Search trials", _trials_table(trials, f"validation.{metric}")))
    stages = summ.get("stages") or {}
    if stages:
        out.append(section("Stages", table(["stage", "outcome"], sorted(stages.items()))))
    out.append(section("Params", table(["param", "value"], [
        [k, compact_json(v)] for k, v in flat(r.get("params") or {}).items()])))
    return "".join(out)


def _trials_table(trials: list[dict[str, Any]], key: str) -> str:
    """A run's search trials (its child runs), in the order they were recorded."""
    rows = []
    for c in trials:
        p, summ = c.get("params") or {}, c.get("summary") or {}
        rows.append([p.get("candidate"), p.get("method"), p.get("trial"),
                     compact_json(p.get("params") or {}),
                     badge(c["status"], "ok" if c["status"] == "succeeded" else "bad"),
                     fmt((c.get("metrics") or {}).get(key)) if c["status"] == "succeeded"
                     else c.get("error") or "failed",
                     "reused" if summ.get("cached") else fmt(summ.get("seconds"))])
    return table(["candidate", "method", "trial", "params", "status", key, "seconds"], rows)


def compare_page(md: Any, cfg: Any, links: Links, a: str, b: str) -> str:
    ra, rb = md.get_run(a), md.get_run(b)
    fa, fb = flat(ra.get("params") or {}), flat(rb.get("params") or {})
    params = [[k, compact_json(fa.get(k)), compact_json(fb.get(k))]
              for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]
    ma, mb = ra.get("metrics") or {}, rb.get("metrics") or {}
    rows = []
    for k in sorted(set(ma) | set(mb)):
        x, y = ma.get(k), mb.get(k)
        ch = f"{(y - x) / abs(x) * 100:+.1f}%" if isinstance(x, float) and \
            isinstance(y, float) and x else ""
        rows.append([k, fmt(x), fmt(y), ch, "" if x == y else "≠"])
    keys = sorted(k for k in set(ma) | set(mb) if k.startswith("holdout.selected.")
                  and k.split(".")[-1] not in ("n", "weight_sum", "threshold"))
    chart = bar_chart("compare-metrics", "holdout metrics of the selected model",
                      [k.removeprefix("holdout.selected.") for k in keys],
                      [(f"A {ra['id']}", [ma.get(k) for k in keys]),
                       (f"B {rb['id']}", [mb.get(k) for k in keys])], width=WIDE)
    head = table(["", "run", "started (UTC)", "selected", "gate"], [
        ["A", links.run(ra["id"]), when(ra["started_at"]),
         (ra.get("summary") or {}).get("selected") or "–", _gate_badge(ra.get("gate"))],
        ["B", links.run(rb["id"]), when(rb["started_at"]),
         (rb.get("summary") or {}).get("selected") or "–", _gate_badge(rb.get("gate"))]])
    return (section("Runs", head) + section("Metrics", chart, table(
        ["metric", "A", "B", "change", ""], rows, cls="compare"))
        + section(f"Params that differ ({len(params)})",
                  table(["param", "A", "B"], params) if params else "<p>none</p>"))


def _gate_table(gate: dict[str, Any]) -> str:
    rows = [[r.get("rule"), badge("pass", "ok") if r.get("passed") else badge("fail", "bad"),
             r.get("detail", "")] for r in gate.get("rules") or []]
    out = [f"<p>{_gate_badge(gate)} {esc(gate.get('candidate') or '')} vs baseline "
           f"{esc(gate.get('baseline') or '–')} on {esc(gate.get('metric') or '')}</p>",
           table(["rule", "verdict", "detail"], rows)]
    skipped = [[g.get("column"), g.get("value"), g.get("n"), g.get("reason")]
               for g in gate.get("groups_not_gated") or []]
    skipped += [[s.get("column"), s.get("value"), s.get("n"), s.get("reason")]
                for s in gate.get("slices_not_gated") or [] if isinstance(s, dict)]
    if skipped:
        out.append("<h3>Not gated</h3>" + table(["column", "value", "n", "why"], skipped))
    return "".join(out)


def models_page(md: Any, cfg: Any, links: Links) -> str:
    models = md.list_models()
    if not models:
        return "<p>No model registered yet: a run whose gate passes registers one.</p>"
    metric = cfg.evaluation.metric
    out = []
    for m in models:
        versions = md.list_versions(m["name"])
        aliases = ", ".join(f"{a}→v{v}" for a, v in sorted((m.get("aliases") or {}).items()))
        chrono = sorted(versions, key=lambda v: v["version"])
        chart = line_chart(f"versions-{m['name']}", f"{metric} on the holdout by version", [
            Series(metric, [float(v["version"]) for v in chrono],
                   [(v.get("metrics") or {}).get(metric) for v in chrono])], x_time=False,
            width=WIDE, why="no version with this metric")
        rows = [[links.version(m["name"], v["version"]),
                 ", ".join(v.get("aliases") or []) or "–", v["kind"], v["model_type"],
                 fmt((v.get("metrics") or {}).get(metric)),
                 _gate_badge(v.get("gate"), v["kind"]), links.run(v.get("run_id")),
                 when(v["created_at"]),
                 links.monitor(m["name"], v["version"], "monitor")] for v in versions]
        out.append(section(f"{m['name']}", f"<p>aliases: {esc(aliases or 'none')}</p>",
                           chart, table(["version", "aliases", "kind", "recipe", metric,
                                         "gate", "run", "created (UTC)", ""], rows)))
    return "".join(out)


def version_page(md: Any, cfg: Any, links: Links, name: str, version: int) -> str:
    v = md.resolve(name, version)
    lin = v.get("lineage") or {}
    head = table(["model", "version", "aliases", "kind", "recipe", "run", "created (UTC)",
                  "digest"], [[name, v["version"], ", ".join(v.get("aliases") or []) or "–",
                               v["kind"], v["model_type"], links.run(v.get("run_id")),
                               when(v["created_at"]), v["digest"][:12]]])
    mon = links.monitor(name, v["version"], "its monitoring")
    out = [section("Version", head, f"<p>See {mon}.</p>")]
    if v.get("gate"):
        out.append(section("Gate report", _gate_table(v["gate"])))
    m = v.get("metrics") or {}
    out.append(section("Holdout metrics", table(["metric", "value"], [
        [k, fmt(x) if not isinstance(x, dict) else compact_json(x)]
        for k, x in sorted(m.items())])))
    out.append(section("Lineage", table(["what", "value"], [
        [k, compact_json(x, 200)] for k, x in lin.items()])))
    audit = md.list_audit(50, object=f"{name}/{v['version']}")
    if audit:
        out.append(section("Audit", _audit_table(audit)))
    return "".join(out)


def _audit_table(rows: list[dict[str, Any]]) -> str:
    return table(["when (UTC)", "actor", "action", "object", "reason", "detail"], [
        [when(a["at"]), a["actor"], a["action"], a["object"], a.get("reason") or "",
         compact_json(a.get("detail") or {}, 120)] for a in rows], cls="audit")


def audit_page(md: Any, links: Links, limit: int, obj: str | None) -> str:
    rows = md.list_audit(limit, object=obj)
    what = f" on {esc(obj)}" if obj else ""
    return f"<p>{len(rows)} event(s){what}, newest first.</p>" + _audit_table(rows)
