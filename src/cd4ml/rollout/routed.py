"""What the router counted, per version and role of a deployment, from a server's
``/metrics``: its outcomes and its latency histogram, their change since a step began,
and a latency quantile as Prometheus computes it.

The server (:mod:`cd4ml.serving.router`) exposes, per ``deployment``, ``version`` and
``role``, ``cd4ml_routed_requests_total{outcome}`` (``ok``; ``error``: the version
raised, and the request was answered by the incumbent; ``refused``: invalid input) and
the histogram ``cd4ml_routed_latency_seconds``. :meth:`Routed.parse` reads them from the
Prometheus text format (prometheus_client's parser, the ``serve`` extra);
:meth:`Routed.since` is the change since an earlier scrape, a series found lower than
before counted from zero (its server restarted), as Prometheus' ``increase`` does.

:func:`histogram_quantile` is Prometheus' own: the bucket holding the rank ``q·n``, and
a linear interpolation inside it (from 0 in the first bucket; the largest finite bound
when the rank falls in ``+Inf``). So the figure is exact to within the bucket's width.

>>> h = Histogram((0.01, 0.1, 1.0, math.inf), (50, 90, 99, 100))
>>> round(histogram_quantile(0.5, h.bounds, h.counts), 6), h.quantile(0.99)
(0.01, 1.0)
>>> round(h.quantile(0.7), 6)   # rank 70 is halfway into (0.01, 0.1]
0.055
>>> before = Routed({("2", "canary"): Counts(ok=10, error=1)}, {})
>>> now = Routed({("2", "canary"): Counts(ok=110, error=3)}, {})
>>> now.since(before).counts[("2", "canary")]
Counts(ok=100.0, error=2.0, refused=0.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cd4ml.errors import MissingExtraError

__all__ = ["Counts", "Histogram", "Routed", "histogram_quantile", "REQUESTS", "LATENCY"]

#: the router's counter and histogram (their family names, as the parser gives them)
REQUESTS = "cd4ml_routed_requests"
LATENCY = "cd4ml_routed_latency_seconds"

Arm = tuple[str, str]  # (version, role), as the labels hold them: ("3", "canary")


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float:
    """The ``q`` quantile of a histogram of cumulative ``counts`` at upper ``bounds``
    (sorted; the last is +Inf), as PromQL's ``histogram_quantile``: NaN with no
    observation or no +Inf bucket."""
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    b = np.asarray(bounds, dtype=float)
    c = np.maximum.accumulate(np.asarray(counts, dtype=float))  # Prometheus' monotonic fix
    if len(b) < 2 or len(b) != len(c) or not math.isinf(b[-1]) or c[-1] <= 0:
        return math.nan
    rank = q * c[-1]
    i = int(np.searchsorted(c, rank, side="left"))
    if i >= len(b) - 1:
        return float(b[-2])
    if i == 0 and b[0] <= 0:
        return float(b[0])
    start, end, count, rank = 0.0, float(b[i]), float(c[i]), float(rank)
    if i > 0:
        start = float(b[i - 1])
        count -= float(c[i - 1])
        rank -= float(c[i - 1])
    return start + (end - start) * (rank / count)


@dataclass(frozen=True, slots=True)
class Counts:
    """Requests routed to one version in one role, by outcome."""

    ok: float = 0.0
    error: float = 0.0
    refused: float = 0.0

    @property
    def answered(self) -> float:
        """ok + error: the requests the version was asked to answer (refused: the input)."""
        return self.ok + self.error

    @property
    def error_rate(self) -> float | None:
        return self.error / self.answered if self.answered else None

    def minus(self, before: Counts) -> Counts:
        return Counts(*(_increase(now, was) for now, was in (
            (self.ok, before.ok), (self.error, before.error), (self.refused, before.refused))))

    def to_dict(self) -> dict[str, float]:
        return {"ok": self.ok, "error": self.error, "refused": self.refused}


def _increase(now: float, was: float) -> float:
    return float(now - was) if now >= was else float(now)  # lower: a restart, from zero


@dataclass(frozen=True, slots=True)
class Histogram:
    """A latency histogram: upper ``bounds`` (seconds, sorted, the last +Inf) and the
    cumulative ``counts`` of observations at or below each."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]

    @property
    def count(self) -> float:
        return float(self.counts[-1]) if self.counts else 0.0

    def quantile(self, q: float) -> float:
        return histogram_quantile(q, self.bounds, self.counts)

    def minus(self, before: Histogram) -> Histogram:
        if before.bounds != self.bounds or self.count < before.count:
            return self  # other buckets (a new server) or a restart: counted from zero
        return Histogram(self.bounds, tuple(float(a - b) for a, b in
                                            zip(self.counts, before.counts)))

    def to_dict(self) -> dict[str, Any]:
        return {"bounds": [None if math.isinf(b) else b for b in self.bounds],
                "counts": list(self.counts)}


@dataclass(frozen=True)
class Routed:
    """One scrape's figures of one deployment, by ``(version, role)``."""

    counts: Mapping[Arm, Counts] = field(default_factory=dict)
    latency: Mapping[Arm, Histogram] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, deployment: str) -> Routed:
        """The router's series of ``deployment`` in Prometheus text (several servers'
        exposition concatenated adds up)."""
        try:
            from prometheus_client.parser import text_string_to_metric_families
        except ImportError:
            raise MissingExtraError("reading the router's metrics", "serve",
                                    "prometheus_client") from None
        counts: dict[Arm, dict[str, float]] = {}
        buckets: dict[Arm, dict[float, float]] = {}
        for fam in text_string_to_metric_families(text):
            if fam.name not in (REQUESTS, LATENCY):
                continue
            for s in fam.samples:
                lab = s.labels
                if lab.get("deployment") != deployment:
                    continue
                arm = (str(lab.get("version", "")), str(lab.get("role", "")))
                if fam.name == REQUESTS and s.name.endswith("_total"):
                    out = counts.setdefault(arm, {})
                    key = lab.get("outcome", "")
                    if key in ("ok", "error", "refused"):
                        out[key] = out.get(key, 0.0) + float(s.value)
                elif fam.name == LATENCY and s.name.endswith("_bucket"):
                    le = float(lab["le"])
                    got = buckets.setdefault(arm, {})
                    got[le] = got.get(le, 0.0) + float(s.value)
        hist = {arm: Histogram(tuple(sorted(b)), tuple(b[k] for k in sorted(b)))
                for arm, b in buckets.items()}
        return cls({arm: Counts(**c) for arm, c in counts.items()}, hist)

    def since(self, before: Routed | None) -> Routed:
        """The change since ``before`` (None: everything so far)."""
        if before is None:
            return self
        counts = {a: c.minus(before.counts[a]) if a in before.counts else c
                  for a, c in self.counts.items()}
        latency = {a: h.minus(before.latency[a]) if a in before.latency else h
                   for a, h in self.latency.items()}
        return Routed(counts, latency)

    def counts_of(self, version: int, role: str) -> Counts:
        return self.counts.get((str(version), role), Counts())

    def latency_of(self, version: int, role: str) -> Histogram | None:
        return self.latency.get((str(version), role))

    @property
    def empty(self) -> bool:
        return not self.counts and not self.latency
