"""Verified local copies of stored files, for readers that need a path (pyarrow, torch, faiss).

A location on the local filesystem (``home://``, ``file://``, a path) is used
where it is. A remote one (``s3://…``) is downloaded once into the cache
(``$FAIRCHORD_STAGING_DIR/cache/sha256/ab/ab…``, keyed by the digest the
provenance DB recorded), hashed, and used only if it hashes to that digest; a
copy that does not is removed and :class:`StoreIntegrityError` raised, so a
reader fails closed. A cached copy is hashed again each time it is handed out.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import fsspec

from provenance.hashing import sha256_file
from provenance.object_store import location_path, resolve_location
from provenance.s3_objects import StoreIntegrityError
from provenance.store_settings import staging_dir


def is_remote(location: str) -> bool:
    resolved = resolve_location(location)
    return "://" in resolved and not resolved.startswith("file://")


def cache_dir() -> Path:
    folder = staging_dir() / "cache"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cached_copy(location: str, sha256: str) -> Path:
    """A local path holding the bytes recorded at ``location`` under ``sha256``."""
    if not is_remote(location):
        return location_path(location)
    target = cache_dir() / "sha256" / sha256[:2] / sha256
    if target.exists():
        if sha256_file(target) == sha256:
            return target
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{sha256}.{uuid.uuid4().hex}.tmp")
    url = resolve_location(location)
    try:
        fs, path = fsspec.core.url_to_fs(url)
        fs.invalidate_cache(path)
        fs.get_file(path, str(tmp))
        actual = sha256_file(tmp)
        if actual != sha256:
            raise StoreIntegrityError(
                f"{url} hashes to {actual}, but {sha256} was recorded: not used"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def cached_folder(key: str, files: Iterable[tuple[str, str, str]]) -> Path:
    """A local folder named ``key`` holding each ``(name, location, sha256)`` as ``name``
    (links into the cache, or copies where links cannot be made)."""
    folder = cache_dir() / "folders" / key
    folder.mkdir(parents=True, exist_ok=True)
    for name, location, sha in files:
        if "/" in name or name.startswith("."):
            raise ValueError(f"{name!r} is not a plain file name")
        source = cached_copy(location, sha)
        target = folder / name
        if target.exists() and (os.path.samefile(source, target) or sha256_file(target) == sha):
            continue
        target.unlink(missing_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    return folder
