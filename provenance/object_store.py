"""A content-addressed object store on any fsspec filesystem.

Objects live at ``<root>/sha256/<first two hex>/<sha256>``. A put streams the
source once, hashing while it writes to ``<root>/tmp/<host>-<pid>-<random>``,
then renames the temporary file into place, so a reader never sees a partial
object and a killed writer leaves only a temporary file that
:meth:`ObjectStore.remove_stale_tmp` recognises (its process is gone).
Putting the same bytes twice is a no-op. An object no recording names (its
run was killed between storing it and committing its row) is found by
:func:`store_consistency` and removed, once old, by :func:`sweep_orphan_objects`.

Locations the provenance DB records (objects, feature shards, checkpoints, gate
indexes) are *home-relative* when they lie inside the fairchord home:
``home://objects/sha256/ab/ab…`` means ``$FAIRCHORD_HOME/objects/sha256/ab/ab…``
of whichever home is in use when it is read (:func:`home_location` writes them,
:func:`resolve_location` reads them), so a home can be moved or restored from
a backup elsewhere. Locations outside the home, on other filesystems, and the
absolute ``file://`` URIs written before this scheme, are kept and read as they are.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlparse

import fsspec
from fsspec.implementations.local import LocalFileSystem
from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.models import Recording
from provenance.s3_objects import is_s3_filesystem, put_s3_object, stored_object_problem
from provenance.settings import fairchord_home
from provenance.store_settings import objects_root

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
CRASH_ENV = "FAIRCHORD_CRASH_AT"


def crash_point(name: str) -> None:
    """Fault injection for the kill tests: ``FAIRCHORD_CRASH_AT=<name>:<n>`` makes this
    process SIGKILL itself the ``n``-th time it reaches point ``name``. A no-op otherwise."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    with _crash_lock:
        _crash_counts[name] = _crash_counts.get(name, 0) + 1
        reached = _crash_counts[name] >= int(nth or 1)
    if reached:
        import signal

        logger.warning("crash point %s reached %s time(s): killing myself", name, nth)
        os.kill(os.getpid(), signal.SIGKILL)


_crash_counts: dict[str, int] = {}
_crash_lock = threading.Lock()


