"""A canary step's analysis: each metric judged Successful, Failed or Inconclusive (as
Argo Rollouts' analysis runs do), the canary against the stable version over the step.

Pure: numbers in (the router's counts and latency histograms since the step began,
:mod:`cd4ml.rollout.routed`; monitoring's figures of each version's window of the
prediction log), results out. The controller (:mod:`cd4ml.rollout.controller`) gathers
the numbers and acts on the result.

- :func:`error_rate` — the share of answered requests that raised; Failed when the
  canary's exceeds the stable's by more than ``max_increase`` (absolute);
- :func:`latency` — a quantile of the latency histogram (Prometheus'
  ``histogram_quantile``); Failed when the canary's is above the stable's × ``max_ratio``
  *and* by more than ``min_increase_ms`` (two buckets' interpolation is not a regression);
- :func:`drift` — the share of the canary's inputs that drift from its reference
  (monitoring's judgement); Failed at ``max_share`` or more, unless the stable's inputs
  drift as much (then it is the traffic, not the canary);
- :func:`quality` — the task metric on the labelled rows (or CBPE's estimate without
  labels, ``name="estimated"``); Failed when the canary is worse than the stable by more
  than ``max_degradation``, relative.

Every check with fewer than ``min_samples`` (in the smaller arm) is Inconclusive, never a
pass. The analysis (:class:`Analysis`) is Failed if any check failed, else Inconclusive
if any is (or none ran), else Successful; every result carries a one-line reason with
its figures.

>>> from cd4ml.rollout.routed import Counts
>>> a = Analysis((error_rate(Counts(ok=480, error=20), Counts(ok=9_990, error=10),
...                          max_increase=0.01, min_samples=100),
...               quality("roc_auc", 0.81, 0.82, 300, 2_000, higher_is_better=True,
...                       max_degradation=0.05, min_samples=200)))
>>> a.result
'Failed'
>>> print(a.reason)
Failed: error_rate Failed: 4 % (20 of 500) vs stable 0.1 % (10 of 10,000): more than 1 point above
>>> a.results[1].reason
'roc_auc 0.81 vs stable 0.82 (300 and 2,000 labelled rows): 1.22 % worse, within 5 %'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cd4ml.rollout.routed import Counts, Histogram

__all__ = ["MetricResult", "Analysis", "overall", "error_rate", "latency", "drift", "quality",
           "finite", "SUCCESSFUL", "FAILED", "INCONCLUSIVE", "RESULTS"]

SUCCESSFUL, FAILED, INCONCLUSIVE = "Successful", "Failed", "Inconclusive"
RESULTS = (SUCCESSFUL, FAILED, INCONCLUSIVE)


@dataclass(frozen=True, slots=True)
class MetricResult:
    """One check: its ``result`` (one of :data:`RESULTS`), a one-line ``reason`` with the
    figures, the canary's and the stable's value, and the smaller arm's sample count."""

    metric: str
    result: str
    reason: str
    canary: float | None = None
    stable: float | None = None
    samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "result": self.result, "reason": self.reason,
                "canary": finite(self.canary), "stable": finite(self.stable),
                "samples": self.samples}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MetricResult:
        return cls(d["metric"], d["result"], d["reason"], d.get("canary"), d.get("stable"),
                   int(d.get("samples") or 0))


def finite(x: Any) -> float | None:
    """``x`` as a float if it is a finite number, else None (NaN, inf, None, text).

    >>> finite(0.5), finite(float("nan")), finite(None), finite("x")
    (0.5, None, None, None)
    """
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def overall(results: Sequence[MetricResult]) -> str:
    """Failed if any failed, else Inconclusive if any is (or there is none), else
    Successful."""
    got = {r.result for r in results}
    if FAILED in got:
        return FAILED
    if INCONCLUSIVE in got or not results:
        return INCONCLUSIVE
    return SUCCESSFUL


