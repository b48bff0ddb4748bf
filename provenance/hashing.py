"""The one sha256 helper every layer uses: files, open streams and fsspec URIs, read in chunks."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO

CHUNK = 1 << 20


def sha256_stream(handle: IO[bytes], *, chunk: int = CHUNK) -> str:
    """Hex sha256 of everything left in ``handle``, read ``chunk`` bytes at a time."""
    digest = hashlib.sha256()
    while block := handle.read(chunk):
        digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | Path, *, chunk: int = CHUNK) -> str:
    """Hex sha256 of a local file, streamed (never read whole into memory)."""
    with open(path, "rb") as handle:
        return sha256_stream(handle, chunk=chunk)


def sha256_uri(uri: str, *, chunk: int = CHUNK) -> str:
    """Hex sha256 of a local path or an fsspec URI (``s3://``, ``memory://``, ...)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    fs.invalidate_cache(path)  # the store's size now, not one a listing cached earlier
    with fs.open(path, "rb") as handle:
        return sha256_stream(handle, chunk=chunk)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
