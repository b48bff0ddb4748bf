"""Uploads to S3 that are checked after they land, and the checks a reader can repeat.

An upload streams a local file once, computing its sha256 and the MD5 of every
part as it goes: one ``PutObject`` up to :data:`PART_BYTES`, a multipart upload
of :data:`PART_BYTES` parts above it. The sha256 travels as object metadata
(``x-amz-meta-sha256``). Once the store answers, the upload is checked three ways:

- the ETag the store returned for each request is the MD5 of the bytes sent
  (a single PUT), or ``md5(md5(part 1) … md5(part n))-n`` for a multipart upload;
- a ``HeadObject`` afterwards reports the same size, ETag and sha256 metadata;
- the sha256 of the bytes read for the upload is the one the caller expected.

A failed check deletes the object (a content-addressed key must never hold other
bytes) and raises :class:`StoreIntegrityError`. The ETag is the store's own word;
``fairchord audit verify`` re-reads every stored object and re-hashes it, which
is what catches a store that changes bytes after it has acknowledged them.
"""

from __future__ import annotations

import hashlib
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import fsspec

from provenance.hashing import sha256_file
from provenance.store_settings import staging_dir

PART_BYTES = 64 * 1024**2
SHA256_METADATA = "sha256"


class StoreIntegrityError(OSError):
    """The store holds, or answered with, other bytes than were written."""


def is_s3_filesystem(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return "s3" in protocol or "s3a" in protocol


def multipart_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives an object uploaded in these parts (their raw MD5 digests, in order):
    the part's MD5 hex for one ``PutObject``, else ``md5(concatenated digests)-n``."""
    return hashlib.md5(b"".join(part_md5s)).hexdigest() + f"-{len(part_md5s)}"


def upload_verified(
    fs: Any,
    local_path: str | Path,
    path: str,
    *,
    expected_sha256: str,
    part_bytes: int = PART_BYTES,
) -> None:
    """Upload ``local_path`` to ``path`` (``bucket/key``) on the S3 filesystem ``fs`` and check
    what the store answers; raises :class:`StoreIntegrityError` (the object removed)."""
    bucket, key, _ = fs.split_path(path)
    size = Path(local_path).stat().st_size
    metadata = {SHA256_METADATA: expected_sha256}
    digest = hashlib.sha256()
    part_md5s: list[bytes] = []
    with open(local_path, "rb") as handle:
        if size <= part_bytes:
            body = handle.read()
            digest.update(body)
            part_md5s.append(hashlib.md5(body).digest())
            _check_local(digest.hexdigest(), expected_sha256, local_path)
            answer = fs.call_s3("put_object", Bucket=bucket, Key=key, Body=body, Metadata=metadata)
            expected_etag = part_md5s[0].hex()
        else:
            answer = _multipart(fs, bucket, key, handle, part_bytes, digest, part_md5s, metadata)
            expected_etag = multipart_etag(part_md5s)
            if digest.hexdigest() != expected_sha256:
                fs.call_s3("delete_object", Bucket=bucket, Key=key)
                _check_local(digest.hexdigest(), expected_sha256, local_path)
    fs.invalidate_cache(path)
    problem = _etag_problem(answer.get("ETag"), expected_etag, "the upload's answer")
    if problem is None:
        problem = stored_object_problem(
            fs, path, size=size, etag=expected_etag, sha256=expected_sha256
        )
    if problem is not None:
        fs.call_s3("delete_object", Bucket=bucket, Key=key)
        fs.invalidate_cache(path)
        raise StoreIntegrityError(f"s3://{bucket}/{key}: {problem}; the object was removed")


def stored_object_problem(
    fs: Any, path: str, *, size: int | None = None, etag: str | None = None, sha256: str
) -> str | None:
    """What is wrong with the object at ``path`` per a fresh ``HeadObject`` (missing, other
    size, other ETag, other sha256 metadata), or ``None``. Reads no content."""
    bucket, key, _ = fs.split_path(path)
    try:
        head = fs.call_s3("head_object", Bucket=bucket, Key=key)
    except FileNotFoundError:
        return "missing after the upload"
    if size is not None and int(head.get("ContentLength", -1)) != size:
        return f"the store reports {head.get('ContentLength')} bytes, {size} were written"
    if etag is not None:
        problem = _etag_problem(head.get("ETag"), etag, "HeadObject")
        if problem is not None:
            return problem
    recorded = (head.get("Metadata") or {}).get(SHA256_METADATA)
    if recorded != sha256:
        return f"sha256 metadata {recorded!r} != {sha256}"
    return None


def _multipart(
    fs: Any,
    bucket: str,
    key: str,
    handle: Any,
    part_bytes: int,
    digest: Any,
    part_md5s: list[bytes],
    metadata: dict[str, str],
) -> dict[str, Any]:
    upload = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key, Metadata=metadata)
    upload_id = upload["UploadId"]
    try:
        parts = []
        while body := handle.read(part_bytes):
            digest.update(body)
            md5 = hashlib.md5(body).digest()
            part_md5s.append(md5)
            number = len(part_md5s)
            answer = fs.call_s3(
                "upload_part",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
            )
            problem = _etag_problem(answer.get("ETag"), md5.hex(), f"part {number}")
            if problem is not None:
                raise StoreIntegrityError(f"s3://{bucket}/{key}: {problem}")
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        result: dict[str, Any] = fs.call_s3(
            "complete_multipart_upload",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
        return result
    except BaseException:
        fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
        raise


def _check_local(actual: str, expected: str, local_path: str | Path) -> None:
    if actual != expected:
        raise ValueError(
            f"{local_path} hashes to {actual}, expected {expected}: "
            "the file changed while it was being stored"
        )


def _etag_problem(answered: Any, expected: str, what: str) -> str | None:
    etag = str(answered or "").strip('"').lower()
    if etag == expected:
        return None
    return f"ETag {etag or 'none'} from {what} != {expected} of the bytes written"


def put_s3_object(
    store: Any, source: str | Path | IO[bytes], *, expected_sha256: str | None
) -> tuple[str, str]:
    """Put a local file, fsspec URI or open stream into the S3 object store ``store`` (an
    :class:`provenance.object_store.ObjectStore`) under its sha256; return ``(sha256, uri)``.

    A source that is not a local file is first spooled to the staging folder, hashed as it
    is read. An object already stored under the digest (per its sha256 metadata) is kept.
    A source whose bytes do not hash to ``expected_sha256`` raises ``ValueError``."""
    if isinstance(source, str | Path) and _local_path(source) is not None:
        path = _local_path(source)
        assert path is not None
        sha = expected_sha256 or sha256_file(path)
        if not store.exists(sha):
            upload_verified(store.fs, path, store.path_for(sha), expected_sha256=sha)
        return sha, str(store.uri_for(sha))
    with tempfile.TemporaryDirectory(dir=staging_dir(), prefix="put-") as tmp:
        spooled = Path(tmp) / "object"
        digest = hashlib.sha256()
        with ExitStack() as stack:
            src = (
                stack.enter_context(fsspec.open(str(source), "rb"))
                if isinstance(source, str | Path)
                else source
            )
            with open(spooled, "wb") as out:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        sha = digest.hexdigest()
        if expected_sha256 is not None:
            _check_local(sha, expected_sha256, str(source))
        if not store.exists(sha):
            upload_verified(store.fs, spooled, store.path_for(sha), expected_sha256=sha)
    return sha, str(store.uri_for(sha))


def _local_path(source: str | Path) -> Path | None:
    text = str(source)
    if text.startswith("file://"):
        return Path(text.removeprefix("file://"))
    return None if "://" in text else Path(text)
