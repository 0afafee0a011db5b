"""The views: each reads a request's path and query, the project's stores and log, and
returns (title, body, active tab) for :meth:`~cd4ml.dashboard.app.Dashboard.endpoint`.

The monitoring page's query (every value checked, a 422 naming the one that is not):
``by`` (``time`` or ``count``), ``size`` (``1h``, ``1d`` … or rows; default: chosen so the
log's span gives at most 48 windows), ``since`` and ``until`` (ISO time or an age such as
``7d``), ``window`` (which window the feature histogram shows: an index, ``-1`` the last),
``feature`` (a reference feature; default the most shifted in that window), and for a
forecast the series' key fields (``store``, ``dept``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cd4ml.dashboard.app import bad_query, choice, integer, time_param
from cd4ml.dashboard.html import badge, esc, section, table, when
from cd4ml.errors import ModelError

if TYPE_CHECKING:
    from starlette.requests import Request

    from cd4ml.dashboard.app import Dashboard

__all__ = ["overview", "runs", "run", "compare", "models", "version", "audit",
           "monitor_index", "served", "window"]

Scrape = tuple[str | None, str, str]
View = tuple[str, str, str]


def overview(d: Dashboard, request: Request, scraped: Scrape) -> View:
    from cd4ml.dashboard.served import firing_alerts

    cfg, stores, _ = d.open()
    L = d.links
    with stores:
        md = stores.metadata
        models_ = md.list_models()
        recent = md.list_runs(5)
        rows = []
        for m in models_:
            for alias, v in sorted((m.get("aliases") or {}).items()):
                alerts = firing_alerts(md, f"{m['name']}@{v}")
                rows.append([m["name"], alias, L.version(m["name"], v),
                             L.monitor(m["name"], alias, "monitoring"),
                             "no alert store" if alerts is None else
                             badge(f"{len(alerts)} firing", "bad") if alerts else
                             badge("none firing", "ok")])
    served_by = f"served alias: {cfg.serving.alias}"
    server = ("<p>Reading the model server's metrics from " + esc(scraped[1]) + ".</p>"
              if scraped[0] is not None else f'<p class="why">{esc(scraped[2])}</p>')
    body = (section("Models", f"<p>{esc(cfg.task)} project; {esc(served_by)}</p>",
                    table(["model", "alias", "version", "", "alerts"], rows) if rows else
                    "<p>No alias set yet: a run whose gate passes sets one.</p>")
            + section("Recent runs", table(["run", "status", "started (UTC)", "selected"], [
                [L.run(r["id"]), r["status"], when(r["started_at"]),
                 (r.get("summary") or {}).get("selected") or "–"] for r in recent]))
            + section("Server", server))
    return "Overview", body, "Overview"


def runs(d: Dashboard, request: Request, scraped: Scrape) -> View:
    from cd4ml.dashboard.registry_pages import runs_page

    limit = integer(request.query_params, "limit", 50, 1, 1000)
    cfg, stores, _ = d.open()
    with stores:
        return "Runs", runs_page(stores.metadata, cfg, d.links, limit), "Runs"


def run(d: Dashboard, request: Request, scraped: Scrape) -> View:
    from cd4ml.dashboard.registry_pages import run_page

    rid = request.path_params["run_id"]
    cfg, stores, _ = d.open()
    with stores:
        return f"Run {rid}", run_page(stores.metadata, cfg, d.links, rid), "Runs"


def compare(d: Dashboard, request: Request, scraped: Scrape) -> View:
    from cd4ml.dashboard.registry_pages import compare_page

    q = request.query_params
    for name in ("a", "b"):
        if not q.get(name):
            raise bad_query(name, q.get(name), "pick two runs to compare (run ids, or their "
                            "first characters)")
    cfg, stores, _ = d.open()
    with stores:
        body = compare_page(stores.metadata, cfg, d.links, q["a"], q["b"])
    return f"Compare {q['a']} and {q['b']}", body, "Runs"


def models(d: Dashboard, request: Request, scraped: Scrape) -> View:
    from cd4ml.dashboard.registry_pages import models_page

    cfg, stores, _ = d.open()
    with stores:
        return "Models", models_page(stores.metadata, cfg, d.links), "Models"


def version(d: Dashboard, request: Request, scraped: Scrape) -> View:
    from cd4ml.dashboard.registry_pages import version_page

    name, v = request.path_params["name"], request.path_params["version"]
    if not v.isdigit():
        raise bad_query("version", v, "expected a version number (aliases: /monitor)")
    cfg, stores, _ = d.open()
    with stores:
        body = version_page(stores.metadata, cfg, d.links, name, int(v))
    return f"{name} v{v}", body, "Models"


def audit(d: Dashboard, request: Request, scraped: Scrape) -> View:
    from cd4ml.dashboard.registry_pages import audit_page

    q = request.query_params
    limit = integer(q, "limit", 200, 1, 10_000)
    _, stores, _ = d.open()
    with stores:
        return "Audit trail", audit_page(stores.metadata, d.links, limit,
                                         q.get("object") or None), "Audit"


def monitor_index(d: Dashboard, request: Request, scraped: Scrape) -> View:
    cfg, stores, _ = d.open()
    with stores:
        ms = stores.metadata.list_models()
    rows = [[m["name"], ", ".join(d.links.monitor(m["name"], a, f"{a} (v{v})")
                                  for a, v in sorted((m.get("aliases") or {}).items())) or "–",
             ", ".join(d.links.monitor(m["name"], k, f"v{k}")
                       for k in range(1, m["last_version"] + 1))] for m in ms]
    body = (f"<p>The server serves {esc(cfg.models.name)}@{esc(cfg.serving.alias)}: "
            f"{d.links.monitor(cfg.models.name, cfg.serving.alias)}.</p>"
            + table(["model", "aliases", "versions"], rows))
    return "Monitoring", body, "Monitoring"


def _window_query(q: Any) -> dict[str, Any]:
    from cd4ml.pipeline.monitor_timeline import window_size

    by = choice(q, "by", ("time", "count"), "time")
    size = q.get("size") or None
    if size is not None:
        try:
            window_size(by, size)
        except ValueError as exc:
            raise bad_query("size", size, str(exc).split(": ", 1)[-1]) from None
    since, until = time_param(q, "since"), time_param(q, "until")
    if since is not None and until is not None and until <= since:
        raise bad_query("until", q.get("until"), "must be later than since")
    return {"by": by, "size": size, "since": since, "until": until,
            "window": integer(q, "window", -1, -100_000, 100_000),
            "feature": q.get("feature") or None}


def served(d: Dashboard, request: Request, scraped: Scrape) -> View:
    """A served model's page (``/monitor/{name}/{alias or version}``)."""
    from cd4ml.dashboard import served as S
    from cd4ml.dashboard import served_page as P
    from cd4ml.dashboard.forecast import series_forecast
    from cd4ml.dashboard.promtext import server_figures
    from cd4ml.monitoring import reference_of
    from cd4ml.pipeline.monitor_timeline import timeline, window_size

    name, ref = request.path_params["name"], request.path_params["ref"]
    q = request.query_params
    w = _window_query(q)
    cfg, stores, root = d.open()
    with stores:
        md = stores.metadata
        row = md.resolve(name, int(ref) if ref.isdigit() else ref)
        ver = row["version"]
        found = reference_of(row, stores.artifacts)
        feats = found.reference.features if found.reference is not None else {}
        if w["feature"] is not None and feats and w["feature"] not in feats:
            raise bad_query("feature", w["feature"], f"expected a feature of the reference: "
                            f"{', '.join(feats)}")
        log_dir = cfg.serving.log.folder_in(root)
        bucket = window_size("time", w["size"]) if w["by"] == "time" and w["size"] else None
        act = S.activity(log_dir, model=name, version=ver, since=w["since"],
                         until=w["until"], bucket_s=bucket)
        size = w["size"] or S.auto_size(w["by"], act.first, act.last, act.total_rows)
        doc = timeline(d.root, d.overrides, model=name, version=str(ver), by=w["by"],
                       size=size, since=w["since"], until=w["until"])
        wins = doc["windows"]
        if wins and not -len(wins) <= w["window"] < len(wins):
            raise bad_query("window", q.get("window"), f"this range has {len(wins)} "
                            f"window(s): expected 0 to {len(wins) - 1}, or -1 for the last")
        feature, hist = w["feature"], None
        if feats:
            if wins and wins[w["window"]]["drift"]:
                sel = wins[w["window"]]
                feature = feature or max(sel["drift"], key=lambda c: (
                    bool(sel["drift"][c]["drifted"]), P.drift_intensity(sel["drift"][c]) or 0))
                rows = S.window_rows(cfg, root, stores, row, found.reference, sel,
                                     by=w["by"], since=w["since"], until=w["until"])
                col = f"input.{feature}"
                hist = S.feature_histogram(feats[feature],
                                           rows[col] if col in rows.columns else None)
        alerts = S.firing_alerts(md, f"{name}@{ver}")
        fc, fc_problem = None, ""
        if cfg.task == "forecast":
            try:
                model, history = d.servables.get(stores, row,
                                                  forecast_table=cfg.serving.forecast_table)
            except ModelError as exc:  # the rest of the page still shows
                fc_problem = f"v{ver} could not be loaded to forecast: {exc}"
            else:
                fc = series_forecast(model, history, q)
    text, source, problem = scraped
    fig = None
    if text is not None:
        try:
            fig = server_figures(text)
        except ValueError as exc:
            problem = f"the text from {source} is not Prometheus text: {exc}"
    path = f"/monitor/{name}/{ref}"
    here = {"by": w["by"], "size": w["size"], "since": q.get("since"),
            "until": q.get("until"), "window": q.get("window")}
    aliases = ", ".join(row.get("aliases") or []) or "no alias"
    state = doc["reference"]["state"]
    head = (f"<p>{esc(name)} v{ver} ({esc(aliases)}), {esc(cfg.task)}; reference: "
            f"{badge(state, 'ok' if state == 'ok' else 'warn')}"
            f" {esc(doc['reference'].get('message') or '')}; {len(wins)} window(s) by "
            f"{esc(w['by'])} of {esc(size)}.</p>" + _form(d, path, here, feature))
    metric = cfg.evaluation.metric
    body = "".join([
        head, P.server_section(fig, source, problem), P.traffic_sections(act),
        P.drift_section(doc, hist, feature, w["window"], d.links, here, path),
        P.prediction_section(doc),
        P.quality_section(doc, metric, (row.get("metrics") or {}).get(metric)),
        P.groups_section(doc, list(cfg.evaluation.protected), metric),
        P.alerts_section(alerts, f"{name}@{ver}", P.latest_concept(doc, d.links, path, here)),
        P.forecast_section(fc, fc_problem, d.links, path, here) if cfg.task == "forecast"
        else ""])
    return f"{name}@{ref}", body, "Monitoring"


