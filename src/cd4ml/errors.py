"""The exceptions cd4ml raises, in one tree.

Every error a user can cause is a :class:`Cd4mlError`; its message is one readable
line naming the field, the value and what was expected. The CLI prints it and exits
non-zero; the HTTP server maps it to a status code with :data:`HTTP_STATUS`.

::

    Cd4mlError
    ├── ConfigError            cd4ml.yaml or --set: file, key path, bad value, what is allowed
    ├── MissingExtraError      an optional part is used without its extra: names the pip install
    ├── DataError
    │   ├── SourceError        a source cannot be read: missing file, empty file, missing column
    │   └── ValidationFailed   a snapshot breaks its schema; carries the full report
    ├── StoreError
    │   ├── LockedError        another run holds the project's lock
    │   ├── IntegrityError     stored bytes do not match the hash recorded for them
    │   ├── AliasConflictError an alias no longer holds the version a move expected
    │   ├── RevisionConflictError a deployment changed since it was read (HTTP 409)
    │   └── NotFoundError      no such run, snapshot, artifact, model, version or alias
    ├── PipelineError          a stage failed; names the stage
    ├── ModelError             a model cannot be fitted, saved or loaded
    ├── RequestError           a prediction request is invalid (HTTP 422/413/404)
    │   └── HorizonError       the date is beyond what the model can forecast
    ├── DeadlineError          work on a request passed serving.request_timeout_s (HTTP 504)
    └── UnavailableError       the server cannot answer now: loading, draining (HTTP 503)
        └── LogFullError       the prediction log cannot keep up (serving.log.when_full: reject)

>>> str(ConfigError("must be > 0", key="features.horizon", value=-1, file="cd4ml.yaml"))
'cd4ml.yaml: features.horizon = -1: must be > 0'
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Cd4mlError",
    "ConfigError",
    "MissingExtraError",
    "DataError",
    "SourceError",
    "ValidationFailed",
    "StoreError",
    "LockedError",
    "IntegrityError",
    "AliasConflictError",
    "RevisionConflictError",
    "NotFoundError",
    "PipelineError",
    "ModelError",
    "RequestError",
    "HorizonError",
    "UnavailableError",
    "LogFullError",
    "DeadlineError",
    "HTTP_STATUS",
    "http_status",
    "short_repr",
]


class Cd4mlError(Exception):
    """Base of every error cd4ml raises on purpose."""


class ConfigError(Cd4mlError):
    """A config file or an override is wrong."""

    def __init__(self, problem: str, *, key: str | None = None, value: Any = None,
                 file: str | None = None) -> None:
        self.problem, self.key, self.value, self.file = problem, key, value, file
        where = f"{file}: " if file else ""
        what = f"{key} = {value!r}: " if key is not None else ""
        super().__init__(f"{where}{what}{problem}")


class MissingExtraError(Cd4mlError, ImportError):
    """An optional dependency is missing; the message says which pip install fixes it."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the '{module}' package: pip install 'cd4ml[{extra}]'")


class DataError(Cd4mlError):
    """Input data is unusable."""


class SourceError(DataError):
    """A data source cannot be read as declared."""


class ValidationFailed(DataError):
    """A snapshot breaks its schema. ``report`` holds every failure with counts and examples."""

    def __init__(self, message: str, report: Any = None) -> None:
        self.report = report
        super().__init__(message)


class StoreError(Cd4mlError):
    """The metadata or artifact store refused an operation."""


class LockedError(StoreError):
    """Another process holds the project's run lock."""


class IntegrityError(StoreError):
    """Bytes read back do not hash to what was recorded."""


class AliasConflictError(StoreError):
    """An alias move was refused: the alias holds another version than the one expected
    (someone moved it meanwhile). ``conflict`` names alias, expected and found versions."""

    def __init__(self, message: str, *, conflict: Any = None) -> None:
        self.conflict = conflict
        super().__init__(message)


class RevisionConflictError(StoreError):
    """A write was refused: the object (a deployment) is at another revision than the
    one it was read at (someone changed it meanwhile). ``found`` is the revision found."""

    def __init__(self, message: str, *, expected: int | None = None,
                 found: int | None = None) -> None:
        self.expected, self.found = expected, found
        super().__init__(message)


class NotFoundError(StoreError):
    """A named object does not exist."""


class PipelineError(Cd4mlError):
    """A pipeline stage failed."""


class ModelError(Cd4mlError):
    """A model could not be fitted, saved or loaded."""


class RequestError(Cd4mlError):
    """A prediction request is invalid. ``errors`` lists ``{field, value, problem}`` dicts."""

    status = 422

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None,
                 status: int | None = None) -> None:
        self.errors = errors or []
        if status is not None:
            self.status = status
        super().__init__(message)


class HorizonError(RequestError):
    """The requested date is later than history end + horizon."""


class UnavailableError(Cd4mlError):
    """The server cannot answer right now (a model is loading, or it is draining)."""


class LogFullError(UnavailableError):
    """The prediction log holds as much as it may and ``serving.log.when_full`` is
    ``reject``: the request is refused (HTTP 503 with Retry-After) instead of answered
    without its record."""


class DeadlineError(Cd4mlError):
    """Work for a request ran past ``serving.request_timeout_s`` and was stopped."""


#: HTTP status for each error class; the most specific class found in the MRO wins.
HTTP_STATUS: dict[type[Cd4mlError], int] = {
    RequestError: 422,
    NotFoundError: 404,
    ConfigError: 400,
    LockedError: 409,
    AliasConflictError: 409,
    RevisionConflictError: 409,
    IntegrityError: 500,
    UnavailableError: 503,
    DeadlineError: 504,
    Cd4mlError: 500,
}


def http_status(exc: Cd4mlError) -> int:
    """The HTTP status for ``exc``.

    >>> http_status(NotFoundError("no model"))
    404
    >>> http_status(RequestError("too big", status=413))
    413
    """
    if isinstance(exc, RequestError):
        return exc.status
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for naming a bad value in a message.

    >>> short_repr("x" * 100)[-5:], short_repr([1, 2])
    ('xx...', '[1, 2]')
    """
    s = repr(value)
    return s if len(s) <= limit else s[:limit - 3] + "..."
