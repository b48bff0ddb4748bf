"""Where stored bytes go: ``$FAIRCHORD_STORE_URL``, or the fairchord home as before.

Unset (the default), objects live under ``$FAIRCHORD_HOME/objects`` and feature
shards under ``$FAIRCHORD_HOME/features``, recorded as ``home://`` locations, byte
for byte as before the setting existed. Set to a folder (``file:///srv/store``)
or a bucket prefix (``s3://bucket/prefix``), objects go to ``<url>/objects`` and
feature shards are published to ``<url>/features``, recorded as absolute URLs.

S3 credentials and the endpoint come from the environment the standard way,
read by botocore itself in every process that opens an ``s3://`` URL (a Dask
worker included): ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``, and ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``)
for an endpoint other than AWS, such as MinIO. See docs/S3.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from provenance.settings import fairchord_home

STORE_URL_ENV = "FAIRCHORD_STORE_URL"
# Schemes a store URL may have; other fsspec filesystems are not tested as stores.
STORE_SCHEMES = ("file", "s3")


def configured_store_url() -> str | None:
    """``$FAIRCHORD_STORE_URL`` without a trailing slash, or ``None`` (the home layout).

    Raises ``ValueError`` naming the value when it is not a ``file://`` or ``s3://`` URL."""
    url = (os.environ.get(STORE_URL_ENV) or "").strip()
    if not url:
        return None
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in STORE_SCHEMES or not rest.strip("/"):
        raise ValueError(
            f"{STORE_URL_ENV}={url!r} is not a store URL; use file:///absolute/folder or "
            "s3://bucket/prefix"
        )
    if scheme.lower() == "file" and not rest.startswith("/"):
        raise ValueError(f"{STORE_URL_ENV}={url!r}: a file:// store URL names an absolute folder")
    if scheme.lower() == "s3" and (".." in rest.split("/") or "::" in rest):
        raise ValueError(f"{STORE_URL_ENV}={url!r}: a bucket prefix has no '..' or '::'")
    return url.rstrip("/")


def objects_root() -> str:
    """Where the content-addressed originals live (path or URL)."""
    url = configured_store_url()
    return f"{url}/objects" if url else str(fairchord_home() / "objects")


def published_root(kind: str) -> str | None:
    """Where files of ``kind`` (``features``, ...) are published, or ``None`` when they stay
    in the home where they were written (no store URL set)."""
    url = configured_store_url()
    return f"{url}/{kind}" if url else None


def is_s3_url(location: str) -> bool:
    return location.lower().startswith("s3://")


def staging_dir() -> Path:
    """A local folder for files on their way to or from the store (spooled uploads)."""
    folder = Path(os.environ.get("FAIRCHORD_STAGING_DIR") or _default_staging())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _default_staging() -> str:
    import tempfile

    return str(Path(tempfile.gettempdir()) / "fairchord-staging")