class ObjectStore:
    """Originals addressed by the sha256 of their bytes, under ``root_uri`` (path or fsspec URI)."""

    def __init__(self, root_uri: str, *, home: str | Path | None = None) -> None:
        """``home``: the fairchord home that recorded locations are relative to (default: the
        current one, read when a location is made); a Dask worker gets its client's."""
        self.root_uri = str(root_uri)
        fs, root = fsspec.core.url_to_fs(self.root_uri)
        self.fs = fs
        self.root = root.rstrip("/")
        self.local = isinstance(fs, LocalFileSystem)
        # On S3 a PUT is atomic and checked after it lands (provenance/s3_objects.py).
        self.s3 = is_s3_filesystem(fs)
        self.home = Path(home) if home is not None else None

    @property
    def url(self) -> str:
        """The root as a URL any process on this host reads the same: an absolute ``file://``
        URL for a local store (never relative to a working folder), else ``root_uri``."""
        return Path(self.root).resolve().as_uri() if self.local else self.root_uri

    def __repr__(self) -> str:
        return f"ObjectStore({self.root_uri!r})"

    # ------------------------------------------------------------------ addressing
    def path_for(self, sha256: str) -> str:
        _check_sha(sha256)
        return f"{self.root}/sha256/{sha256[:2]}/{sha256}"

    def uri_for(self, sha256: str) -> str:
        """The location to record for an object: home-relative when the store is in the home."""
        path = self.path_for(sha256)
        if self.local:
            return home_location(path, home=self.home)
        return str(self.fs.unstrip_protocol(path))

    def exists(self, sha256: str) -> bool:
        if self.s3:  # present with the sha256 it was uploaded under
            return stored_object_problem(self.fs, self.path_for(sha256), sha256=sha256) is None
        return bool(self.fs.exists(self.path_for(sha256)))

    def open(self, sha256: str) -> IO[bytes]:
        """Open an object for reading (binary)."""
        if not self.exists(sha256):
            raise FileNotFoundError(f"no object {sha256} in {self.root_uri}")
        handle: IO[bytes] = self.fs.open(self.path_for(sha256), "rb")
        return handle

    # ------------------------------------------------------------------ writing
    def put_file(
        self, local_path: str | Path, *, expected_sha256: str | None = None
    ) -> tuple[str, str]:
        """Copy a file (local path or fsspec URI) into the store; return ``(sha256, uri)``.

        With ``expected_sha256`` an object already present is not copied again, and a
        source whose bytes no longer hash to it raises ``ValueError`` (nothing is stored).
        """
        if expected_sha256 is not None and self.exists(expected_sha256):
            return expected_sha256, self.uri_for(expected_sha256)
        if self.s3:
            return put_s3_object(self, local_path, expected_sha256=expected_sha256)
        with fsspec.open(str(local_path), "rb") as src:
            return self._put_stream(src, expected_sha256=expected_sha256)

    def put_bytes(self, data: bytes) -> tuple[str, str]:
        import io

        if self.s3:
            return put_s3_object(self, io.BytesIO(data), expected_sha256=None)
        return self._put_stream(io.BytesIO(data), expected_sha256=None)

    def _put_stream(self, src: Any, *, expected_sha256: str | None) -> tuple[str, str]:
        tmp = self._tmp_path()
        self.fs.makedirs(tmp.rsplit("/", 1)[0], exist_ok=True)
        digest = hashlib.sha256()
        try:
            with self.fs.open(tmp, "wb") as out:
                first = True
                while chunk := src.read(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
                    if first:
                        crash_point("object_tmp_written")
                        first = False
                if self.local:
                    out.flush()
                    os.fsync(out.fileno())
            sha = digest.hexdigest()
            if expected_sha256 is not None and sha != expected_sha256:
                raise ValueError(
                    f"source bytes hash to {sha}, expected {expected_sha256}: "
                    "the file changed while it was being ingested"
                )
            final = self.path_for(sha)
            if self.fs.exists(final):
                self.fs.rm(tmp)
            else:
                self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
                if self.local:
                    os.replace(tmp, final)  # atomic on one filesystem
                else:
                    self.fs.mv(tmp, final)
            return sha, self.uri_for(sha)
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise

    def _tmp_path(self) -> str:
        return f"{self.root}/tmp/{_host_tag()}-{os.getpid()}-{uuid.uuid4().hex}"

    # ------------------------------------------------------------------ housekeeping
    def iter_shas(self) -> Iterator[str]:
        """Every stored object's sha256, in sorted order."""
        base = f"{self.root}/sha256"
        if not self.fs.exists(base):
            return
        for prefix in sorted(self.fs.ls(base, detail=False)):
            for path in sorted(self.fs.ls(prefix, detail=False)):
                name = str(path).rstrip("/").rsplit("/", 1)[-1]
                if _is_sha(name):
                    yield name

    def delete(self, sha256: str) -> None:
        path = self.path_for(sha256)
        if self.fs.exists(path):
            self.fs.rm(path)

    def remove_stale_tmp(self, *, older_than_s: float = 3600.0) -> list[str]:
        """Remove temporary files left by killed writers: those of a process on this host
        that no longer runs, and any older than ``older_than_s``. Returns what was removed."""
        base = f"{self.root}/tmp"
        if not self.fs.exists(base):
            return []
        removed = []
        now = time.time()
        for info in self.fs.ls(base, detail=True):
            name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
            host, pid, _ = (name.split("-") + ["", "", ""])[:3]
            owner_dead = host == _host_tag() and pid.isdigit() and not pid_alive(int(pid))
            mtime = _mtime(info)
            if owner_dead or (mtime is not None and now - mtime > older_than_s):
                self.fs.rm(info["name"])
                removed.append(str(info["name"]))
        if removed:
            logger.info("removed %d stale temporary object file(s)", len(removed))
        return removed


def store_consistency(session: Session, store: ObjectStore) -> tuple[list[str], list[str]]:
    """``(orphan objects without a recording row, recordings whose object is missing)``."""
    rows = session.execute(
        select(Recording.sha256).where(Recording.object_uri.is_not(None))
    ).scalars()
    referenced = set(rows)
    stored = set(store.iter_shas())
    orphans = sorted(stored - referenced)
    missing = sorted(sha for sha in referenced if sha not in stored)
    return orphans, missing


def sweep_orphan_objects(
    session: Session, store: ObjectStore, *, older_than_s: float = 3600.0
) -> list[str]:
    """Delete objects no recording names, if older than ``older_than_s`` (a younger one may
    belong to a run that has stored it and is about to commit its row)."""
    orphans, _ = store_consistency(session, store)
    removed = []
    now = time.time()
    for sha in orphans:
        path = store.path_for(sha)
        try:
            info = store.fs.info(path)
        except FileNotFoundError:
            continue
        mtime = _mtime(info)  # S3 reports LastModified
        if mtime is None or now - mtime >= older_than_s:
            store.delete(sha)
            removed.append(sha)
    if removed:
        logger.info("removed %d orphan object(s)", len(removed))
    return removed


HOME_SCHEME = "home://"


def home_location(path: str | Path, *, home: str | Path | None = None) -> str:
    """The location to record for a local file or folder: ``home://<relative path>`` when
    it lies inside the fairchord home (``home``, default :func:`fairchord_home`), else its
    absolute ``file://`` URI."""
    absolute = Path(path).expanduser().resolve()
    base = Path(home).expanduser() if home is not None else fairchord_home()
    try:
        relative = absolute.relative_to(base.resolve())
    except ValueError:
        return absolute.as_uri()
    return HOME_SCHEME + relative.as_posix()


def resolve_location(location: str) -> str:
    """Where a recorded location is now: ``home://…`` becomes a path inside the current home;
    anything else (``file://`` and other URIs, plain paths) is returned unchanged."""
    if not location.startswith(HOME_SCHEME):
        return location
    relative = Path(location[len(HOME_SCHEME) :])
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(
            f"location {location!r} leaves the home; a home:// location is a relative path "
            "without '..'"
        )
    return str(fairchord_home() / relative)


def location_path(location: str) -> Path:
    """The local path of a recorded location (``home://``, ``file://`` or a plain path)."""
    resolved = resolve_location(location)
    parsed = urlparse(resolved)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if "://" in resolved:
        raise ValueError(f"location {location!r} is not on the local filesystem")
    return Path(resolved)


def open_location(location: str, mode: str = "rb") -> IO[Any]:
    """Open a recorded location (any fsspec URI, ``home://`` resolved first)."""
    handle: IO[Any] = fsspec.open(resolve_location(location), mode).open()
    return handle


def default_object_store() -> ObjectStore:
    """The configured store: ``$FAIRCHORD_STORE_URL/objects``, or ``fairchord_home()/objects``
    when it is unset (:mod:`provenance.store_settings`)."""
    return ObjectStore(objects_root())


def _check_sha(sha256: str) -> None:
    if not _is_sha(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")


def _is_sha(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _host_tag() -> str:
    return socket.gethostname().replace("-", "_")[:40] or "host"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host still runs (one this process may not signal does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mtime(info: dict[str, Any]) -> float | None:
    value = info.get("mtime") or info.get("created") or info.get("LastModified")
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
