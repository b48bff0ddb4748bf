"""The object store on S3 (moto_server over HTTP): puts checked by ETag, size and sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from provenance.hashing import sha256_uri
from provenance.object_store import (
    ObjectStore,
    default_object_store,
    store_consistency,
    sweep_orphan_objects,
)
from provenance.s3_objects import (
    SHA256_METADATA,
    StoreIntegrityError,
    multipart_etag,
    upload_verified,
)
from provenance.store_publish import publish_or_home
from provenance.store_settings import configured_store_url
from tests.common.s3 import S3Bucket

MiB = 1024**2


def test_put_open_and_metadata(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = ObjectStore(f"{s3_bucket.url}/objects")
    assert store.s3 and store.url == f"{s3_bucket.url}/objects"
    data = b"a recording's bytes" * 100
    sha, uri = store.put_bytes(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert uri == f"{s3_bucket.url}/objects/sha256/{sha[:2]}/{sha}"
    with store.open(sha) as handle:
        assert handle.read() == data
    assert sha256_uri(uri) == sha
    head = s3_bucket.client().head_object(
        Bucket=s3_bucket.name, Key=f"objects/sha256/{sha[:2]}/{sha}"
    )
    assert head["Metadata"][SHA256_METADATA] == sha
    assert head["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    assert list(store.iter_shas()) == [sha]

    source = tmp_path / "item.bin"
    source.write_bytes(data)
    assert store.put_file(source, expected_sha256=sha) == (sha, uri)  # already there
    with pytest.raises(ValueError, match="expected"):
        store.put_file(source, expected_sha256="0" * 64)
    assert list(store.iter_shas()) == [sha]


def test_multipart_upload_has_the_composite_etag(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = ObjectStore(f"{s3_bucket.url}/objects")
    part = 5 * MiB  # S3's smallest part
    data = bytes(range(256)) * (11 * MiB // 256)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    upload_verified(store.fs, source, store.path_for(sha), expected_sha256=sha, part_bytes=part)
    md5s = [hashlib.md5(data[i : i + part]).digest() for i in range(0, len(data), part)]
    head = s3_bucket.client().head_object(
        Bucket=s3_bucket.name, Key=f"objects/sha256/{sha[:2]}/{sha}"
    )
    assert head["ETag"].strip('"') == multipart_etag(md5s) and multipart_etag(md5s).endswith("-3")
    assert store.exists(sha) and sha256_uri(store.uri_for(sha)) == sha


def _corrupting(real: Any) -> Any:
    """``call_s3`` that flips one byte of every body it sends, as a faulty store would."""

    def call(method: str, *args: Any, **kwargs: Any) -> Any:
        if "Body" in kwargs:
            body = bytearray(kwargs["Body"])
            body[0] ^= 0xFF
            kwargs["Body"] = bytes(body)
        return real(method, *args, **kwargs)

    return call


@pytest.mark.parametrize("size,part", [(1000, 64 * MiB), (11 * MiB, 5 * MiB)])
def test_a_store_that_keeps_other_bytes_is_caught(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, part: int
) -> None:
    store = ObjectStore(f"{s3_bucket.url}/objects")
    data = b"\x01" * size
    source = tmp_path / "item.bin"
    source.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    monkeypatch.setattr(store.fs, "call_s3", _corrupting(store.fs.call_s3))
    with pytest.raises(StoreIntegrityError, match="ETag"):
        upload_verified(store.fs, source, store.path_for(sha), expected_sha256=sha, part_bytes=part)
    monkeypatch.undo()
    assert not store.exists(sha)  # nothing left under the digest
    assert list(store.iter_shas()) == []


def test_an_object_changed_behind_the_store_is_not_reused(s3_bucket: S3Bucket) -> None:
    store = ObjectStore(f"{s3_bucket.url}/objects")
    sha, _ = store.put_bytes(b"original")
    s3_bucket.client().put_object(
        Bucket=s3_bucket.name, Key=f"objects/sha256/{sha[:2]}/{sha}", Body=b"other"
    )
    assert not store.exists(sha)  # no sha256 metadata any more: uploaded again
    assert store.put_bytes(b"original")[0] == sha
    assert store.exists(sha) and sha256_uri(store.uri_for(sha)) == sha


def test_store_url_setting(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home_store = default_object_store()
    assert home_store.local and Path(home_store.root).parent.name == "home"
    monkeypatch.setenv("FAIRCHORD_STORE_URL", f"{s3_bucket.url}/prefix/")
    assert configured_store_url() == f"{s3_bucket.url}/prefix"
    assert default_object_store().root_uri == f"{s3_bucket.url}/prefix/objects"
    monkeypatch.setenv("FAIRCHORD_STORE_URL", (tmp_path / "store").as_uri())
    store = default_object_store()
    assert store.local and store.root == str(tmp_path / "store" / "objects")
    for bad in ("/plain/path", "gs://bucket/x", "s3://", "s3://bucket/../x", "file://relative"):
        monkeypatch.setenv("FAIRCHORD_STORE_URL", bad)
        with pytest.raises(ValueError, match="FAIRCHORD_STORE_URL"):
            configured_store_url()


def test_published_checkpoint_is_read_back_verified(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generation.checkpoint_checks import CheckpointInvalid, checkpoint_path

    local = tmp_path / "home" / "runs" / "7" / "final.safetensors"
    local.parent.mkdir(parents=True)
    local.write_bytes(b"weights" * 1000)
    sha = hashlib.sha256(local.read_bytes()).hexdigest()
    assert publish_or_home(local, "checkpoints", "run-7/final.safetensors", sha256=sha) == (
        "home://runs/7/final.safetensors"  # no store URL: the home location, as before
    )
    monkeypatch.setenv("FAIRCHORD_STORE_URL", f"{s3_bucket.url}/store")
    uri = publish_or_home(local, "checkpoints", "run-7/final.safetensors", sha256=sha)
    assert uri == f"{s3_bucket.url}/store/checkpoints/run-7/final.safetensors"
    assert sha256_uri(uri) == sha
    copy = checkpoint_path(uri, sha)
    assert copy.read_bytes() == local.read_bytes() and copy != local

    s3_bucket.client().put_object(
        Bucket=s3_bucket.name, Key="store/checkpoints/run-7/final.safetensors", Body=b"other"
    )
    monkeypatch.setenv("FAIRCHORD_STAGING_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(CheckpointInvalid, match="not used"):
        checkpoint_path(uri, sha)
    assert not any((tmp_path / "elsewhere").rglob(sha))  # nothing left in the cache


def test_sweep_keeps_a_young_orphan(session: Session, s3_bucket: S3Bucket) -> None:
    store = ObjectStore(f"{s3_bucket.url}/objects")
    sha, _ = store.put_bytes(b"stored, its row never committed")
    assert store_consistency(session, store) == ([sha], [])
    assert sweep_orphan_objects(session, store) == []  # LastModified says it is new
    assert sweep_orphan_objects(session, store, older_than_s=0) == [sha]
    assert not store.exists(sha)
