"""The tables and the issue's goals, from the list of measured loads."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["variant", "print_floor", "print_loads", "goals", "print_goals"]

MIN_REQUESTS = 30  # fewer answered requests in a run: its figures are not worth much
MLFLOW = "MLflow /invocations"
CD4ML = "cd4ml /predict, log on"
CD4ML_NOLOG = "cd4ml /predict, log off"


def variant(r: dict[str, Any]) -> str:
    if r["server"] == "mlflow":
        return MLFLOW
    log = {True: ", log on", False: ", log off"}.get(r["log"], "")
    return f"cd4ml {r['endpoint']}{log}"


def _few(*rs: dict[str, Any] | None) -> str:
    return " †" if any(r is not None and r["ok_requests"] < MIN_REQUESTS for r in rs) else ""


def _flags(*rs: dict[str, Any] | None) -> str:
    return _few(*rs) + _unbalanced(*rs)


def busy_workers(r: dict[str, Any]) -> int:
    """Processes that did a real share of the run's work (the others idled)."""
    cpu = r.get("cpu_s_by_process") or []
    return sum(1 for t in cpu if t >= 0.25 * cpu[0]) if cpu else 0


def balanced(r: dict[str, Any]) -> bool:
    """Every worker that could take part did (one connection keeps one worker busy)."""
    return "cpu_s_by_process" not in r or busy_workers(r) >= min(r["workers"],
                                                                  r["concurrency"])


def _busy(r: dict[str, Any]) -> str:
    if "cpu_s_by_process" not in r:
        return ""
    return f"{busy_workers(r)}/{r['workers']}{'' if balanced(r) else ' ⚠'}"


def _unbalanced(*rs: dict[str, Any] | None) -> str:
    return " ⚠" if any(r is not None and not balanced(r) for r in rs) else ""


def _key(r: dict[str, Any]) -> tuple[int, int, int]:
    return r["workers"], r["rows_per_request"], r["concurrency"]


def print_floor(console: Console, floor: list[dict[str, Any]]) -> None:
    t = Table(title="In-process floor (no HTTP; one Python loop, time.perf_counter)")
    for c in ("call", "p50 µs", "p99 µs", "calls/s", "rows/s"):
        t.add_column(c, justify="left" if c == "call" else "right")
    for f in floor:
        t.add_row(f["what"], f"{f['p50_us']:,.1f}", f"{f['p99_us']:,.1f}",
                  f"{f['calls_s']:,.0f}", f"{f['rows_s']:,.0f}")
    console.print(t)


def print_loads(console: Console, loads: list[dict[str, Any]]) -> None:
    base = {_key(r): r for r in loads if r["server"] == "mlflow"}
    t = Table(title="HTTP load from wrk (req/s counts 2xx answers; ×MLflow: same workers, "
                    "load and concurrency; CPU ms/req: the server's processes, per answer; "
                    "busy: processes that did the work / workers)")
    for c in ("workers", "load", "conc", "server", "req/s", "rows/s", "p50 ms", "p99 ms",
              "errors", "×MLflow", "CPU ms/req", "busy"):
        t.add_column(c, justify="left" if c in ("load", "server") else "right")
    order = {MLFLOW: 0, CD4ML: 1, "cd4ml /predict": 1, CD4ML_NOLOG: 2}
    rows = sorted(loads, key=lambda r: (*_key(r), order.get(variant(r), 9), variant(r)))
    prev = None
    for r in rows:
        k = _key(r)
        if prev is not None and k[:2] != prev[:2]:
            t.add_section()
        prev = k
        b = base.get(k)
        ratio = (f"{r['req_s'] / b['req_s']:.1f}×" if b and b["req_s"] > 0
                 and r["server"] != "mlflow" else "")
        load = "1 row" if k[1] == 1 else f"{k[1]:,} rows"
        t.add_row(str(k[0]), load, str(k[2]), variant(r), f"{r['req_s']:,.0f}{_few(r)}",
                  f"{r['rows_s']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                  f"[red]{r['errors']}[/red]" if r["errors"] else "0", ratio,
                  f"{r['cpu_ms_per_req']:.2f}" if "cpu_ms_per_req" in r else "", _busy(r))
    console.print(t)
    if any(_few(r) for r in loads):
        console.print(f"† fewer than {MIN_REQUESTS} requests answered in the run (wrk does not "
                      f"count requests still in flight at the end): raise --duration")
    if any(not balanced(r) for r in loads):
        console.print("⚠ not every worker took part (even after --rebalance retries): "
                      "uvicorn's workers share one listening socket and wrk opens its "
                      "keep-alive connections at once, so one worker can accept them all; "
                      "that run measured fewer workers than it says")


def _best(loads: list[dict[str, Any]], name: str, workers: int, rows: int,
          ) -> dict[str, Any] | None:
    """The highest-throughput run of one variant (its saturation point)."""
    cands = [r for r in loads if variant(r) == name and r["workers"] == workers
             and r["rows_per_request"] == rows]
    return max(cands, key=lambda r: r["req_s"]) if cands else None


