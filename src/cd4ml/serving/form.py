"""The "Sales forecast" page at ``/``: a form of the series keys and the week."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np

from cd4ml.errors import RequestError
from cd4ml.registry.servable import ServableModel

__all__ = ["page", "form_value", "form_defaults", "forecast_form"]

Score = Callable[[list[Any]], Awaitable[np.ndarray]]


async def forecast_form(m: ServableModel, query: Mapping[str, str],
                        score: Score) -> tuple[str, int]:
    """The page and its status; with any field in ``query``, the forecast it asks for
    (``score``: the server's path, logged)."""
    store, dept, date = query.get("store"), query.get("dept"), query.get("date")
    result, status = "", 200
    if store is not None or dept is not None or date is not None:
        fields = list(m.fields)
        # a field left out takes the value the form shows for it
        store, dept, date = form_defaults(m, store, dept, date)
        rec = dict(zip(fields, [form_value(store), form_value(dept), date], strict=False))
        try:  # the form's forecasts are predictions too: the same path, logged
            value = float((await score([rec]))[0])
            result = (f'<p class="result">Forecast of weekly sales for store '
                      f'{html.escape(str(store))}, department {html.escape(str(dept))}, '
                      f'week of {html.escape(str(date))}: <b id="forecast">'
                      f'${value:,.2f}</b></p>')
        except RequestError as exc:
            result = f'<p class="error" id="error">{html.escape(str(exc))}</p>'
            status = 422
    return page(m, store, dept, date, result), status


def form_value(v: str | None) -> Any:
    if v is None:
        return None
    try:
        f = float(v)
        return int(f) if f.is_integer() else f
    except ValueError:
        return v


def form_defaults(m: ServableModel, store: str | None, dept: str | None,
                  date: str | None) -> tuple[str, str | None, str]:
    """The fields as the form would send them: one left out takes the form's default
    (the first store and department listed, the last servable date)."""
    stores, depts = _choices(m)
    if store is None:
        store = _txt(stores[0])
    if dept is None and depts:
        dept = _txt(depts[0])
    return store, dept, date if date is not None else str(m.last.date())


def _choices(m: ServableModel) -> tuple[list[Any], list[Any]]:
    """The stores and departments the form lists, in its order."""
    keys = sorted(m.series_index)
    return sorted({k[0] for k in keys}), (sorted({k[1] for k in keys})
                                          if len(keys[0]) > 1 else [])


def page(m: ServableModel, store: Any, dept: Any, date: Any, result: str) -> str:
    stores, depts = _choices(m)

    def options(vals: list[Any], cur: Any) -> str:
        return "".join(f'<option value="{_txt(v)}"{" selected" if _txt(v) == cur else ""}>'
                       f"{_txt(v)}</option>" for v in vals)

    last = m.last.date()
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Sales forecast</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}label{{display:block;
margin:.6em 0}}.result{{font-size:1.3em}}.error{{color:#b00}}</style></head><body>
<h1>Sales forecast</h1>
<p>Model <b>{html.escape(m.name)}</b> version <b>{m.version}</b>; history ends
{m.history_end.date()}, forecasts up to {last}.</p>
<form method="get" action="/">
<label>Date <input type="date" name="date" value="{html.escape(str(date or last))}"
 min="{m.start.date()}" max="{last}" step="{m.step.days}"></label>
<label>Store <select name="store">{options(stores, store)}</select></label>
<label>Department <select name="dept">{options(depts, dept)}</select></label>
<button type="submit">Forecast</button></form>{result}</body></html>"""


def _txt(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