@dataclass(frozen=True)
class Analysis:
    """The checks of one step; ``skipped``: the checks that did not run, and why."""

    results: tuple[MetricResult, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)

    @property
    def result(self) -> str:
        return overall(self.results)

    @property
    def reason(self) -> str:
        """One line: the result, then the checks that decided it (all of them when
        Successful)."""
        res = self.result
        if not self.results:
            return f"{res}: no check ran (" + "; ".join(
                f"{k}: {v}" for k, v in self.skipped.items()) + ")"
        deciding = [r for r in self.results if r.result == res] if res != SUCCESSFUL \
            else list(self.results)
        return f"{res}: " + "; ".join(f"{r.metric} {r.result}: {r.reason}"
                                      if res != SUCCESSFUL else f"{r.metric}: {r.reason}"
                                      for r in deciding)

    def to_dict(self) -> dict[str, Any]:
        return {"result": self.result, "reason": self.reason,
                "results": [r.to_dict() for r in self.results], "skipped": dict(self.skipped)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Analysis:
        return cls(tuple(MetricResult.from_dict(r) for r in d.get("results", ())),
                   dict(d.get("skipped") or {}))


def _n(x: float) -> str:
    return f"{int(round(x)):,}"


def _pct(x: float) -> str:
    return f"{x * 100:.3g} %"


def _few(metric: str, what: str, n: float, min_samples: int, *, canary: float | None = None,
         stable: float | None = None) -> MetricResult:
    return MetricResult(metric, INCONCLUSIVE, f"{_n(n)} {what}, fewer than min_samples "
                        f"{min_samples}", canary, stable, int(n))


def error_rate(canary: Counts, stable: Counts, *, max_increase: float,
               min_samples: int) -> MetricResult:
    """The canary's error rate against the stable's (answered = ok + error)."""
    n = min(canary.answered, stable.answered)
    rc, rs = canary.error_rate, stable.error_rate
    if n < min_samples or rc is None or rs is None:
        who = "requests to the canary" if canary.answered <= stable.answered \
            else "requests to the stable"
        return _few("error_rate", who, n, min_samples, canary=rc, stable=rs)
    figures = (f"{_pct(rc)} ({_n(canary.error)} of {_n(canary.answered)}) vs stable "
               f"{_pct(rs)} ({_n(stable.error)} of {_n(stable.answered)})")
    if rc > rs + max_increase:
        return MetricResult("error_rate", FAILED, f"{figures}: more than "
                            f"{max_increase * 100:g} point{'s' if max_increase != 0.01 else ''}"
                            f" above", rc, rs, int(n))
    return MetricResult("error_rate", SUCCESSFUL, f"{figures}: within "
                        f"{max_increase * 100:g} point{'s' if max_increase != 0.01 else ''}",
                        rc, rs, int(n))


def latency(canary: Histogram | None, stable: Histogram | None, *, quantile: float,
            max_ratio: float, min_increase_ms: float, min_samples: int) -> MetricResult:
    """The canary's latency ``quantile`` (ms, from its histogram) against the stable's."""
    name = f"latency_p{quantile * 100:g}"
    nc = canary.count if canary is not None else 0.0
    ns = stable.count if stable is not None else 0.0
    if min(nc, ns) < min_samples:
        who = "requests timed on the canary" if nc <= ns else "requests timed on the stable"
        return _few(name, who, min(nc, ns), min_samples)
    assert canary is not None and stable is not None
    qc, qs = canary.quantile(quantile) * 1e3, stable.quantile(quantile) * 1e3
    figures = (f"{qc:.4g} ms vs stable {qs:.4g} ms ({_n(nc)} and {_n(ns)} requests)")
    limit = f"{max_ratio:g} x and +{min_increase_ms:g} ms"
    if qc > qs * max_ratio and qc - qs > min_increase_ms:
        return MetricResult(name, FAILED, f"{figures}: above {limit}", qc, qs, int(min(nc, ns)))
    return MetricResult(name, SUCCESSFUL, f"{figures}: within {limit}", qc, qs,
                        int(min(nc, ns)))


def drift(canary_share: float | None, canary_rows: int, *, max_share: float,
          min_samples: int, stable_share: float | None = None,
          drifted: Sequence[str] = ()) -> MetricResult:
    """The share of the canary's inputs drifting from its reference (``drifted``: their
    names, for the reason), against ``max_share`` and the stable's share."""
    if canary_rows < min_samples:
        return _few("drift", "canary rows", canary_rows, min_samples, canary=canary_share,
                    stable=stable_share)
    if canary_share is None:
        return MetricResult("drift", INCONCLUSIVE, f"no verdict on the canary's "
                            f"{_n(canary_rows)} rows", None, stable_share, canary_rows)
    cols = (f" ({', '.join(drifted[:5])}{', ...' if len(drifted) > 5 else ''})"
            if drifted else "")
    st = "" if stable_share is None else f" vs stable {_pct(stable_share)}"
    figures = f"{_pct(canary_share)} of the canary's inputs drift{cols}{st} " \
              f"({_n(canary_rows)} rows)"
    if canary_share >= max_share and (stable_share is None or canary_share > stable_share):
        return MetricResult("drift", FAILED, f"{figures}: at least {_pct(max_share)}",
                            canary_share, stable_share, canary_rows)
    why = (f"under {_pct(max_share)}" if canary_share < max_share
           else "the stable's inputs drift as much (the traffic moved, not the canary)")
    return MetricResult("drift", SUCCESSFUL, f"{figures}: {why}", canary_share, stable_share,
                        canary_rows)


def quality(metric: str, canary: float | None, stable: float | None, canary_rows: int,
            stable_rows: int, *, higher_is_better: bool, max_degradation: float,
            min_samples: int, name: str = "quality",
            rows: str = "labelled rows") -> MetricResult:
    """The task ``metric`` of the canary against the stable's (``name="estimated"`` for
    CBPE's estimate, on every row); Failed when worse by more than ``max_degradation``
    (relative to the stable's; absolute when the stable's is 0)."""
    label = metric if name == "quality" else f"estimated {metric}"
    n = min(canary_rows, stable_rows)
    if n < min_samples:
        who = f"{rows} of the canary" if canary_rows <= stable_rows else f"{rows} of the stable"
        return MetricResult(name, INCONCLUSIVE, f"{label}: {_n(n)} {who}, fewer than "
                            f"min_samples {min_samples}", canary, stable, int(n))
    if canary is None or stable is None or not (math.isfinite(canary) and math.isfinite(stable)):
        return MetricResult(name, INCONCLUSIVE, f"{label} undefined on the window "
                            f"(canary {canary}, stable {stable})", canary, stable, int(n))
    worse = (stable - canary) if higher_is_better else (canary - stable)
    rel = worse / abs(stable) if stable != 0 else worse
    figures = (f"{label} {canary:.4g} vs stable {stable:.4g} ({_n(canary_rows)} and "
               f"{_n(stable_rows)} {rows})")
    how = f"{abs(rel) * 100:.3g} % {'worse' if rel > 0 else 'better'}"
    if rel > max_degradation:
        return MetricResult(name, FAILED, f"{figures}: {how}, more than "
                            f"{max_degradation * 100:g} %", canary, stable, int(n))
    return MetricResult(name, SUCCESSFUL, f"{figures}: {how}, within {max_degradation * 100:g} %",
                        canary, stable, int(n))
