"""Charts as server-rendered SVG: plain Python, no script, nothing fetched.

Every chart is a ``<figure class="chart" data-chart="KEY" data-points="N">`` holding an
inline ``<svg>``: ``KEY`` names what it shows and ``N`` counts the values drawn (points of
lines, bars, cells of a heat map; not a dashed reference line), so a test, or a reader
of the page's source, can tell a chart drawn with data from an empty one. A chart
without data is the same figure with ``data-points="0"`` and a sentence saying why.
Colours come from the stylesheet (``assets/dashboard.css``: classes ``s0``…``s5`` per
series); a value's exact figure is in the ``<title>`` of its mark (the browser shows it
on hover).

>>> svg = line_chart("demo", "Demo", [Series("a", [0.0, 1.0], [1.0, 2.0])], x_time=False)
>>> 'data-points="2"' in svg and "<svg" in svg
True
>>> 'data-points="0"' in empty("demo", "Demo", "no rows")
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape

__all__ = ["Series", "line_chart", "bar_chart", "hbar_chart", "heatmap", "empty",
           "nice_ticks", "time_ticks", "short_number"]

W, H = 640, 200  # the drawing's own units (the page scales it to its column)
WIDE = 1200  #: the width of a chart across the whole page
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 10, 30


@dataclass(frozen=True, slots=True)
class Series:
    """One line (or one group of bars): a name, x values and y values (None: a gap)."""

    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    dashed: bool = False  #: a reference (the holdout's figure, say), drawn dashed


def short_number(v: float) -> str:
    """A compact label for an axis: 1.23M, 35k, 0.25, 3e-05.

    >>> [short_number(x) for x in (1_234_567, 35_000, 12.5, 0.25, 0.00003, 0)]
    ['1.23M', '35k', '12.5', '0.25', '3e-05', '0']
    """
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a == 0 or a >= 1e-3:
        return f"{v:.4g}"
    return f"{v:.1g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round values spanning [lo, hi] (steps of 1, 2, 2.5 or 5 × 10^k).

    >>> nice_ticks(0, 0.93)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        lo, hi = lo - (abs(lo) * 0.1 or 1), hi + (abs(hi) * 0.1 or 1)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    first = math.floor(lo / step) * step
    ticks, t = [], first
    while t < hi + step * 0.999:
        ticks.append(round(t, 12))
        t += step
    return ticks


_TIME_STEPS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
               2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400, 182 * 86400,
               365 * 86400)


def time_ticks(lo: float, hi: float, n: int = 6) -> list[tuple[float, str]]:
    """Round UTC times (epoch seconds) in [lo, hi], each with its label.

    >>> [s for _, s in time_ticks(0, 5 * 86400)]
    ['01-01', '01-02', '01-03', '01-04', '01-05', '01-06']
    """
    span = max(hi - lo, 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= n), _TIME_STEPS[-1])
    fmt = "%H:%M:%S" if step < 60 else "%H:%M" if step < 86400 and span <= 86400 else \
        "%m-%d %H:%M" if step < 86400 else "%m-%d" if step < 30 * 86400 and span < 300 * 86400 \
        else "%Y-%m"
    first = math.ceil(lo / step) * step
    out, t = [], first
    while t <= hi:
        out.append((t, datetime.fromtimestamp(t, timezone.utc).strftime(fmt)))
        t += step
    return out


def _label(x: float, x_time: bool) -> str:
    if x_time:
        return datetime.fromtimestamp(x, timezone.utc).strftime("%Y-%m-%d %H:%M")
    return short_number(x)


def _figure(key: str, title: str, points: int, svg: str, legend: str = "",
            note: str = "") -> str:
    cap = f"<figcaption>{escape(title)}</figcaption>"
    tail = f'<p class="note">{escape(note)}</p>' if note else ""
    return (f'<figure class="chart" data-chart="{escape(key)}" data-points="{points}">'
            f"{cap}{legend}{svg}{tail}</figure>")


def empty(key: str, title: str, reason: str) -> str:
    """The figure of a chart with nothing to draw, saying why."""
    return (f'<figure class="chart empty" data-chart="{escape(key)}" data-points="0">'
            f'<figcaption>{escape(title)}</figcaption><p class="why">{escape(reason)}</p>'
            f"</figure>")


def _legend(names: Sequence[tuple[str, bool]]) -> str:
    if len(names) < 2:
        return ""
    items = "".join(f'<span><i class="key s{i % 6}{" dash" if dashed else ""}"></i>'
                    f"{escape(n)}</span>" for i, (n, dashed) in enumerate(names))
    return f'<div class="legend">{items}</div>'


def _svg(body: str, height: int = H, width: int = W) -> str:
    return (f'<svg viewBox="0 0 {width} {height}" preserveAspectRatio="xMidYMid meet" '
            f'role="img" xmlns="http://www.w3.org/2000/svg">{body}</svg>')


def _y_axis(ticks: list[float], y: object, fmt: str | None, width: int = W) -> str:
    out = []
    for t in ticks:
        py = y(t)  # type: ignore[operator]
        label = format(t, fmt) if fmt else short_number(t)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{width - RIGHT}" y1="{py:.1f}" '
                   f'y2="{py:.1f}"/><text class="tick" x="{LEFT - 6}" y="{py + 3:.1f}" '
                   f'text-anchor="end">{escape(label)}</text>')
    return "".join(out)


def line_chart(key: str, title: str, series: Sequence[Series], *, x_time: bool = True,
               y_fmt: str | None = None, y_range: tuple[float, float] | None = None,
               note: str = "", why: str = "", marks: bool | None = None,
               width: int = W, zero: bool = False) -> str:
    """Lines over a shared x axis (epoch seconds with ``x_time``); None values are gaps.
    ``note`` is printed under the chart, ``why`` instead of it when nothing is drawn;
    ``width`` in the drawing's units (``WIDE`` for a chart across the page); ``zero``:
    the y axis starts at 0 (counts)."""
    pts = [(x, y) for s in series for x, y in zip(s.xs, s.ys, strict=True)
           if y is not None and math.isfinite(y)]
    if not any(y is not None and math.isfinite(y) for s in series if not s.dashed
               for y in s.ys):  # a reference line alone is no data
        return empty(key, title, why or "no values in this range")
    w = width
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    lo, hi = y_range if y_range else (min(ys), max(ys))
    if y_range is None and lo > 0 and (zero or lo < 0.3 * hi):
        lo = 0.0  # a count or a rate: from zero when zero is near
    yt = nice_ticks(lo, hi)
    lo, hi = (yt[0], yt[-1]) if yt else (lo, hi)
    pw, ph = w - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return TOP + ph - (y - lo) / ((hi - lo) or 1) * ph

    body = [_y_axis(yt, py, y_fmt, w)]
    if x_time:
        ticks = time_ticks(x0, x1, 5 if w <= W else 9)
    else:  # whole numbers (runs, versions) get whole ticks only
        whole = all(float(x).is_integer() for x in xs)
        ticks = [(t, short_number(t + 0.0)) for t in nice_ticks(x0, x1, 6)
                 if x0 <= t <= x1 and (not whole or float(t).is_integer())]
    for t, label in ticks:
        half = len(label) * 3  # about half the label's width at the ticks' size
        if px(t) - half < LEFT - 30 or px(t) + half > w:  # it would be cut at an edge
            continue
        body.append(f'<text class="tick" x="{px(t):.1f}" y="{H - 10}" '
                    f'text-anchor="middle">{escape(label)}</text>')
    body.append(f'<line class="axis" x1="{LEFT}" x2="{w - RIGHT}" y1="{TOP + ph}" '
                f'y2="{TOP + ph}"/>')
    drawn = 0
    for i, s in enumerate(series):
        seg: list[str] = []
        paths: list[str] = []
        dots: list[str] = []
        show = marks if marks is not None else len(s.xs) <= 60
        for x, y in zip(s.xs, s.ys, strict=True):
            if y is None or not math.isfinite(y):
                if seg:
                    paths.append(" ".join(seg))
                seg = []
                continue
            drawn += 0 if s.dashed else 1
            seg.append(f"{'M' if not seg else 'L'}{px(x):.1f},{py(y):.1f}")
            if show:
                dots.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5"><title>'
                            f"{escape(s.name)} {escape(_label(x, x_time))}: "
                            f"{escape(format(y, y_fmt) if y_fmt else f'{y:.4g}')}</title>"
                            f"</circle>")
        if seg:
            paths.append(" ".join(seg))
        cls = f"s{i % 6}{' dash' if s.dashed else ''}"
        body.append(f'<g class="line {cls}" data-series="{escape(s.name)}">'
                    + "".join(f'<path d="{d}"/>' for d in paths) + "".join(dots) + "</g>")
    return _figure(key, title, drawn, _svg("".join(body), width=w),
                   _legend([(s.name, s.dashed) for s in series]), note)


def bar_chart(key: str, title: str, labels: Sequence[str],
              groups: Sequence[tuple[str, Sequence[float | None]]], *,
              y_fmt: str | None = None, note: str = "", why: str = "",
              width: int = W, reference: tuple[str, float] | None = None,
              faded: Sequence[bool] | None = None,
              hovers: Sequence[str] | None = None) -> str:
    """Vertical bars: one bar per label and group (grouped side by side).
    ``reference``: (name, value) drawn as a dashed line across the chart (the window's
    overall figure, say; not counted in ``data-points``); ``faded``: per label, its bars
    drawn pale (too few rows to trust); ``hovers``: per label, text added to each bar's
    ``<title>``.

    >>> svg = bar_chart("b", "B", ["x", "y"], [("e", [0.2, 0.4])], reference=("all", 0.3),
    ...                 faded=[False, True], hovers=["10 rows", "3 rows"])
    >>> 'data-points="2"' in svg, svg.count('class="faded"'), "y: 0.4 · 3 rows" in svg
    (True, 1, True)
    """
    vals = [v for _, vs in groups for v in vs if v is not None and math.isfinite(v)]
    if not labels or not vals:
        return empty(key, title, why or "nothing to compare")
    w = width
    ref = reference if reference is not None and math.isfinite(reference[1]) else None
    lo, hi = min(0.0, min(vals)), max([*vals, *([ref[1]] if ref else [])])
    yt = nice_ticks(lo, hi)
    lo, hi = (yt[0], yt[-1]) if yt else (lo, hi)
    pw, ph = w - LEFT - RIGHT, H - TOP - BOTTOM - 14
    slot = pw / len(labels)
    bw = slot * 0.8 / max(len(groups), 1)

    def py(y: float) -> float:
        return TOP + ph - (y - lo) / ((hi - lo) or 1) * ph

    body = [_y_axis(yt, py, y_fmt, w)]
    every = max(1, math.ceil(len(labels) / 12))
    for j, label in enumerate(labels):
        if j % every == 0:
            text = label if len(label) <= 12 else label[:11] + "…"
            body.append(f'<text class="tick" x="{LEFT + slot * (j + 0.5):.1f}" '
                        f'y="{H - 26}" text-anchor="middle">{escape(text)}</text>')
    drawn = 0
    for g, (name, vs) in enumerate(groups):
        rects = []
        for j, v in enumerate(vs):
            if v is None or not math.isfinite(v):
                continue
            drawn += 1
            x = LEFT + slot * j + slot * 0.1 + bw * g
            y0, y1 = sorted((py(0.0), py(v)))
            pale = ' class="faded"' if faded is not None and faded[j] else ""
            more = f" · {hovers[j]}" if hovers is not None and hovers[j] else ""
            rects.append(f'<rect{pale} x="{x:.1f}" y="{y0:.1f}" width="{max(bw - 1, 1):.1f}" '
                         f'height="{max(y1 - y0, 0.5):.1f}"><title>{escape(name)} '
                         f"{escape(labels[j])}: "
                         f"{escape(format(v, y_fmt) if y_fmt else f'{v:.4g}')}"
                         f"{escape(more)}</title></rect>")
        body.append(f'<g class="bars s{g % 6}" data-series="{escape(name)}">'
                    + "".join(rects) + "</g>")
    body.append(f'<line class="axis" x1="{LEFT}" x2="{w - RIGHT}" y1="{py(0.0):.1f}" '
                f'y2="{py(0.0):.1f}"/>')
    keys = [(n, False) for n, _ in groups]
    if ref is not None:
        name, v = ref
        text = format(v, y_fmt) if y_fmt else f"{v:.4g}"
        body.append(f'<g class="line s{len(groups) % 6} dash" data-series="{escape(name)}">'
                    f'<path d="M{LEFT},{py(v):.1f} H{w - RIGHT}"><title>{escape(name)}: '
                    f"{escape(text)}</title></path></g>")
        keys.append((name, True))
    return _figure(key, title, drawn, _svg("".join(body), width=w), _legend(keys), note)


def hbar_chart(key: str, title: str, items: Sequence[tuple[str, float]], *,
               note: str = "", why: str = "", fmt: str = ",.0f", width: int = W) -> str:
    """Horizontal bars, one per (label, value), largest first (counts by reason, say)."""
    items = sorted((x for x in items if x[1] > 0), key=lambda x: -x[1])[:15]
    if not items:
        return empty(key, title, why or "none")
    w = width
    row, label_w = 18, 230
    height = TOP + row * len(items) + 8
    top = max(v for _, v in items)
    body = []
    for i, (label, v) in enumerate(items):
        y = TOP + i * row
        bw = (w - label_w - 70) * v / top
        text = label if len(label) <= 38 else label[:37] + "…"
        body.append(f'<text class="tick" x="{label_w - 6}" y="{y + 12}" text-anchor="end">'
                    f'{escape(text)}</text><rect class="s0" x="{label_w}" y="{y + 2}" '
                    f'width="{max(bw, 1):.1f}" height="{row - 5}"><title>{escape(label)}: '
                    f'{format(v, fmt)}</title></rect><text class="tick" '
                    f'x="{label_w + bw + 4:.1f}" y="{y + 12}">{format(v, fmt)}</text>')
    return _figure(key, title, len(items), _svg(f'<g class="bars">{"".join(body)}</g>',
                                                height, w), "", note)


def heatmap(key: str, title: str, rows: Sequence[str], cols: Sequence[float],
            cells: Sequence[Sequence[tuple[float | None, str]]], *, x_time: bool = True,
            col_labels: Sequence[str] | None = None, note: str = "", why: str = "",
            width: int = W) -> str:
    """A grid: one row per name, one column per window (its start); a cell is
    (intensity 0-1 or None for no value, its hover text); a text starting with ``!``
    marks the cell as flagged (drifted), drawn in the alarm colour."""
    n = sum(1 for r in cells for v, _ in r if v is not None)
    if not rows or not cols or n == 0:
        return empty(key, title, why or "no windows in this range")
    w = width
    label_w, row_h = 110, 16
    height = TOP + row_h * len(rows) + 30
    cw = (w - label_w - RIGHT) / len(cols)
    body = []
    for i, name in enumerate(rows):
        y = TOP + i * row_h
        text = name if len(name) <= 16 else name[:15] + "…"
        body.append(f'<text class="tick" x="{label_w - 6}" y="{y + 12}" text-anchor="end">'
                    f"{escape(text)}</text>")
        for j, (v, hover) in enumerate(cells[i]):
            if v is None:
                continue
            flagged = hover.startswith("!")
            cls = "cell alarm" if flagged else "cell"
            body.append(f'<rect class="{cls}" x="{label_w + j * cw:.1f}" y="{y}" '
                        f'width="{max(cw - 1, 0.5):.1f}" height="{row_h - 1}" '
                        f'fill-opacity="{0.12 + 0.88 * min(max(v, 0.0), 1.0):.2f}"><title>'
                        f"{escape(hover.lstrip('!'))}</title></rect>")
    labels = list(col_labels) if col_labels is not None else None
    every = max(1, math.ceil(len(cols) / 8))
    for j in range(0, len(cols), every):
        text = labels[j] if labels else _label(cols[j], x_time)[5 if x_time else 0:]
        body.append(f'<text class="tick" x="{label_w + (j + 0.5) * cw:.1f}" '
                    f'y="{height - 12}" text-anchor="middle">{escape(text)}</text>')
    return _figure(key, title, n, _svg("".join(body), height, w), "", note)
