"""The prediction log: every prediction, with what the model saw, durable and queryable.

A package of its own (it imports nothing of cd4ml but ``cd4ml.errors``; an import-linter
contract in pyproject.toml holds it so): the server writes it, ``cd4ml log`` and
monitoring read it, and neither side imports the other through it.

A server appends one record per answered request (request id, time, model name and
version, rollout arm, endpoint, latency, the body as received, the validated input
fields, the features the model saw and its outputs, and the event time the request
declared, ``X-Event-Time``: readers give it as ``event_ts``, null where a request gave
none, and take an event window). :meth:`PredictionLog.append` only
queues the record (its fields appended to one list per field: the queue holds no object
per record); a writer thread encodes what waits, a column at a time, and commits it to
SQLite every ``flush_interval_ms``, or as soon as half of ``max_unflushed`` records (or
of ``max_unflushed_bytes``) wait (one transaction, fsynced). ``append``
never waits for the disk: once ``max_unflushed`` records or ``max_unflushed_bytes``
bytes are held (queued or being written), which bounds what a ``kill -9`` can lose, a
record is dropped and counted (``when_full="drop"``) or refused with
:class:`~cd4ml.errors.LogFullError`, a 503 with Retry-After (``when_full="reject"``).

A flush is stored as blocks: rows of at most ``BLOCK_ROWS`` predictions and about
``max_block_bytes`` bytes (kept below SQLite's limit on a row), each holding its records'
metadata and inputs as JSON lists and their request bodies, row numbers and outputs as
bytes one after another, plus one index entry per client-sent request id. A body longer
than ``max_stored_body_bytes`` is stored truncated, its full length and sha256 recorded
(``request_length``, ``request_sha256`` in queries and exports). A flush that cannot be
committed is stored block by block, and what still fails (a full disk) is dropped and
counted: the writer never retries a batch, so it always goes on with later records.

A server's features are not copied per request: a version's features are computed once
when it loads (``X``, one row per servable series and date), so a record holds the row
numbers the model was called on, and each segment stores the vector of every row it
references once (with the block that first references it) and the version's keys, which
turn a row number back into the request fields. Readers join them: what comes back is
the very bytes the model saw. Records without a feature table (``features=`` given)
store their vectors inline.

Losses are counted, never silent. Each writer keeps the number of records it accepted
in a small memory-mapped file (``sessions/<pid>-<session>.cnt``); the kernel keeps
those bytes when the process is killed. The next writer to open the folder finds the
files of dead processes and records ``accepted - flushed`` in ``state.db``, which
:func:`status` reports (and ``cd4ml log status`` prints).

Layout of the folder (``serving.log.url``, or the older ``serving.log.dir``)::

    seg-20261123T00-p4242.db  one SQLite segment per ``rotate_hours`` period (UTC) and
                              writer process: the workers of a server never wait on
                              each other's commits; self-contained (its feature rows)
    state.db                  losses found after a crash or a failing disk, files set aside
    sessions/                 the accepted-record counters of live writers
    seg-….db.corrupt-<time>   a file SQLite could not read ("not a database", truncated),
                              renamed with its -wal/-shm by the writer that found it, at
                              start or when opening it (damage.py); readers skip such a
                              segment until then, and status() lists both

Segments older than ``retention_days`` are deleted whole (no VACUUM). Blocks are
indexed by time and request ids by value; a query by model version filters the records
of its time window. :func:`find_requests` looks many ids up in one visit of each segment
(what ``/feedback`` uses, bounded by a deadline).

Readers: :func:`query` (a dict per request), :func:`predictions` (a DataFrame, a row per
prediction) and :func:`batches` (Arrow record batches, a block at a time, with a schema
fixed for the call: what monitoring reads) decode blocks with one decoder (frames.py)
and join feedback the same way (feedback.py): only the feedback that can match the
window's predictions is read, through the ``feedback_request`` index, and counted in a
:class:`FeedbackRead` if one is given.
"""

from cd4ml.predlog.batches import batches
from cd4ml.predlog.feedback import (FeedbackRead, feedback_after, feedback_marks,
                                    join_feedback)
from cd4ml.predlog.losses import recover_losses
from cd4ml.predlog.lookup import Lookup, find_request, find_requests
from cd4ml.predlog.reader import (export_parquet, parse_time, predictions, query,
                                          status)
from cd4ml.predlog.scan import BlockInfo, block_index
from cd4ml.predlog.segments import segments
from cd4ml.predlog.tables import FeatureTable
from cd4ml.predlog.blocks import LogRecord
from cd4ml.predlog.writer import PredictionLog

__all__ = ["PredictionLog", "LogRecord", "FeatureTable", "segments", "query", "predictions",
           "status", "find_request", "find_requests", "Lookup", "export_parquet", "parse_time",
           "recover_losses", "batches", "FeedbackRead", "block_index", "BlockInfo",
           "join_feedback", "feedback_marks", "feedback_after"]
