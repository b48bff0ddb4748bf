"""The content-addressed store: layout, idempotent puts, verification, crash leftovers."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest

from provenance.object_store import ObjectStore, default_object_store


def test_put_file_layout_and_idempotence(tmp_path: Path) -> None:
    store = ObjectStore(str(tmp_path / "objects"))
    src = tmp_path / "a.bin"
    src.write_bytes(b"hello audio" * 1000)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    got_sha, uri = store.put_file(src)
    assert got_sha == sha
    target = tmp_path / "objects" / "sha256" / sha[:2] / sha
    assert target.read_bytes() == src.read_bytes()
    assert uri == target.as_uri() == store.uri_for(sha)
    assert store.exists(sha)
    mtime = target.stat().st_mtime_ns
    assert store.put_file(src) == (sha, uri)  # same bytes: nothing rewritten
    assert store.put_file(src, expected_sha256=sha) == (sha, uri)
    assert target.stat().st_mtime_ns == mtime
    with store.open(sha) as f:
        assert f.read() == src.read_bytes()
    assert list(store.iter_shas()) == [sha]
    assert not any((tmp_path / "objects" / "tmp").iterdir())


def test_put_file_refuses_bytes_that_changed(tmp_path: Path) -> None:
    store = ObjectStore(str(tmp_path / "objects"))
    src = tmp_path / "a.bin"
    src.write_bytes(b"new content")
    with pytest.raises(ValueError, match="changed while"):
        store.put_file(src, expected_sha256="0" * 64)
    assert list(store.iter_shas()) == []
    assert not any((tmp_path / "objects" / "tmp").iterdir())


def test_bad_sha_and_missing_objects(tmp_path: Path) -> None:
    store = ObjectStore(str(tmp_path / "objects"))
    with pytest.raises(ValueError, match="not a sha256"):
        store.path_for("../../etc/passwd")
    with pytest.raises(FileNotFoundError):
        store.open("a" * 64)
    assert not store.exists("a" * 64)


def test_fsspec_memory_store() -> None:
    store = ObjectStore("memory://fairchord-test-objects")
    sha, uri = store.put_bytes(b"in memory")
    assert uri.startswith("memory://") and uri.endswith(f"/sha256/{sha[:2]}/{sha}")
    with fsspec.open(uri, "rb") as f:
        assert f.read() == b"in memory"
    assert store.exists(sha)
    with store.open(sha) as f:
        assert f.read() == b"in memory"
    store.delete(sha)
    assert not store.exists(sha)


def test_default_store_lives_under_home(_isolated_home: Path) -> None:
    assert Path(default_object_store().root) == _isolated_home / "objects"


def test_killed_writer_leaves_only_a_temporary_file_that_is_swept(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 << 20))  # three chunks: killed after the first
    code = (
        "from provenance.object_store import ObjectStore; import sys; "
        "ObjectStore(sys.argv[1]).put_file(sys.argv[2])"
    )
    env = dict(os.environ, FAIRCHORD_CRASH_AT="object_tmp_written:1")
    proc = subprocess.run([sys.executable, "-c", code, str(root), str(src)], env=env)
    assert proc.returncode == -9  # SIGKILL
    store = ObjectStore(str(root))
    assert list(store.iter_shas()) == []
    leftovers = list((root / "tmp").iterdir())
    assert len(leftovers) == 1
    # A live writer's temporary file is left alone; a dead one's is removed.
    assert store.remove_stale_tmp() == [str(leftovers[0])]
    assert not any((root / "tmp").iterdir())
    sha, _ = store.put_file(src)
    assert list(store.iter_shas()) == [sha]


def test_locations_inside_the_home_are_home_relative(tmp_path: Path) -> None:
    from provenance.object_store import home_location, location_path, resolve_location
    from provenance.settings import fairchord_home

    home = fairchord_home()
    inside = home / "runs" / "3" / "final.safetensors"
    assert home_location(inside) == "home://runs/3/final.safetensors"
    assert resolve_location("home://runs/3/final.safetensors") == str(inside)
    assert location_path("home://runs/3/final.safetensors") == inside
    # Outside the home: the absolute file URI, as before.
    outside = tmp_path / "elsewhere" / "x.bin"
    assert home_location(outside) == outside.as_uri()
    # Old absolute locations and other URIs are read as they are.
    for kept in (outside.as_uri(), str(outside), "s3://bucket/key", "memory://x"):
        assert resolve_location(kept) == kept
    assert location_path(outside.as_uri()) == outside
    assert location_path(str(outside)) == outside
    with pytest.raises(ValueError, match="not on the local filesystem"):
        location_path("s3://bucket/key")
    for escaping in ("home://../etc/passwd", "home:///etc/passwd", "home://a/../../b"):
        with pytest.raises(ValueError, match="leaves the home"):
            resolve_location(escaping)


def test_a_store_in_the_home_records_home_locations(tmp_path: Path) -> None:
    from provenance.object_store import open_location

    store = default_object_store()
    sha, uri = store.put_bytes(b"bytes in the home")
    assert uri == f"home://objects/sha256/{sha[:2]}/{sha}"
    with open_location(uri) as handle:
        assert handle.read() == b"bytes in the home"
