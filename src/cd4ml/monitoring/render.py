"""``cd4ml monitor``'s report as text: rich tables of drift, lines for the rest."""

from __future__ import annotations

from typing import Any

__all__ = ["drift_table", "print_report", "print_alerts"]

_STYLE = {"drifted": "bold red", "ok": "green", "insufficient": "yellow",
          "not comparable": "yellow", "missing column": "bold red"}


def _num(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def _rate(v: Any) -> str:
    return "" if v is None else f"{100 * v:.0f}%"


def drift_table(report: dict[str, Any], title: str) -> Any:
    """One row per column: state, method and score, missing rates, new categories, why."""
    from rich.table import Table

    cols = report["columns"]
    if cols and all(c["state"] == "insufficient" for c in cols.values()):
        from rich.text import Text

        first = next(iter(cols.values()))
        return Text(f"{title}: insufficient data in every column ({first['message']})")
    t = Table(title=title, title_justify="left")
    for h in ("column", "state", "method", "score", "limit", "missing", "new cats"):
        t.add_column(h, no_wrap=True)
    t.add_column("note", overflow="fold")
    for name, c in report["columns"].items():
        state = "drifted" if c["drifted"] else c["state"]
        miss = c.get("missing") or {}
        new = c.get("new_categories") or {}
        t.add_row(name, f"[{_STYLE.get(state, '')}]{state}[/]", c.get("method") or "",
                  _num(c.get("score")), _num(c.get("threshold")),
                  f"{_rate(miss.get('reference'))}→{_rate(miss.get('current'))}"
                  if miss else "", _rate(new.get("rate")) if new else "",
                  c.get("message") or "")
    return t


def _fig(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _share(rep: dict[str, Any]) -> str:
    share = rep["share_drifted"]
    return (f"drifted: {len(rep['drifted'])} of {len(rep['columns'])} columns "
            f"({'n/a' if share is None else f'{100 * share:.0f} %'}); dataset "
            f"{'DRIFTED' if rep['dataset_drifted'] else 'not drifted'} (at "
            f"{100 * rep['drift_share']:.0f} %)")


def print_report(console: Any, doc: dict[str, Any]) -> None:
    """``cd4ml monitor``'s report, section by section."""
    ref = doc["reference"]
    console.print(f"{doc['model']} v{doc['version']} ({doc['asked']}): reference "
                  f"{ref['state']}{': ' + ref['message'] if ref.get('message') else ''}")
    data = doc.get("data")
    if data is not None:
        if "drift" not in data or data["state"] == "insufficient":
            console.print(f"data: {data['state']}: {data.get('message', '')}")
        else:
            console.print(drift_table(data["drift"], f"data drift: {data['rows']:,} "
                                                     f"{data['rows_chosen']}"))
            console.print(_share(data["drift"]))
    log = doc.get("log")
    if log is None:
        return
    ew = log.get("window") or {}
    if ew.get("by") == "event":
        console.print(f"log window by event time, from {ew['event_time']}: "
                      f"{ew['first_event']} to {ew['last_event']}; "
                      f"{ew['without_event_time']:,} rows without an event time")
    if not log["rows"]:
        console.print("log: no logged prediction of this version in the window")
        return
    w = log["window"]
    if log["drift"].get("state") == "not applicable":
        console.print(f"input drift: not applicable: {log['drift']['message']}")
    else:
        console.print(drift_table(log["drift"], f"input drift: {log['rows']:,} logged rows "
                                                f"({w['first_ts']} to {w['last_ts']})"))
        console.print(_share(log["drift"]))
    for name, c in log["prediction"]["columns"].items():
        score = "" if c.get("score") is None else f", {c['method']} {c['score']:.4g}"
        note = f" — {c['message']}" if c.get("message") else ""
        console.print(f"prediction drift ({name}): {c['state']}{score}{note}")
    q = log["quality"]
    if q["state"] == "ok":
        m = log["metrics"]
        metric = next(k for k in m if k.startswith("quality.") and k != "quality.degradation")
        console.print(f"quality on {q['rows']:,} labelled rows: {metric.split('.', 1)[1]} "
                      f"{_fig(m[metric])} (holdout {_fig(q.get('reference'))}; degradation "
                      f"{_fig(m.get('quality.degradation'))})")
    else:
        console.print(f"quality: {q['state']}: {q.get('message', '')}")
    est = log.get("estimated")
    if est is not None:
        console.print(f"estimated without labels on {est['rows']:,} rows: roc_auc "
                      f"{_fig(est['roc_auc'])}, accuracy {_fig(est['accuracy'])}"
                      + (f" ({'; '.join(est['undefined'].values())})"
                         if est.get("undefined") else ""))
    concept = log.get("concept")
    if concept is not None and concept["state"] != "not judged":
        console.print(f"concept drift: {concept['state']} — {concept['message']}")
    res = log.get("residuals") or {}
    ranked = sorted((res.get("inputs") or {}).items(), key=lambda kv: -kv[1].get("excess", 0))
    worst = [f"{c} {', '.join(v['worst'])}" for c, v in ranked if v.get("worst")]
    if worst:
        console.print(f"where it errs most, by input ({res['error_name']} "
                      f"{_fig(res['error'])} overall): " + "; ".join(worst[:5]))
    skew = log.get("skew")
    if skew is not None:
        console.print(f"skew: {skew['state']}"
                      + (f": {skew['message']} ({', '.join(skew['skewed_features'])})"
                         if skew.get("skewed_features") else ""))


_ALERT_STYLE = {"firing": "bold red", "pending": "yellow", "resolved": "green",
                "inactive": "dim"}


def print_alerts(console: Any, doc: dict[str, Any]) -> None:
    """The alert rules' states after an evaluation (``cd4ml monitor``)."""
    from rich.table import Table

    if "rules" not in doc:
        console.print(f"alerts: {doc.get('note', '')}")
        return
    t = Table(title=f"alerts of {doc['subject']} ({doc['at']})", title_justify="left")
    for h in ("rule", "state", "value", "threshold", "note"):
        t.add_column(h, overflow="fold", no_wrap=h != "note")
    for r in doc["rules"]:
        st = r.get("state") or ""
        t.add_row(r["rule"], f"[{_ALERT_STYLE.get(st, '')}]{st}[/]", _num(r.get("value")),
                  _num(r.get("threshold")), r.get("message") or r.get("note") or "")
    console.print(t)
    for tr in doc["transitions"]:
        console.print(f"{tr['rule']}: {tr['from']} -> {tr['to']}")
