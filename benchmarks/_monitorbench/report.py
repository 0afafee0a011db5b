"""The tables and the issue's goals, from the list of runs (one per tool, case and size)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from _monitorbench.scipy_check import TOLERANCE, canonical

__all__ = ["ISSUE", "finding", "column_view", "agreement", "print_runs", "print_agreement",
           "print_cbpe", "print_scipy", "goals", "print_goals", "find"]

#: the peers as the issue measured them on this kind of machine: (seconds, MB, what)
ISSUE: dict[tuple[str, str, str], tuple[float, float | None, str]] = {
    ("walmart", "evidently", "drift"): (6.0, 646, "6.0 s, 646 MB peak"),
    ("walmart-4.2m", "evidently", "drift"): (90.0, 2800, "90 s, 2.8 GB"),
    ("walmart-10.5m", "evidently", "drift"): (248.0, 6300, "248 s, 6.3 GB"),
    ("acs", "evidently", "drift"): (2.7, 550, "2.7 s, ~0.55 GB (2015 vs 2018 only)"),
    ("acs", "nannyml", "drift"): (2.1, 550, "2.1 s, ~0.55 GB"),
    ("acs", "nannyml", "cbpe"): (1.6, 550, "1.6 s, ~0.55 GB (2015 as reference)"),
}
TOOLS = ["cd4ml", "evidently", "nannyml"]
GOAL_SPEED, GOAL_MEMORY = 20.0, 0.25


def find(runs: list[dict[str, Any]], tool: str, size: str, case: str,
         ) -> dict[str, Any] | None:
    return next((r for r in runs if r["tool"] == tool and r["size"] == size
                 and r["case"] == case and not r.get("probe")), None)


def column_view(run: dict[str, Any], col: str) -> dict[str, Any] | None:
    """One column of a whole-window run, the same way for every tool: canonical method,
    the method's score (a p-value or a distance), the method's own verdict and the final
    one (cd4ml's final verdict also asks a second opinion; the peers' is the method's)."""
    c = run.get("columns", {}).get(col)
    if c is None:
        return None
    if "score" in c:
        score = c["score"]
    else:
        score = c["p_value"] if c.get("p_value") is not None else c.get("statistic")
    own = c.get("method_drifted")
    return {"method": canonical(c.get("method")), "score": score,
            "own": c.get("drifted") if own is None else own, "final": c.get("drifted"),
            "state": c.get("state"), "message": c.get("message") or ""}


def agreement(case: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per column: cd4ml and Evidently side by side, and NannyML's alerting chunks."""
    size, name = case["size"], case["name"]
    cd, ev, nm = (find(runs, t, size, name) for t in TOOLS)
    rows, same, agree = [], 0, 0
    for col in [*case["numerical"], *case["categorical"]]:
        a = column_view(cd, col) if cd and not cd.get("error") else None
        b = column_view(ev, col) if ev and not ev.get("error") else None
        n = (nm or {}).get("columns", {}).get(col)
        is_same = bool(a and b and a["method"] == b["method"])
        ok = is_same and a["own"] == b["own"]
        same += is_same
        agree += ok
        rows.append({"column": col, "cd4ml": a, "evidently": b, "same_test": is_same,
                     "agree": ok if is_same else None,
                     "score_diff": abs(a["score"] - b["score"]) if is_same and a["score"]
                     is not None and b["score"] is not None else None,
                     "nannyml": None if n is None else {k: n[k] for k in
                                                        ("method", "alerts", "chunks")}})
    return {"size": size, "case": name, "columns": rows, "same_test": same,
            "agree": agree, "final_agree": sum(
                1 for r in rows if r["cd4ml"] and r["evidently"]
                and r["cd4ml"]["final"] == r["evidently"]["final"])}


def finding(r: dict[str, Any]) -> str:
    if r.get("error"):
        return f"[red]refused:[/red] {r['error'][:70]}"
    if r["task"] == "cbpe":
        e = r.get("max_abs_error")
        return (f"{len(r['chunks'])} chunks, |est - realized| max "
                f"{e:.3f}" if e is not None else f"{len(r['chunks'])} chunks")
    cols = r.get("columns", {})
    if r["tool"] == "nannyml":
        pred = f"; prediction in {r['prediction_alerts']}" if r.get(
            "prediction_alerts") is not None else ""
        quiet = r.get("unscored_features") or []
        unscored = f"; {len(quiet)} unscored (NaN)" if quiet else ""
        return (f"{r['alerting_features']}/{r['features']} alert in >= 1 of {r['chunks']} "
                f"chunks{pred}{unscored}")
    n = sum(1 for c in cols.values() if c.get("drifted"))
    return f"{n}/{len(cols)} drifted"


def _ratio(x: float | None, y: float | None) -> str:
    return f"{x / y:,.1f}×" if x and y else ""


def print_runs(console: Console, runs: list[dict[str, Any]]) -> None:
    t = Table(title="Time and memory, one process per tool (peak MB: peak RSS minus RSS "
                    "after loading the frames; ×: the peer's figure over cd4ml's, same frames)")
    for c in ("size", "case", "tool", "rows ref / cur", "seconds", "CPU s", "peak MB",
              "peak RSS MB",
              "× time", "× memory", "finding", "issue's figure"):
        t.add_column(c, justify="left" if c in ("size", "case", "tool", "finding",
                                                "issue's figure") else "right")
    prev = None
    for r in runs:
        if prev is not None and r["size"] != prev:
            t.add_section()
        prev = r["size"]
        ok = not r.get("error")
        cd = find(runs, "cd4ml", r["size"], r["case"])
        cd = cd if cd and not cd.get("error") else None
        rows = r.get("rows") or {}
        peer = r["tool"] != "cd4ml" and ok and not r.get("probe")
        issue = None if r.get("probe") else ISSUE.get((r["size"], r["tool"], r["task"]))
        tool = r["tool"] + (" (real data)" if r.get("probe") else "") + (
            " (earlier run)" if r.get("from") else "")
        t.add_row(r["size"], r["case"], tool,
                  f"{rows.get('reference', 0):,} / {rows.get('current', 0):,}" if rows else "",
                  f"{r['seconds']:,.2f}" if ok else "", f"{r['cpu_s']:,.2f}" if ok else "",
                  f"{r['peak_mb']:,.0f}" if ok else "",
                  f"{r['peak_total_mb']:,.0f}" if ok else "",
                  _ratio(r.get("seconds"), cd and cd["seconds"]) if peer else "",
                  _ratio(r.get("peak_mb"), cd and cd["peak_mb"]) if peer else "",
                  finding(r), issue[2] if issue else "")
    console.print(t)


def print_agreement(console: Console, agr: dict[str, Any]) -> None:
    t = Table(title=f"{agr['size']}: {agr['case']}, per column (verdict: the method's own; "
                    f"cd4ml's final verdict after its second opinion in brackets when it "
                    f"differs)")
    for c in ("column", "cd4ml method", "cd4ml score", "cd4ml", "Evidently method",
              "Evidently score", "Evidently", "same test", "agree", "NannyML alerts"):
        t.add_column(c, justify="right" if "score" in c else "left")

    def v(x: dict[str, Any] | None) -> tuple[str, str, str]:
        if x is None:
            return "", "", "-"
        verdict = "drift" if x["own"] else "ok"
        if x["final"] != x["own"]:
            verdict += f" [{'drift' if x['final'] else 'ok'}]"
        score = "" if x["score"] is None else f"{x['score']:.4g}"
        return x["method"] or f"({x['state'] or 'no method'})", score, verdict

    for r in agr["columns"]:
        n = r["nannyml"]
        t.add_row(r["column"], *v(r["cd4ml"]), *v(r["evidently"]),
                  "yes" if r["same_test"] else "", {True: "[green]yes[/green]",
                                                    False: "[red]NO[/red]"}.get(r["agree"], ""),
                  f"{n['alerts']}/{n['chunks']}" if n else "")
    console.print(t)
    console.print(f"  same test on {agr['same_test']} columns, verdicts agree on "
                  f"{agr['agree']} of them; final verdicts agree on {agr['final_agree']}")


def print_cbpe(console: Console, r: dict[str, Any], most: int = 30) -> None:
    """Every chunk, or (over ``most`` chunks) the ranges in one line."""
    if r.get("error") or not r.get("chunks"):
        return
    cs = r["chunks"]
    if len(cs) > most:
        est, real = [c["estimated"] for c in cs], [c["realized"] for c in cs]
        console.print(f"{r['tool']} CBPE, {r['size']}: {r['case']}: {len(cs)} chunks, estimated "
                      f"{min(est):.4f}-{max(est):.4f}, realized {min(real):.4f}-"
                      f"{max(real):.4f}, |diff| max {r['max_abs_error']:.4f} (mean "
                      f"{r['mean_abs_error']:.4f}), {r['alerts']} alerting chunks")
        return
    t = Table(title=f"{r['tool']} CBPE, {r['size']}: {r['case']} (roc_auc per chunk of 10,000)")
    for c in ("chunk", "rows", "estimated", "realized", "|diff|", "alert"):
        t.add_column(c, justify="right")
    for i, c in enumerate(r["chunks"]):
        d = abs(c["estimated"] - c["realized"]) if None not in (c["estimated"],
                                                                c["realized"]) else None
        t.add_row(str(i), f"{c['rows']:,}", f"{c['estimated']:.4f}", f"{c['realized']:.4f}",
                  f"{d:.4f}" if d is not None else "", "yes" if c["alert"] else "")
    console.print(t)


def print_scipy(console: Console, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    t = Table(title=f"Scores against SciPy's on the same rows (within {TOLERANCE:g})")
    for c in ("tool", "size", "checked", "within", "largest |diff|", "outside (column: diff)"):
        t.add_column(c)
    keys = sorted({(r["tool"], r["size"]) for r in rows}, key=str)
    for tool, size in keys:
        rs = [r for r in rows if (r["tool"], r["size"]) == (tool, size) and r["within"]
              is not None]
        bad = [r for r in rs if not r["within"]]
        worst = max((r["abs_diff"] for r in rs), default=None)
        t.add_row(tool, size, str(len(rs)), str(len(rs) - len(bad)),
                  f"{worst:.2e}" if worst is not None else "",
                  ", ".join(f"{r['column']} {r['method']}: {r['abs_diff']:.2e}"
                            f"{' (' + r['note'] + ')' if r['note'] else ''}" for r in bad[:6]))
    console.print(t)


def goals(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in runs:
        if r["tool"] == "cd4ml" or r.get("error") or r.get("probe"):
            continue
        cd = find(runs, "cd4ml", r["size"], r["case"])
        if not cd or cd.get("error"):
            continue
        s = r["seconds"] / cd["seconds"]
        out.append({"goal": f"{r['size']} {r['case']}: time vs {r['tool']}", "value": s,
                    "target": f">= {GOAL_SPEED:g}×", "passed": s >= GOAL_SPEED,
                    "detail": f"{cd['seconds']:.3f} s vs {r['seconds']:.3f} s"})
        m = cd["peak_mb"] / r["peak_mb"] if r["peak_mb"] > 0 else float("inf")
        out.append({"goal": f"{r['size']} {r['case']}: memory vs {r['tool']}", "value": m,
                    "target": f"<= {GOAL_MEMORY:g} of the peer's", "passed": m <= GOAL_MEMORY,
                    "detail": f"{cd['peak_mb']:.0f} MB vs {r['peak_mb']:.0f} MB"})
    cds = [r for r in runs if r["tool"] == "cd4ml"]
    refused = [r for r in cds if r.get("error")]
    if cds:
        out.append({"goal": "cd4ml: no refusal on real data", "value": float(len(refused)),
                    "target": "0", "passed": not refused,
                    "detail": "; ".join(f"{r['size']} {r['case']}: {r['error'][:120]}"
                                        for r in refused) or f"{len(cds)} runs answered"})
    return out


def print_goals(console: Console, gs: list[dict[str, Any]]) -> None:
    if not gs:
        return
    t = Table(title="Goals of issue 13 (benchmark)")
    for c in ("goal", "value", "target", "result", "detail"):
        t.add_column(c, justify="right" if c == "value" else "left")
    for g in gs:
        val = f"{g['value']:.2f}" + ("×" if "×" in g["target"] else "")
        t.add_row(g["goal"], val, g["target"], "[green]PASS[/green]" if g["passed"]
                  else "[red]FAIL[/red]", g["detail"])
    console.print(t)