def _cpu(a: dict[str, Any], b: dict[str, Any], what: str = "MLflow") -> str:
    """The same comparison in server CPU per answer (less sensitive to a busy machine)."""
    if "cpu_ms_per_req" not in a or "cpu_ms_per_req" not in b or not a["cpu_ms_per_req"]:
        return ""
    x, y = a["cpu_ms_per_req"], b["cpu_ms_per_req"]
    if what == "MLflow":
        return f"; server CPU per answer {x:.2f} ms vs MLflow {y:.2f} ms ({y / x:.1f}×)"
    return f"; server CPU per answer {x:.2f} ms with the log, {y:.2f} ms without"


def goals(loads: list[dict[str, Any]], workers: list[int], batch_sizes: list[int],
          paired: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Each goal of issue 3 per worker count: value, target, PASS/FAIL (None: not measured)."""
    out: list[dict[str, Any]] = []

    def add(goal: str, w: int, value: float | None, target: str, ok: bool | None,
            detail: str) -> None:
        out.append({"goal": goal, "workers": w, "value": value, "target": target,
                    "passed": ok, "detail": detail})

    names = {variant(r) for r in loads}
    main = CD4ML if CD4ML in names else "cd4ml /predict"  # no log switch: as configured
    for w in workers:
        c, m = _best(loads, main, w, 1), _best(loads, MLFLOW, w, 1)
        if c and m and m["req_s"] > 0:
            v = c["req_s"] / m["req_s"]
            add("single-row throughput vs MLflow", w, v, ">= 10×", v >= 10,
                f"best over concurrencies: cd4ml {c['req_s']:,.0f} req/s (c={c['concurrency']})"
                f", MLflow {m['req_s']:,.0f} req/s (c={m['concurrency']}){_flags(c, m)}"
                f"{_cpu(c, m)}")
        else:
            add("single-row throughput vs MLflow", w, None, ">= 10×", None, "not measured")
        at8 = [r for r in loads if variant(r) == main and r["workers"] == w
               and r["rows_per_request"] == 1 and r["concurrency"] == 8]
        if at8:
            v = at8[0]["p99_ms"]
            add("p99 at concurrency 8", w, v, "<= 10 ms", v <= 10,
                f"{main}: p50 {at8[0]['p50_ms']:.2f} ms, p99 {v:.2f} ms{_flags(at8[0])}")
        else:
            add("p99 at concurrency 8", w, None, "<= 10 ms", None, "c=8 not measured")
        on, off = _best(loads, CD4ML, w, 1), _best(loads, CD4ML_NOLOG, w, 1)
        pair = next((p for p in paired or [] if p["workers"] == w), None)
        separate = (f"; separate phases (best over concurrencies): log on {on['req_s']:,.0f}, "
                    f"log off {off['req_s']:,.0f} req/s" if on and off else "")
        if pair:
            v = pair["cost_pct"]
            add("prediction log cost", w, v, "<= 12 % of throughput", v <= 12,
                f"{pair['pairs']} interleaved log on/off pairs at c={pair['concurrency']}: "
                f"median {pair['log_on_median']:,.0f} vs {pair['log_off_median']:,.0f} req/s, "
                f"CPU {pair['cpu_ms_per_req_on']:.3f} vs {pair['cpu_ms_per_req_off']:.3f} "
                f"ms/req{separate}")
        elif on and off and off["req_s"] > 0:
            v = 100 * (1 - on["req_s"] / off["req_s"])
            add("prediction log cost", w, v, "<= 12 % of throughput", v <= 12,
                f"single row, best over concurrencies: log on {on['req_s']:,.0f}, "
                f"log off {off['req_s']:,.0f} req/s{_flags(on, off)}{_cpu(on, off, 'off')}")
        else:
            add("prediction log cost", w, None, "<= 12 % of throughput", None,
                "log on/off not both measured")
        for n in batch_sizes:
            c, m = _best(loads, main, w, n), _best(loads, MLFLOW, w, n)
            if c and m and m["rows_s"] > 0:
                v = c["rows_s"] / m["rows_s"]
                add(f"batch of {n:,} rows/s vs MLflow", w, v, ">= 3×", v >= 3,
                    f"cd4ml {c['rows_s']:,.0f} rows/s, MLflow {m['rows_s']:,.0f} rows/s"
                    f"{_flags(c, m)}")
            else:
                add(f"batch of {n:,} rows/s vs MLflow", w, None, ">= 3×", None, "not measured")
    errs = sum(r["errors"] for r in loads) + sum(p["errors"] for p in paired or [])
    add("no failed requests", 0, float(errs), "0 errors", errs == 0,
        f"{errs} non-2xx/socket errors/timeouts over all runs")
    return out


def print_goals(console: Console, results: list[dict[str, Any]]) -> None:
    t = Table(title="Goals of issue 3")
    for c in ("goal", "workers", "value", "target", "result", "detail"):
        t.add_column(c, justify="right" if c in ("workers", "value") else "left")
    for g in results:
        v = g["value"]
        val = "" if v is None else (f"{v:.1f}×" if "×" in g["target"] else f"{v:.1f}")
        res = {True: "[green]PASS[/green]", False: "[red]FAIL[/red]", None: "n/a"}[g["passed"]]
        t.add_row(g["goal"], str(g["workers"] or "all"), val, g["target"], res, g["detail"])
    console.print(t)
