"""What every tool's process shares: the job, loading the frames, the meter, the answer.

Imported as a top-level module by ``peer_*.py`` (each runs as a script in its own venv,
so this file needs nothing but the standard library, pandas and pyarrow).

A tool's process: reads its job (JSON, ``argv[1]``), imports its tool and SciPy's stats
(``preload``: imports are not timed, and a tool that imports SciPy lazily, on its first
call, would otherwise pay for it inside its timing where the others paid at import; the
seconds are kept as ``import_s``), loads the frames it names, collects
garbage and hands freed heap back to the OS, records its RSS, then runs the tool under
``Meter``: wall time from ``time.perf_counter``, peak RSS from a thread sampling
``/proc/self/statm`` every 2 ms, and from ``getrusage`` when the process's lifetime peak
rose during the run (exact then). The answer is one JSON line on stdout prefixed ``@@``;
anything else the tool prints is left alone.
"""

from __future__ import annotations

import ctypes
import gc
import json
import math
import os
import resource
import sys
import threading
import time
import traceback
from typing import Any, Callable

import pandas as pd

__all__ = ["job", "load", "preload", "Meter", "measured", "emit", "run", "num"]

_PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


def job() -> dict[str, Any]:
    arg = sys.argv[1]
    return json.loads(open(arg).read() if not arg.lstrip().startswith("{") else arg)


def load(j: dict[str, Any], extra: list[str] | None = None,
         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reference and current frames, the job's columns (and ``extra``) only."""
    cols = [*j["numerical"], *j["categorical"], *(extra or [])]
    ref = pd.read_parquet(j["reference"], columns=cols)
    cur = pd.read_parquet(j["current"], columns=cols)
    return ref, cur


def preload(t0: float) -> float:
    """Import what every tool here computes with (SciPy's stats and distances); the
    seconds since ``t0`` (taken before the tool's own imports)."""
    import scipy.spatial.distance  # noqa: F401
    import scipy.stats  # noqa: F401

    return time.perf_counter() - t0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Meter:
    """``with Meter() as m:`` times the block; after it ``m.seconds``, ``m.peak_mb`` (peak
    RSS minus RSS after loading), ``m.loaded_mb``, ``m.total_mb`` (the peak itself) and
    ``m.cpu_s`` (the process's CPU time in the block, all threads: less sensitive than
    wall time to others running on the machine)."""

    def __init__(self, interval_s: float = 0.002) -> None:
        self.interval_s = interval_s
        self.seconds = self.cpu_s = self.peak_mb = self.loaded_mb = self.total_mb = math.nan

    def __enter__(self) -> "Meter":
        _trim()
        self._base = _rss()
        self._maxrss0 = _maxrss()
        self._peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss())
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.cpu_s = time.process_time() - self._c0
        self._stop.set()
        self._thread.join()
        peak = max(self._peak, _rss())
        top = _maxrss()
        if top > self._maxrss0:  # the lifetime peak was reached inside the block: exact
            peak = max(peak, top)
        self.loaded_mb = self._base / MB
        self.peak_mb = (peak - self._base) / MB
        self.total_mb = peak / MB


def num(x: Any) -> float | None:
    """A JSON-safe float (None for NaN, inf or None)."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def measured(m: Meter) -> dict[str, float]:
    return {"seconds": m.seconds, "cpu_s": m.cpu_s, "peak_mb": m.peak_mb,
            "loaded_mb": m.loaded_mb, "peak_total_mb": m.total_mb}


def emit(doc: dict[str, Any]) -> None:
    sys.stdout.write("@@" + json.dumps(doc, default=str) + "\n")
    sys.stdout.flush()


def run(tool: str, body: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Run ``body(job)`` and emit its answer; a failure is emitted as a refusal with the
    tool's own message (the benchmark reports it, it does not crash)."""
    j = job()
    try:
        doc = body(j)
    except Exception as exc:  # noqa: BLE001 - any refusal of the tool is a result here
        doc = {"error": f"{type(exc).__name__}: {exc}"[:2000],
               "traceback": traceback.format_exc()[-4000:]}
    emit({"tool": tool, "case": j.get("name"), "size": j.get("size"), "task": j.get("task"),
          **doc})
