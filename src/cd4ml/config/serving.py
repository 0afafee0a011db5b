"""Config sections of the serving side: stores, the prediction log, the server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from cd4ml.config._strict import _Strict


class StoreConfig(_Strict):
    metadata_url: str = "sqlite:///.cd4ml/metadata.db"
    artifacts_url: str = ".cd4ml/artifacts"
    lock_timeout_s: float = Field(0.0, ge=0, description="wait this long for another run")


def _log_url(url: str) -> tuple[str, str]:
    """``(scheme, path)`` of a log URL; a plain path has the scheme ``""``."""
    scheme, sep, rest = url.partition("://")
    return (scheme, rest) if sep else ("", url)


class PredictionLogConfig(_Strict):
    """Every prediction, written off the request path in batches to SQLite segments."""

    enabled: bool = True
    url: str | None = Field(None, description=(
        "where the log is kept, as a URL: a folder path or file://PATH (SQLite segments in "
        "that folder); relative paths are taken from the project folder"))
    dir: str = Field(".cd4ml/predictions", description=(
        "folder of the log's segments (what url says, kept for existing configs; give one)"))
    flush_interval_ms: int = Field(200, ge=1, le=60_000,
                                   description="the writer commits at least this often")
    max_unflushed: int = Field(1_000, ge=1, description=(
        "records held in memory (queued or being written); bounds what a kill -9 can "
        "lose; more are dropped or rejected (when_full)"))
    max_unflushed_bytes: int = Field(64 << 20, ge=1, description=(
        "bytes held in memory (bodies, outputs); more are dropped or rejected (when_full)"))
    max_block_bytes: int = Field(64 << 20, ge=1, description=(
        "a flush is stored as blocks of at most this many bytes; must be below SQLite's "
        "limit on a row (SQLITE_LIMIT_LENGTH, 1e9 by default)"))
    max_stored_body_bytes: int = Field(64 << 10, ge=1, description=(
        "a request body longer than this is stored truncated, with its length and sha256"))
    when_full: Literal["drop", "reject"] = Field("drop", description=(
        "when max_unflushed or max_unflushed_bytes is reached: drop the record (counted) "
        "or reject the request (503 with Retry-After); a request never waits for the disk"))
    rotate_hours: int = Field(24, ge=1, le=24 * 31, description="one segment per period")
    retention_days: float = Field(30, gt=0, description="segments older than this are deleted")
    store_request: bool = Field(True, description="keep each request body as received")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, v: str | None) -> str | None:
        if v is None:
            return v
        scheme, path = _log_url(v)
        if scheme not in ("", "file"):
            raise ValueError(f"unknown prediction log scheme {scheme!r}; the log is kept in "
                             f"SQLite segments in a folder: give a folder path or file://PATH")
        if not path.strip():
            raise ValueError("names no folder; give a folder path or file://PATH")
        return v

    @model_validator(mode="after")
    def _one_place(self) -> PredictionLogConfig:
        if self.url is not None and "dir" in self.model_fields_set and \
                Path(self.folder) != Path(self.dir):
            raise ValueError(f"serving.log.url ({self.url!r}) and serving.log.dir "
                             f"({self.dir!r}) name different places; give one of them")
        return self

    @property
    def folder(self) -> str:
        """The folder of the log's segments, as configured (url, else dir)."""
        return self.dir if self.url is None else _log_url(self.url)[1]

    def folder_in(self, root: str | Path) -> Path:
        """:attr:`folder`, a relative one taken from the project folder ``root``."""
        d = Path(self.folder)
        return d if d.is_absolute() else Path(root) / d

    @field_validator("max_block_bytes")
    @classmethod
    def _below_sqlite_limit(cls, v: int) -> int:
        import sqlite3

        probe = sqlite3.connect(":memory:")
        try:
            limit = probe.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
        finally:
            probe.close()
        if v >= limit:
            raise ValueError(f"must be below SQLite's limit on a row, {limit} bytes "
                             f"(SQLITE_LIMIT_LENGTH of this build)")
        return v

    @field_validator("max_stored_body_bytes")
    @classmethod
    def _fits_a_block(cls, v: int, info: ValidationInfo) -> int:
        block = info.data.get("max_block_bytes")
        if block is not None and 2 * v > block:
            raise ValueError(f"must be at most half of serving.log.max_block_bytes ({block}), "
                             f"so that any record fits in a block")
        return v


class ServingConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(5005, ge=1, le=65535)
    alias: str = "production"
    deployment: str | None = Field(None, description=(
        "the deployment this server serves (cd4ml deploy); default: the one tracking "
        "serving.alias, else serving.alias itself as a single deployment"))
    keep_loaded: int = Field(3, ge=1, le=16, description=(
        "model versions a worker keeps loaded: those the deployment names, then the most "
        "recent others (a rollback to one of them needs no load)"))
    shadow_queue: int = Field(256, ge=1, description=(
        "requests waiting for the shadow versions per worker; more are not shadowed "
        "(counted in cd4ml_shadow_requests_total{outcome=\"dropped\"})"))
    workers: int = Field(1, ge=1, le=64)
    max_batch_rows: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(10_000_000, ge=1024)
    max_concurrency: int = Field(256, ge=1, description=(
        "requests in flight per worker; more get 503 with Retry-After (the health, "
        "readiness and metrics probes take no slot)"))
    request_timeout_s: float = Field(30, gt=0, description="then 504")
    poll_interval_s: float = Field(2, ge=0, description=(
        "how often a server checks whether the alias moved (0: never; hot swap)"))
    drain_s: float = Field(1, ge=0, description=(
        "on SIGTERM, readiness is false this long before the server stops accepting"))
    access_log: bool = True
    forecast_table: bool = Field(True, description=(
        "answer from the forecast table the model computed at registration (used once a "
        "sample of it matches the live model at load); false: run the model per request"))
    log: PredictionLogConfig = Field(default_factory=PredictionLogConfig)
    allowed_origins: list[str] = Field(default_factory=list, description=(
        "web origins (scheme://host[:port]) besides the server's own whose pages may POST "
        "to it; a POST with any other Origin header gets 403"))

    @model_validator(mode="after")
    def _origins_are_origins(self) -> ServingConfig:
        for i, o in enumerate(self.allowed_origins):
            if not _ORIGIN.fullmatch(o.strip()):
                raise ValueError(
                    f"allowed_origins.{i} = {o!r} is not an origin; give scheme://host"
                    f"[:port] with no path, e.g. 'https://dashboard.example.com'")
        return self


#: scheme://host[:port], what a browser sends in an Origin header
_ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:[0-9]{1,5})?/?")
