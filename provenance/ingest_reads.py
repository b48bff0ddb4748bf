"""Reading an item's bytes without letting the item decide how the read goes.

A path may name a FIFO (``open`` would wait forever for a writer), a device,
or a folder; a URL may name a scheme fsspec does not know, a package that is
not installed, a port where nothing listens, or a server that sends more
bytes than it announced. Each of these is the item's problem, not the run's:
it becomes a :class:`Refused` with a reason code, and the run goes on.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path
from typing import BinaryIO

from provenance.sources.text import clean_text

_CHUNK = 1 << 20


class Refused(Exception):
    """An item that cannot be taken: ``code`` is its quarantine reason."""

    def __init__(
        self, code: str, detail: str, *, sha256: str | None = None, size: int | None = None
    ) -> None:
        detail = (clean_text(detail) or "")[:2000]  # error messages may quote hostile input
        super().__init__(f"{code}: {detail}")
        self.code, self.detail, self.sha256, self.size = code, detail, sha256, size


class NotRegularFile(OSError):
    """A path that names something other than a regular file (FIFO, device, socket, folder)."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def regular_file_size(path: Path, shown: str) -> int:
    """The size of the regular file at ``path``; :class:`Refused` when it is missing or is
    not a regular file. ``shown`` names the item in the detail."""
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise Refused("missing_file", f"{shown}: vanished before it could be read") from exc
    except (OSError, RuntimeError) as exc:
        raise Refused("unreadable", f"{type(exc).__name__}: {exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise Refused("unreadable", f"{shown} is {_kind(st.st_mode)}, not a regular file")
    return st.st_size


def open_regular(path: Path) -> BinaryIO:
    """``open(path, "rb")`` that never blocks: a FIFO or device swapped in after the size
    check raises :class:`NotRegularFile` instead of waiting for a writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"{path} is {_kind(mode)}, not a regular file")
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def fetch_remote(uri: str, dest: Path, *, max_bytes: int) -> None:
    """Copy the object at ``uri`` (an fsspec URL) to ``dest``, at most ``max_bytes`` of it.

    Raises :class:`Refused`: ``missing_file`` when there is no such object,
    ``too_large`` when it is (or turns out while reading to be) over ``max_bytes``, and
    ``unreadable`` for anything else that goes wrong (unknown protocol, missing package,
    refused connection, not a file).
    """
    try:
        import fsspec

        fs, remote = fsspec.core.url_to_fs(uri)
        info = fs.info(remote)
    except FileNotFoundError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError):
            # fsspec's HTTP filesystem reports a refused connection as "not found".
            raise Refused("unreadable", f"{uri}: {type(cause).__name__}: {cause}") from exc
        raise Refused("missing_file", f"{uri}: no such object") from exc
    except Exception as exc:
        raise Refused("unreadable", f"{uri}: {type(exc).__name__}: {exc}") from exc
    if info.get("type", "file") != "file":
        raise Refused("unreadable", f"{uri} is a {info.get('type')}, not a file")
    size = info.get("size")
    if isinstance(size, int) and size > max_bytes:
        raise Refused("too_large", f"{size} bytes > max {max_bytes}", size=size)
    copied = 0
    try:
        with fs.open(remote, "rb") as src, open(dest, "wb") as out:
            while chunk := src.read(_CHUNK):
                copied += len(chunk)
                if copied > max_bytes:
                    raise Refused("too_large", f"over {max_bytes} bytes (still reading)")
                out.write(chunk)
    except Refused:
        raise
    except FileNotFoundError as exc:
        raise Refused("missing_file", f"{uri}: no such object") from exc
    except Exception as exc:
        raise Refused("unreadable", f"{uri}: {type(exc).__name__}: {exc}") from exc
