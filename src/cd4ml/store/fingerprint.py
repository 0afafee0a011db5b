"""File fingerprints (sha256) remembered by (path, size, mtime), like DVC's state.

Light on purpose: checking an up-to-date pipeline hashes its inputs without importing
pandas or any ML library.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cd4ml.errors import SourceError

__all__ = ["file_fingerprint"]

_CHUNK = 1 << 20


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _load_cache(cache: Path) -> dict[str, Any]:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    entries = data.get("entries") if isinstance(data, dict) else None
    return entries if isinstance(entries, dict) else {}


def file_fingerprint(path: str | Path, cache: str | Path | None = None) -> str:
    """The sha256 (hex) of the file's bytes, remembered in the JSON file ``cache``.

    An entry is reused while the file's resolved path, size and ``mtime_ns`` are unchanged,
    so an unchanged file is not read again. A missing or corrupt cache is rebuilt; the
    cache is replaced atomically.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_bytes(b"abc")
    >>> file_fingerprint(d / "a.txt", d / "state.json")[:16]
    'ba7816bf8f01cfea'
    >>> file_fingerprint(d / "a.txt", d / "state.json")[:16]  # from the cache
    'ba7816bf8f01cfea'
    """
    path = Path(path).resolve()
    try:
        st = path.stat()
    except OSError:
        raise SourceError(f"cannot fingerprint {path}: file not found") from None
    if cache is None:
        return _hash_file(path)
    cache = Path(cache)
    entries = _load_cache(cache)
    key = str(path)
    hit = entries.get(key)
    if isinstance(hit, dict) and hit.get("size") == st.st_size \
            and hit.get("mtime_ns") == st.st_mtime_ns and isinstance(hit.get("sha256"), str):
        return hit["sha256"]
    digest = _hash_file(path)
    entries[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": 1, "entries": entries}, indent=1, sort_keys=True),
                   encoding="utf-8")
    os.replace(tmp, cache)
    return digest
