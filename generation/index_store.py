"""A gate index folder in the configured store (``$FAIRCHORD_STORE_URL``).

faiss, numpy and the fingerprint table write local files, so an index is built
in the home as always. With a store URL set, the folder is then published to
``<store url>/indexes/run-<id>/<sha256[:12]>/`` file by file (each upload
checked, :mod:`provenance.store_publish`) and that URL recorded; calibration
files written later are published the same way as they are written.
Whoever reads or extends an index in the store works on a local mirror in the
cache (:func:`working_dir`); loading then checks every file against the
digests the database recorded, as it does for a local index, so a changed
file makes the gate unavailable (it fails closed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import fsspec

from provenance.object_store import home_location, location_path
from provenance.sources.prefix_paths import key_problem
from provenance.store_cache import cache_dir, is_remote
from provenance.store_publish import fetch_file, publish_file
from provenance.store_settings import published_root


def index_location(directory: Path, training_run_id: int) -> str:
    """The location to record for an index folder just written: its published URL when a
    store URL is set, else its home location."""
    root = published_root("indexes")
    if root is None:
        return home_location(directory)
    url = f"{root}/run-{training_run_id}/{directory.name}"
    publish_changes(url, directory, [directory])
    return url


def working_dir(uri: str) -> Path:
    """A local folder holding the index at ``uri``: the folder itself when it is local, else
    a mirror in the cache (files missing there, or of another size, fetched again). The
    caller verifies what it reads against the recorded digests."""
    if not is_remote(uri):
        return location_path(uri)
    fs, root = fsspec.core.url_to_fs(uri)
    root = root.rstrip("/")
    mirror = cache_dir() / "indexes" / hashlib.sha256(uri.encode()).hexdigest()[:24]
    mirror.mkdir(parents=True, exist_ok=True)
    fs.invalidate_cache(root)
    for name, info in sorted(fs.find(root, withdirs=False, detail=True).items()):
        relative = str(name)[len(root) + 1 :]
        if key_problem(relative) is not None:
            continue  # never written by fairchord; never mirrored outside the folder
        local = mirror / relative
        if local.is_file() and local.stat().st_size == info.get("size"):
            continue
        fetch_file(str(fs.unstrip_protocol(name)), local)
    return mirror


def publish_changes(uri: str, directory: Path, changed: Iterable[Path]) -> None:
    """Publish ``changed`` files (or every file under a changed folder) of the local folder
    ``directory`` to the index at ``uri``; nothing when the index is local."""
    if not is_remote(uri):
        return
    for path in changed:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            relative = file.relative_to(directory).as_posix()
            if file.name.endswith(".tmp"):
                continue
            publish_file(file, f"{uri}/{relative}")
