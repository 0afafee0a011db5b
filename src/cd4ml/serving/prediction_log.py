"""The prediction log a ``cd4ml serve`` worker writes, opened from ``serving.log``'s
settings (the worker and its shadow process each open their own writer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cd4ml.predlog import PredictionLog

__all__ = ["open_log"]


def open_log(s: Any, root: Path) -> PredictionLog | None:
    """The prediction log a worker (or its shadow process) writes, or None if off."""
    if not s.log.enabled:
        return None
    return PredictionLog(s.log.folder_in(root),
                         flush_interval_ms=s.log.flush_interval_ms,
                         max_unflushed=s.log.max_unflushed,
                         max_unflushed_bytes=s.log.max_unflushed_bytes,
                         max_block_bytes=s.log.max_block_bytes,
                         max_stored_body_bytes=s.log.max_stored_body_bytes,
                         when_full=s.log.when_full,
                         rotate_hours=s.log.rotate_hours,
                         retention_days=s.log.retention_days,
                         store_request=s.log.store_request)
