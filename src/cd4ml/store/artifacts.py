"""Content-addressed artifact store on any fsspec filesystem (local folder by default).

An object is stored once under its sha256: ``objects/ab/cdef...``. Writes go to a
temporary file and are then renamed into place, so a reader never sees half an object
and concurrent writers of the same bytes are harmless. Reads verify the hash.

>>> import tempfile
>>> store = ArtifactStore(tempfile.mkdtemp())
>>> digest = store.put_json({"b": 1, "a": [1.5, None]})
>>> digest[:12], store.get_json(digest)
('cf0c4895ed70', {'a': [1.5, None], 'b': 1})
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from cd4ml.errors import ConfigError, IntegrityError, MissingExtraError, NotFoundError, \
    StoreError
from cd4ml.store._json import canonical_json

__all__ = ["ArtifactStore", "sha256_file", "URL_KEY"]

URL_KEY = "store.artifacts_url"
CHUNK = 1 << 20
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_EXTRAS = {"s3": ("S3 artifacts", "s3", "s3fs"), "s3a": ("S3 artifacts", "s3", "s3fs"),
           "gs": ("GCS artifacts", "gcs", "gcsfs"), "gcs": ("GCS artifacts", "gcs", "gcsfs")}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ArtifactStore:
    """Bytes by sha256, in a folder or an fsspec URL.

    Parameters
    ----------
    url:
        A folder path, ``file://PATH``, or an fsspec URL such as ``s3://bucket/prefix``.
        Relative paths resolve against ``root``.
    root:
        Folder that relative paths resolve against (default: working directory).
    """

    def __init__(self, url: str | os.PathLike[str], *, root: str | Path | None = None
                 ) -> None:
        text = os.fspath(url)
        if "://" not in text or text.startswith("file://"):
            path = Path(text.removeprefix("file://")).expanduser()
            if not path.is_absolute():
                path = Path(root if root is not None else Path.cwd()) / path
            self._fs: fsspec.AbstractFileSystem = LocalFileSystem()
            self._base = str(path.resolve())
            self.url = f"file://{self._base}"
            return
        protocol = text.split("://", 1)[0]
        try:
            self._fs, base = fsspec.core.url_to_fs(text)
        except ImportError:
            feature, extra, module = _EXTRAS.get(protocol, (f"{protocol}:// artifacts",
                                                            protocol, protocol + "fs"))
            raise MissingExtraError(feature, extra, module) from None
        except ValueError as exc:
            raise ConfigError(f"unknown artifact store scheme {protocol!r} ({exc}); use a "
                              f"folder path, file://PATH or s3://BUCKET/PREFIX",
                              key=URL_KEY, value=text) from None
        self._base = base.rstrip("/")
        self.url = text.rstrip("/")

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    @property
    def is_local(self) -> bool:
        """True when objects are files on this machine (``local_path`` works)."""
        return isinstance(self._fs, LocalFileSystem)

    # -- paths ---------------------------------------------------------------------

    def _path(self, digest: str) -> str:
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise NotFoundError(f"{digest!r} is not an artifact digest (64 lowercase hex "
                                f"characters of a sha256)")
        return f"{self._base}/objects/{digest[:2]}/{digest[2:]}"

    def _present(self, path: str, size: int) -> bool:
        """True when an object is stored at ``path`` with the expected size."""
        try:
            return int(self._fs.size(path)) == size
        except (FileNotFoundError, OSError):
            return False

    # -- writes --------------------------------------------------------------------

    def put_bytes(self, data: bytes | bytearray | memoryview) -> str:
        """Store ``data``; returns its sha256 hex digest. Storing it again is a no-op."""
        data = bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if self._present(path, len(data)):
            return digest
        if self.is_local:
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                self._publish_local(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        else:
            tmp = f"{os.path.dirname(path)}/.tmp-{uuid.uuid4().hex}"
            self._fs.pipe_file(tmp, data)
            self._fs.mv(tmp, path)
        return digest

    def put_file(self, path: str | os.PathLike[str]) -> str:
        """Store a file's bytes (streamed, never read whole); returns the digest."""
        src = Path(path)
        if not src.is_file():
            raise NotFoundError(f"cannot store {src}: no such file")
        size = src.stat().st_size
        if not self.is_local:
            digest = sha256_file(src)
            target = self._path(digest)
            if not self._present(target, size):
                tmp = f"{os.path.dirname(target)}/.tmp-{uuid.uuid4().hex}"
                self._fs.put_file(str(src), tmp)
                self._fs.mv(tmp, target)
            return digest
        # Local: hash while copying into tmp/ (same filesystem), then rename into place.
        tmp_dir = os.path.join(self._base, "tmp")
        os.makedirs(tmp_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=".tmp-")
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
                for chunk in iter(lambda: f.read(CHUNK), b""):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = h.hexdigest()
            target = self._path(digest)
            if self._present(target, size):
                os.unlink(tmp)
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                self._publish_local(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return digest

    def put_json(self, obj: Any) -> str:
        """Store ``obj`` as canonical JSON (sorted keys, compact, NaN as null)."""
        return self.put_bytes(canonical_json(obj))

    @staticmethod
    def _publish_local(tmp: str, path: str) -> None:
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        _fsync_dir(os.path.dirname(path))

    # -- reads ---------------------------------------------------------------------

    def get_bytes(self, digest: str) -> bytes:
        """The bytes stored under ``digest``, checked against it."""
        path = self._path(digest)
        try:
            data = self._fs.cat_file(path)
        except FileNotFoundError:
            raise NotFoundError(f"no artifact {digest} in {self.url}") from None
        self._check(digest, hashlib.sha256(data).hexdigest(), path)
        return bytes(data)

    def get_json(self, digest: str) -> Any:
        """The JSON object stored under ``digest``."""
        return json.loads(self.get_bytes(digest))

    def exists(self, digest: str) -> bool:
        """True when an object is stored under ``digest`` (not verified)."""
        try:
            return bool(self._fs.exists(self._path(digest)))
        except NotFoundError:
            return False

    def verify(self, digest: str) -> None:
        """Raise :class:`IntegrityError` unless the stored bytes hash to ``digest``."""
        path = self._path(digest)
        h = hashlib.sha256()
        try:
            with self._fs.open(path, "rb") as f:
                for chunk in iter(lambda: f.read(CHUNK), b""):
                    h.update(chunk)
        except FileNotFoundError:
            raise NotFoundError(f"no artifact {digest} in {self.url}") from None
        self._check(digest, h.hexdigest(), path)

    def local_path(self, digest: str, *, verify: bool = True) -> Path:
        """The file holding ``digest`` (local stores only), verified unless told not to.

        Treat the file as read-only: it is shared by everything with the same bytes.
        """
        if not self.is_local:
            raise StoreError(f"local_path needs a local artifact store; {self.url} is "
                             f"remote: read it with get_bytes")
        path = Path(self._path(digest))
        if verify:
            self.verify(digest)
        elif not path.is_file():
            raise NotFoundError(f"no artifact {digest} in {self.url}")
        return path

    def _check(self, digest: str, actual: str, path: str) -> None:
        if actual != digest:
            raise IntegrityError(
                f"artifact {digest} is corrupted: the file {path} hashes to {actual}; "
                f"delete it and re-run the step that wrote it")
