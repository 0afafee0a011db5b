"""The page at ``/`` for a tabular model: a form built from its signature.

One input per column in signature order: a dropdown of the allowed categories for a
categorical column, a number input bounded by the schema's minimum and maximum for a
numeric one, a text input otherwise. With any column in the query the page also shows
the answer, through the server's one scoring path (logged): a classifier's label and
the probability of each class, a regressor's value. A column left out takes the value
the form shows for it; one left empty is sent as null (its missing-value policy
decides).
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np

from cd4ml.errors import RequestError

__all__ = ["tabular_form", "form_defaults", "form_record"]

Score = Callable[[list[Any]], Awaitable[np.ndarray]]


def _text(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _default(col: dict[str, Any]) -> str:
    """The value the form shows for a column: the first category; the middle of a
    numeric range (the bound where there is one, else 0); empty text."""
    cats = col.get("categories")
    if cats:
        return _text(cats[0])
    if col.get("type") in ("integer", "number"):
        lo, hi = col.get("minimum"), col.get("maximum")
        v = (lo + hi) / 2 if lo is not None and hi is not None else \
            lo if lo is not None else hi if hi is not None else 0
        return _text(int(v) if col["type"] == "integer" else v)
    if col.get("type") == "boolean":
        return "false"
    return ""


def form_defaults(inputs: list[dict[str, Any]]) -> dict[str, str]:
    """Each column's value as the form shows it before anything is chosen."""
    return {c["name"]: _default(c) for c in inputs}


def _value(col: dict[str, Any], text: str) -> Any:
    """A form field's text as the JSON value it stands for (text that does not read as
    the column's type stays text: the model's check names it)."""
    if text == "":
        return None
    kind = col.get("type")
    try:
        if kind == "integer":
            f = float(text)
            return int(f) if f.is_integer() else f
        if kind == "number":
            return float(text)
    except ValueError:
        return text
    if kind == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def form_record(inputs: list[dict[str, Any]], query: Mapping[str, str],
                ) -> tuple[dict[str, str], dict[str, Any] | None]:
    """The values the form shows, and the record to score (None: nothing asked)."""
    shown = form_defaults(inputs)
    asked = False
    for c in inputs:
        v = query.get(c["name"])
        if v is not None:
            shown[c["name"]], asked = v, True
    if not asked:
        return shown, None
    return shown, {c["name"]: _value(c, shown[c["name"]]) for c in inputs}


def _field(col: dict[str, Any], value: str) -> str:
    name = html.escape(col["name"])
    cats = col.get("categories")
    if cats:
        opts = "".join(f'<option value="{html.escape(_text(v))}"'
                       f'{" selected" if _text(v) == value else ""}>'
                       f'{html.escape(_text(v))}</option>' for v in cats)
        return f'<label>{name} <select name="{name}" id="in-{name}">{opts}</select></label>'
    attrs = ""
    if col.get("type") in ("integer", "number"):
        attrs = ' type="number" step="{}"'.format("1" if col["type"] == "integer" else "any")
        for key, attr in (("minimum", "min"), ("maximum", "max")):
            if col.get(key) is not None:
                attrs += f' {attr}="{html.escape(_text(col[key]))}"'
    return (f'<label>{name} <input name="{name}" id="in-{name}"{attrs} '
            f'value="{html.escape(value)}"></label>')


def _errors(exc: RequestError) -> str:
    items = "".join(f'<li>{html.escape(str(e.get("field") or e.get("loc")))}: '
                    f'{html.escape(str(e.get("problem")))}</li>' for e in exc.errors)
    return (f'<div class="error" id="error"><p>{html.escape(str(exc))}</p>'
            f'<ul>{items}</ul></div>')


async def tabular_form(c: Any, query: Mapping[str, str], score: Score) -> tuple[str, int]:
    """The page of a :class:`~cd4ml.serving.contracts.TabularContract`'s model and its
    status (422 when the answer was refused)."""
    inputs = list(c.inputs.values())
    shown, record = form_record(inputs, query)
    result, status = "", 200
    if record is not None:
        try:
            result = c.answers.html(c.answer_rows(await score([record]))[0])
        except RequestError as exc:
            result, status = _errors(exc), 422
    m = c.model
    what = c.answers.title
    target = html.escape(str(m.spec.target))
    fields = "\n".join(_field(col, shown[col["name"]]) for col in inputs)
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>{html.escape(m.name)}</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}label{{display:block;
margin:.4em 0}}.result{{font-size:1.3em}}.error{{color:#b00}}td,th{{padding:0 1em 0 0}}
</style></head><body>
<h1>{what}: {html.escape(m.name)}</h1>
<p>Model <b>{html.escape(m.name)}</b> version <b>{m.version}</b> predicts <b>{target}</b>
from {len(inputs)} inputs.</p>
<form method="get" action="/">
{fields}
<button type="submit">Predict</button></form>{result}</body></html>"""
    return page, status