def _form(d: Dashboard, path: str, here: dict[str, Any], feature: str | None) -> str:
    sel = "".join(f'<option value="{o}"{" selected" if here["by"] == o else ""}>{o}</option>'
                  for o in ("time", "count"))
    return (f'<form method="get" action="{esc(d.links.url(path))}" class="inline">'
            f'<label>windows by <select name="by">{sel}</select></label>'
            f'<label>size <input name="size" value="{esc(here["size"] or "")}" size="5" '
            f'placeholder="auto"></label>'
            f'<label>since <input name="since" value="{esc(here["since"] or "")}" size="18" '
            f'placeholder="7d or ISO time"></label>'
            f'<label>until <input name="until" value="{esc(here["until"] or "")}" size="18">'
            f"</label>"
            + (f'<input type="hidden" name="feature" value="{esc(feature)}">' if feature
               else "") + "<button>Show</button></form>")


def window(d: Dashboard, request: Request, scraped: Scrape) -> View:
    """One window's full report (``/monitor/{name}/{ref}/window?since=&until=``)."""
    from cd4ml.dashboard.served import feature_histogram
    from cd4ml.dashboard.window_page import window_body
    from cd4ml.monitoring import reference_of
    from cd4ml.pipeline.monitor import monitor
    from cd4ml.pipeline.monitor_cache import window_frame

    name, ref = request.path_params["name"], request.path_params["ref"]
    q = request.query_params
    since, until = time_param(q, "since"), time_param(q, "until")
    doc = monitor(d.root, d.overrides, model=name, version=ref, log=True, since=since,
                  until=until)
    hists: dict[str, dict[str, Any]] = {}
    if doc["reference"].get("state") == "ok":
        cfg, stores, root = d.open()
        with stores:
            row = stores.metadata.resolve(name, int(ref) if ref.isdigit() else ref)
            found = reference_of(row, stores.artifacts)
            df = window_frame(cfg, root, stores, row, found.reference,
                              stores.artifacts.get_json(row["digest"]), {}, since=since,
                              until=until) if found.reference is not None else None
        for c, s in (found.reference.features.items() if found.reference else ()):
            col = f"input.{c}"
            if col in df.columns:
                hists[c] = feature_histogram(s, df[col])
    title = f"{name}@{ref}: window {when(since)} – {when(until)}"
    return title, window_body(doc, hists), "Monitoring"
