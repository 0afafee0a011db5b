"""The server's software metrics, read from its Prometheus text (``/metrics``).

:func:`server_figures` parses the exposition with ``prometheus_client``'s parser and
keeps what the dashboard shows beside a model's monitoring: requests by endpoint and
status, latency quantiles estimated from the histogram's buckets (as PromQL's
``histogram_quantile`` does: linear within a bucket), errors by type, refused requests
by field and reason, rows predicted per version, the prediction log's queue, held bytes,
drops and losses, and the process's memory and CPU (absent with several workers: the
multiprocess collector has no process metrics). Counters are totals since the workers
started; the log gives the same figures over time.

>>> text = '''# TYPE cd4ml_request_refusals counter
... cd4ml_request_refusals_total{endpoint="/predict",field="AGEP",reason="type"} 3.0
... # TYPE cd4ml_prediction_log_queue_depth gauge
... cd4ml_prediction_log_queue_depth 7.0
... '''
>>> f = server_figures(text)
>>> f.refusals, f.log["queue"]
([('AGEP · type', 3.0)], 7.0)
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ServerFigures", "server_figures", "quantile_of_buckets"]


@dataclass
class ServerFigures:
    """What one scrape says (each list sorted by its label)."""

    requests: list[tuple[str, str, float]] = field(default_factory=list)  # endpoint, status
    latency: dict[str, dict[str, float | None]] = field(default_factory=dict)  # endpoint ->
    errors: list[tuple[str, float]] = field(default_factory=list)  # "endpoint · type", n
    refusals: list[tuple[str, float]] = field(default_factory=list)  # "field · reason", n
    predictions: list[tuple[str, str, str, float]] = field(default_factory=list)
    log: dict[str, float] = field(default_factory=dict)
    process: dict[str, float] = field(default_factory=dict)
    loaded: list[tuple[str, str]] = field(default_factory=list)  # model, version
    ready: float | None = None
    in_flight: float | None = None


def quantile_of_buckets(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile from cumulative (upper bound, count) buckets, +Inf last.

    >>> quantile_of_buckets(0.5, [(0.1, 5.0), (0.2, 10.0), (math.inf, 10.0)])
    0.1
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_n = 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if math.isinf(le):
                return prev_le
            if n == prev_n:
                return le
            return prev_le + (le - prev_le) * (rank - prev_n) / (n - prev_n)
        prev_le, prev_n = le, n
    return prev_le


_LOG = {"cd4ml_prediction_log_queue_depth": "queue",
        "cd4ml_prediction_log_queued_bytes": "queued_bytes",
        "cd4ml_prediction_log_write_errors": "write_errors",
        "cd4ml_prediction_log_set_aside_files": "set_aside",
        "cd4ml_prediction_log_records_lost_total": "lost"}
_PROCESS = {"process_resident_memory_bytes": "rss_bytes",
            "process_virtual_memory_bytes": "vms_bytes",
            "process_cpu_seconds_total": "cpu_seconds",
            "process_start_time_seconds": "start_time",
            "process_open_fds": "open_fds"}


def server_figures(text: str) -> ServerFigures:
    """Parse one exposition; a ValueError if it is not Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    f = ServerFigures()
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    sums: dict[str, dict[str, float]] = defaultdict(dict)
    errors: dict[str, float] = defaultdict(float)
    refusals: dict[str, float] = defaultdict(float)
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            name, lab, v = s.name, s.labels, float(s.value)
            if name == "cd4ml_http_requests_total":
                f.requests.append((lab.get("endpoint", ""), lab.get("status", ""), v))
            elif name == "cd4ml_http_request_duration_seconds_bucket":
                buckets[lab.get("endpoint", "")].append((float(lab["le"]), v))
            elif name in ("cd4ml_http_request_duration_seconds_sum",
                          "cd4ml_http_request_duration_seconds_count"):
                sums[lab.get("endpoint", "")][name.rsplit("_", 1)[1]] = v
            elif name == "cd4ml_http_errors_total":
                errors[f"{lab.get('endpoint', '')} · {lab.get('type', '')}"] += v
            elif name == "cd4ml_request_refusals_total":
                refusals[f"{lab.get('field', '')} · {lab.get('reason', '')}"] += v
            elif name == "cd4ml_predictions_total":
                f.predictions.append((lab.get("model", ""), lab.get("version", ""),
                                      lab.get("endpoint", ""), v))
            elif name == "cd4ml_prediction_log_records":
                f.log[lab.get("outcome", "")] = f.log.get(lab.get("outcome", ""), 0.0) + v
            elif name in _LOG:
                f.log[_LOG[name]] = f.log.get(_LOG[name], 0.0) + v
            elif name in _PROCESS:
                f.process[_PROCESS[name]] = v
            elif name == "cd4ml_model_loaded" and v >= 1:
                f.loaded.append((lab.get("model", ""), lab.get("version", "")))
            elif name == "cd4ml_ready":
                f.ready = v
            elif name == "cd4ml_http_requests_in_flight":
                f.in_flight = v
    for ep, bs in buckets.items():
        bs.sort()
        s = sums.get(ep, {})
        n = s.get("count", bs[-1][1] if bs else 0.0)
        f.latency[ep] = {"count": n, "mean_ms": s["sum"] / n * 1000 if n and "sum" in s
                         else None,
                         **{f"p{int(q * 100)}_ms": (None if (x := quantile_of_buckets(q, bs))
                                                    is None else x * 1000)
                            for q in (0.5, 0.9, 0.99)}}
    f.requests.sort()
    f.predictions.sort()
    f.errors = sorted(errors.items())
    f.refusals = sorted(refusals.items())
    return f


def as_dict(f: ServerFigures) -> dict[str, Any]:
    """The figures as plain data (what a test or a JSON view reads)."""
    from dataclasses import asdict

    return asdict(f)
