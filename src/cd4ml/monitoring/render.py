"""The drift report as a rich table, for ``cd4ml monitor``."""

from __future__ import annotations

from typing import Any

__all__ = ["drift_table"]

_STYLE = {"drifted": "bold red", "ok": "green", "insufficient": "yellow",
          "not comparable": "yellow", "missing column": "bold red"}


def _num(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def _rate(v: Any) -> str:
    return "" if v is None else f"{100 * v:.1f} %"


def drift_table(report: dict[str, Any], title: str) -> Any:
    """One row per column: state, method and score, missing rates, new categories, why."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for h in ("column", "state", "method", "score", "threshold", "missing ref → now",
              "new categories", "note"):
        t.add_column(h)
    for name, c in report["columns"].items():
        state = "drifted" if c["drifted"] else c["state"]
        miss = c.get("missing") or {}
        new = c.get("new_categories") or {}
        t.add_row(name, f"[{_STYLE.get(state, '')}]{state}[/]", c.get("method") or "",
                  _num(c.get("score")), _num(c.get("threshold")),
                  f"{_rate(miss.get('reference'))} → {_rate(miss.get('current'))}"
                  if miss else "", _rate(new.get("rate")) if new else "",
                  c.get("message") or "")
    return t
