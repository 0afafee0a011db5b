"""What the metadata store's mixins (alerts, deployments) take from
:class:`~cd4ml.store.metadata.MetadataStore`: its connections, clock and audit trail."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = ["StoreMixin"]


class StoreMixin:
    """The base of a mixin of :class:`~cd4ml.store.metadata.MetadataStore`."""

    if TYPE_CHECKING:  # provided by MetadataStore
        def _read(self) -> AbstractContextManager[sa.Connection]: ...
        def _write(self) -> AbstractContextManager[sa.Connection]: ...
        def _now(self) -> dt.datetime: ...
        def _audit(self, conn: sa.Connection, *, at: dt.datetime, actor: str, action: str,
                   object: str, detail: Mapping[str, Any] | None,
                   reason: str | None) -> int: ...
