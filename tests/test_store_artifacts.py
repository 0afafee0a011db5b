"""The content-addressed artifact store: round trips, idempotence, corruption, misses."""

from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cd4ml.errors import ConfigError, IntegrityError, MissingExtraError, NotFoundError, \
    StoreError
from cd4ml.store import ArtifactStore


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def test_put_get_bytes_round_trip_and_layout(store: ArtifactStore, tmp_path: Path) -> None:
    data = b"weekly sales\x00\xff" * 1000
    digest = store.put_bytes(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.get_bytes(digest) == data
    assert store.exists(digest)
    path = tmp_path / "artifacts" / "objects" / digest[:2] / digest[2:]
    assert store.local_path(digest) == path and path.read_bytes() == data
    store.verify(digest)
    # no temporary files left behind
    assert [p.name for p in path.parent.iterdir()] == [digest[2:]]


def test_put_is_idempotent(store: ArtifactStore) -> None:
    digest = store.put_bytes(b"abc")
    path = store.local_path(digest)
    before = path.stat()
    assert store.put_bytes(bytearray(b"abc")) == digest
    after = path.stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_put_file_streams_and_matches_put_bytes(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    data = os.urandom(3 * (1 << 20) + 17)  # several chunks
    src.write_bytes(data)
    digest = store.put_file(src)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.put_bytes(data) == digest
    assert store.put_file(src) == digest
    assert store.get_bytes(digest) == data
    assert list((tmp_path / "artifacts" / "tmp").iterdir()) == []
    with pytest.raises(NotFoundError, match="no such file"):
        store.put_file(tmp_path / "missing.csv")


def test_put_json_is_canonical(store: ArtifactStore) -> None:
    a = store.put_json({"b": 1, "a": [1.5, None], "c": {"y": 2, "x": 1}})
    b = store.put_json({"c": {"x": 1, "y": 2}, "a": [1.5, None], "b": 1})
    assert a == b
    assert store.get_bytes(a) == b'{"a":[1.5,null],"b":1,"c":{"x":1,"y":2}}'
    assert store.get_json(a) == {"a": [1.5, None], "b": 1, "c": {"x": 1, "y": 2}}
    nan = store.put_json({"wmae": math.nan})
    assert store.get_json(nan) == {"wmae": None}


def test_corruption_is_detected(store: ArtifactStore) -> None:
    digest = store.put_bytes(b"model bytes " * 100)
    path = store.local_path(digest)
    raw = bytearray(path.read_bytes())
    raw[10] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError) as err:
        store.get_bytes(digest)
    assert digest in str(err.value) and str(path) in str(err.value)
    with pytest.raises(IntegrityError, match=digest):
        store.verify(digest)
    with pytest.raises(IntegrityError, match=digest):
        store.local_path(digest)
    assert store.local_path(digest, verify=False) == path


def test_missing_and_malformed_digests(store: ArtifactStore) -> None:
    missing = hashlib.sha256(b"never stored").hexdigest()
    assert not store.exists(missing)
    for call in (store.get_bytes, store.get_json, store.verify, store.local_path):
        with pytest.raises(NotFoundError, match=missing):
            call(missing)
    assert not store.exists("../../etc/passwd")
    with pytest.raises(NotFoundError, match="not an artifact digest"):
        store.get_bytes("../../etc/passwd")


def test_concurrent_writers_of_the_same_bytes(store: ArtifactStore) -> None:
    data = os.urandom(1 << 20)
    with ThreadPoolExecutor(8) as pool:
        digests = set(pool.map(lambda _: store.put_bytes(data), range(32)))
    (digest,) = digests
    assert store.get_bytes(digest) == data
    assert [p.name for p in store.local_path(digest).parent.iterdir()] == [digest[2:]]


def test_urls_and_relative_paths(tmp_path: Path) -> None:
    rel = ArtifactStore(".cd4ml/artifacts", root=tmp_path)
    assert rel.url == f"file://{tmp_path / '.cd4ml' / 'artifacts'}"
    digest = rel.put_bytes(b"x")
    same = ArtifactStore(f"file://{tmp_path}/.cd4ml/artifacts")
    assert same.get_bytes(digest) == b"x" and same.is_local


def test_remote_backend_through_fsspec() -> None:
    """The non-local code path (as s3 will use), on fsspec's in-memory filesystem."""
    import fsspec

    store = ArtifactStore("memory://cd4ml-test/artifacts")
    assert not store.is_local
    digest = store.put_json({"a": 1})
    assert store.put_json({"a": 1}) == digest
    assert store.get_json(digest) == {"a": 1}
    store.verify(digest)
    fs = fsspec.filesystem("memory")
    path = f"/cd4ml-test/artifacts/objects/{digest[:2]}/{digest[2:]}"
    assert fs.cat_file(path) == json.dumps({"a": 1}, separators=(",", ":")).encode()
    fs.pipe_file(path, b'{"a":2}')
    with pytest.raises(IntegrityError, match=digest):
        store.get_bytes(digest)
    with pytest.raises(StoreError, match="remote"):
        store.local_path(digest)
    fs.rm("/cd4ml-test", recursive=True)


def test_put_file_remote(tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"payload")
    store = ArtifactStore("memory://cd4ml-test-file/a")
    digest = store.put_file(src)
    assert store.get_bytes(digest) == b"payload"


def test_unknown_scheme_and_missing_extra() -> None:
    with pytest.raises(ConfigError, match="store.artifacts_url"):
        ArtifactStore("nosuchproto://bucket/x")
    try:
        import s3fs  # noqa: F401
    except ImportError:
        with pytest.raises(MissingExtraError, match="s3fs"):
            ArtifactStore("s3://bucket/prefix")
