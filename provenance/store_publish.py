"""Publishing files that libraries write locally (Arrow shards, manifests, checkpoints, gate
index files) to the configured store, checked on arrival.

pyarrow, torch, faiss and numpy write local files; with ``$FAIRCHORD_STORE_URL``
set, the file is written in the home as before and then published to
``<store url>/<kind>/<name>``: on S3 by :func:`provenance.s3_objects.upload_verified`
(ETag, size and sha256 metadata checked), in a ``file://`` store by a copy to a
temporary name that is re-hashed before it is renamed into place. The location
to record is what :func:`publish_file` returns. Readers get a verified local copy
through :mod:`provenance.store_cache`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import fsspec

from provenance.hashing import sha256_file
from provenance.object_store import home_location
from provenance.s3_objects import StoreIntegrityError, is_s3_filesystem, upload_verified
from provenance.store_settings import published_root


def publish_file(local_path: str | Path, url: str, *, sha256: str | None = None) -> str:
    """Copy ``local_path`` to ``url`` (``s3://…`` or ``file://…``) and check the copy; return
    the location to record. ``sha256``: what the local file must hash to (hashed if omitted).
    Raises :class:`provenance.s3_objects.StoreIntegrityError` when the copy differs."""
    sha = sha256 or sha256_file(local_path)
    fs, path = fsspec.core.url_to_fs(url)
    if is_s3_filesystem(fs):
        upload_verified(fs, local_path, path, expected_sha256=sha)
        return str(fs.unstrip_protocol(path))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        shutil.copyfile(local_path, tmp)
        copied = sha256_file(tmp)
        if copied != sha:
            raise StoreIntegrityError(f"{target}: the copy hashes to {copied}, expected {sha}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return home_location(target)


def fetch_file(url: str, local_path: str | Path) -> bool:
    """Copy the stored file at ``url`` over ``local_path`` (via a temporary name); ``False``
    when there is none. The caller checks what it fetched against a recorded digest."""
    fs, path = fsspec.core.url_to_fs(url)
    fs.invalidate_cache(path)
    if not fs.exists(path):
        return False
    local = Path(local_path)
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex}.tmp")
    try:
        fs.get_file(path, str(tmp))
        os.replace(tmp, local)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def publish_or_home(local_path: str | Path, kind: str, name: str, *, sha256: str) -> str:
    """The location to record for a file written in the home: published to
    ``<store url>/<kind>/<name>`` when a store URL is set, else its home location."""
    root = published_root(kind)
    if root is None:
        return home_location(local_path)
    return publish_file(local_path, f"{root}/{name}", sha256=sha256)
