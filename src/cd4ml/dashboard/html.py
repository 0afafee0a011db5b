"""The page around every view: layout, navigation, tables, and how values are written.

Pages are strings built here with every value escaped (:func:`esc`); links are made with
the dashboard's prefix (``/ui`` when mounted beside the model server, empty when
``cd4ml ui`` runs it alone), so one app serves at either place.

>>> fmt(0.90312), fmt(1551.2), fmt(None), fmt(3)
('0.9031', '1,551.20', '–', '3')
>>> table(["a"], [["<b>"]])
'<table><thead><tr><th>a</th></tr></thead><tbody><tr><td>&lt;b&gt;</td></tr></tbody></table>'
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

__all__ = ["Raw", "esc", "fmt", "count", "when", "table", "page", "Links", "badge", "section",
           "compact_json"]


class Raw(str):
    """Markup already escaped (a link, a badge): :func:`table` puts it in as it is."""


def esc(v: Any) -> str:
    return v if isinstance(v, Raw) else escape("" if v is None else str(v))


def fmt(v: Any) -> str:
    """Numbers as the CLI writes them: four decimals below 10, else two, with commas."""
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, float):
        return str(v)
    if v != v:  # NaN
        return "–"
    return f"{v:,.2f}" if abs(v) >= 10 else f"{v:.4f}"


def count(v: Any) -> str:
    """A count (Prometheus gives floats): ``1,234``; other numbers as :func:`fmt`.

    >>> count(1234.0), count(None), count(2.5)
    ('1,234', '–', '2.5000')
    """
    if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer():
        return f"{int(v):,}"
    return fmt(v)


def when(v: Any) -> str:
    """A datetime or epoch seconds as ``YYYY-MM-DD HH:MM:SS`` UTC."""
    if v is None:
        return "–"
    if isinstance(v, (int, float)):
        v = dt.datetime.fromtimestamp(v, dt.timezone.utc)
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return str(v)[:19]


def badge(text: str, kind: str) -> Raw:
    """A small coloured label: kind ok, bad, warn or muted."""
    return Raw(f'<span class="badge {esc(kind)}">{esc(text)}</span>')


def table(head: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str = "",
          none: str = "none") -> str:
    """A table; with no row, one cell saying ``none``."""
    attr = f' class="{esc(cls)}"' if cls else ""
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    if not body:
        body = f'<tr><td class="why" colspan="{len(head)}">{esc(none)}</td></tr>'
    return f"<table{attr}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def section(title: str, *parts: str, id: str = "") -> str:
    anchor = f' id="{esc(id)}"' if id else ""
    return f"<section{anchor}><h2>{esc(title)}</h2>{''.join(parts)}</section>"


class Links:
    """URLs inside the dashboard, under its prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def url(self, path: str, **query: Any) -> str:
        q = {k: v for k, v in query.items() if v is not None and v != ""}
        return self.prefix + path + ("?" + urlencode(q) if q else "")

    def a(self, text: Any, path: str, **query: Any) -> Raw:
        return Raw(f'<a href="{esc(self.url(path, **query))}">{esc(text)}</a>')

    def run(self, run_id: str | None) -> Raw | str:
        return self.a(run_id, f"/runs/{run_id}") if run_id else "–"

    def version(self, model: str, version: int) -> Raw:
        return self.a(f"v{version}", f"/models/{model}/{version}")

    def monitor(self, model: str, ref: Any, text: str | None = None) -> Raw:
        return self.a(text or f"{model}@{ref}", f"/monitor/{model}/{ref}")


_NAV = (("Overview", "/"), ("Runs", "/runs"), ("Models", "/models"),
        ("Monitoring", "/monitor"), ("Audit", "/audit"))


def page(title: str, body: str, *, links: Links, active: str = "",
         project: str = "") -> str:
    """A whole HTML document: the stylesheet shipped in the package, the navigation."""
    nav = "".join(f'<a href="{esc(links.url(path))}"'
                  f'{" class=on" if name == active else ""}>{esc(name)}</a>'
                  for name, path in _NAV)
    css = esc(links.url("/assets/dashboard.css"))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)} · cd4ml</title>"
            f'<link rel="stylesheet" href="{css}"></head><body>'
            f'<header><span class="brand">cd4ml</span>'
            f'<span class="project">{esc(project)}</span><nav>{nav}</nav></header>'
            f"<main><h1>{esc(title)}</h1>{body}</main></body></html>")


def compact_json(v: Any, limit: int = 160) -> str:
    text = json.dumps(v, default=str, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit - 1] + "…"
