"""The prediction log: every prediction, with what the model saw, durable and queryable.

A server appends one record per answered request (request id, time, model name and
version, rollout arm, endpoint, latency, the body as received, the validated input
fields, the feature matrix the model saw and its outputs). :meth:`PredictionLog.append`
only puts the record in a list; a writer thread commits the list to SQLite every
``flush_interval_ms`` (one transaction, fsynced). A request that finds
``max_unflushed`` records waiting blocks until the writer has caught up, which bounds
what a ``kill -9`` can lose.

Losses are counted, never silent. Each writer keeps the number of records it accepted
in a small memory-mapped file (``sessions/<pid>-<session>.cnt``); the kernel keeps
those bytes when the process is killed. The next writer to open the folder finds the
files of dead processes and records ``accepted - flushed`` in ``state.db``, which
:func:`status` reports (and ``cd4ml log status`` prints).

Layout of the folder (``serving.log.dir``)::

    seg-20261123T00.db        one SQLite segment per ``rotate_hours`` period (UTC)
    state.db                  losses found after a crash or a failing disk
    sessions/                 the accepted-record counters of live writers

Segments older than ``retention_days`` are deleted whole (no VACUUM). A segment has two
indexes, time and request id, because every index costs every insert; a query by model
version filters the rows of its time window. Several worker
processes write the same segment; SQLite's locking serialises their commits.
"""

from cd4ml.serving.predlog.reader import (export_parquet, find_request, parse_time,
                                          predictions, query, status)
from cd4ml.serving.predlog.segments import segments
from cd4ml.serving.predlog.writer import LogRecord, PredictionLog, recover_losses

__all__ = ["PredictionLog", "LogRecord", "segments", "query", "predictions", "status",
           "find_request", "export_parquet", "parse_time", "recover_losses"]
