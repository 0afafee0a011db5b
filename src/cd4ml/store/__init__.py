"""Where cd4ml keeps what it knows: metadata in a database, artifacts by content hash.

The backends are chosen by URL in ``cd4ml.yaml`` (``store:``), never by code changes:

- metadata: ``sqlite:///.cd4ml/metadata.db`` (default) or
  ``postgresql+psycopg://USER@HOST:PORT/DB``, migrated to the newest schema on open;
- artifacts: a folder (default ``.cd4ml/artifacts``), ``file://PATH``, or an fsspec URL.

>>> import tempfile
>>> from types import SimpleNamespace
>>> cfg = SimpleNamespace(metadata_url="sqlite:///.cd4ml/metadata.db",
...                       artifacts_url=".cd4ml/artifacts")
>>> with open_stores(cfg, tempfile.mkdtemp()) as stores:
...     digest = stores.artifacts.put_bytes(b"hello")
...     stores.metadata.list_runs(), stores.artifacts.get_bytes(digest)
([], b'hello')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from cd4ml.store.artifacts import ArtifactStore
from cd4ml.store.lock import lock_holder, project_lock
from cd4ml.store.metadata import MetadataStore

if TYPE_CHECKING:
    from cd4ml.config import StoreConfig

__all__ = ["Stores", "open_stores", "MetadataStore", "ArtifactStore", "project_lock",
           "lock_holder"]


@dataclass(frozen=True)
class Stores:
    """The open stores of one project."""

    metadata: MetadataStore
    artifacts: ArtifactStore
    root: Path

    def close(self) -> None:
        """Release database connections."""
        self.metadata.close()

    def __enter__(self) -> Stores:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_stores(store_cfg: StoreConfig, root: str | Path) -> Stores:
    """Open the metadata and artifact stores named in ``store_cfg``.

    Relative paths resolve against ``root`` (the project folder). Raises ConfigError for
    a URL cd4ml cannot use and MissingExtraError when its driver is not installed.
    """
    root = Path(root).absolute()
    artifacts = ArtifactStore(store_cfg.artifacts_url, root=root)
    metadata = MetadataStore(store_cfg.metadata_url, root=root)
    return Stores(metadata=metadata, artifacts=artifacts, root=root)
