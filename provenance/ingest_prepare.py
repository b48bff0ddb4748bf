"""Ingestion phase 1, no database: read, hash, judge and store one item's bytes.

:func:`prepare_item` reads the bytes (never blocking on a FIFO, never following a
URL the source does not allow; :mod:`provenance.ingest_reads`), sha256s them, judges
the header before decoding (:mod:`provenance.ingest_checks`), decode-validates and
measures them (``provenance.audio_probe.probe_audio``), reads file tags and any
Content Credentials (C2PA manifest, :mod:`provenance.content_credentials`), and, only
for acceptable audio, copies the bytes into the content-addressed object store. What
it returns is a :class:`PreparedItem` of plain values, so it can cross to a Dask worker
and back; :mod:`provenance.ingest_record` writes it to the database.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from provenance.audio_probe import (
    DEFAULT_CONTAINERS,
    DEFAULT_NEAR_DUPLICATE_BITS,
    AudioProbeError,
    probe_audio,
)
from provenance.dataclass_dicts import checked_fields
from provenance.hashing import sha256_stream
from provenance.ingest_checks import judge_header
from provenance.ingest_reads import Refused as _Refused
from provenance.ingest_reads import fetch_remote, open_regular, regular_file_size
from provenance.object_store import ObjectStore, crash_point
from provenance.sources.base import SourceItem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestLimits:
    """What ingestion accepts. Anything outside is quarantined with a reason code."""

    max_duration_s: float = 3600.0  # longer → too_long
    min_duration_s: float = 0.25  # shorter → too_short (a blip, not music)
    max_bytes: int = 2 * 1024**3  # larger → too_large (checked before reading)
    silence_dbfs: float = -80.0  # peak at or under this → all_silence
    near_duplicate_bits: int = DEFAULT_NEAR_DUPLICATE_BITS  # fingerprint Hamming threshold
    near_duplicate_duration_tolerance: float = 0.02  # relative, plus 0.5 s
    containers: tuple[str, ...] = DEFAULT_CONTAINERS
    read_tags: bool = True
    # Checked on the header, before decoding: outside → implausible_sample_rate.
    min_sample_rate_hz: int = 4000
    max_sample_rate_hz: int = 384000
    max_channels: int = 32  # more → too_many_channels

    def __post_init__(self) -> None:
        if not 0 <= self.min_duration_s <= self.max_duration_s:
            raise ValueError(
                f"need 0 <= min_duration_s <= max_duration_s, got {self.min_duration_s} and "
                f"{self.max_duration_s}"
            )
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {self.max_bytes}")
        if self.silence_dbfs >= 0:
            raise ValueError(f"silence_dbfs must be negative, got {self.silence_dbfs}")
        if not 0 < self.min_sample_rate_hz <= self.max_sample_rate_hz:
            raise ValueError(
                f"need 0 < min_sample_rate_hz <= max_sample_rate_hz, got "
                f"{self.min_sample_rate_hz} and {self.max_sample_rate_hz}"
            )
        if self.max_channels < 1:
            raise ValueError(f"max_channels must be at least 1, got {self.max_channels}")

    @property
    def silence_amplitude(self) -> float:
        return float(10 ** (self.silence_dbfs / 20))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> IngestLimits:
        return cls(**checked_fields(cls, values, what="limit", tuples=("containers",)))


DEFAULT_LIMITS = IngestLimits()


@dataclass(frozen=True)
class PreparedItem:
    """The database-free result of reading one item; plain values, so it pickles to Dask."""

    item: SourceItem
    sha256: str | None = None
    size_bytes: int | None = None
    facts: dict[str, Any] | None = None
    object_uri: str | None = None
    reason_code: str | None = None
    reason_detail: str | None = None
    tag_title: str | None = None
    tag_artists: tuple[str, ...] = ()
    tag_licence: str | None = None
    # The file's Content Credentials (``CredentialReading.to_dict()``), None without any.
    credential: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def accepted(self) -> bool:
        return self.reason_code is None


def prepare_item(store: ObjectStore, item: SourceItem, limits: IngestLimits) -> PreparedItem:
    """Read, hash, validate and (if acceptable) store one item. Never raises for bad input:
    a bad item comes back with ``reason_code`` set. Raises only on object-store I/O errors."""
    started = time.perf_counter()
    if item.problem is not None:
        return PreparedItem(item=item, reason_code=item.problem, reason_detail=item.problem_detail)
    assert item.uri is not None
    try:
        with _local_copy(item.uri, limits) as (local, size):
            prepared = _prepare_local(store, item, local, size, limits)
    except _Refused as refused:
        prepared = PreparedItem(
            item=item,
            sha256=refused.sha256,
            size_bytes=refused.size,
            reason_code=refused.code,
            reason_detail=refused.detail,
        )
    return replace(prepared, seconds=time.perf_counter() - started)


@contextmanager
def _local_copy(uri: str, limits: IngestLimits) -> Iterator[tuple[Path, int]]:
    """A local path for the item's bytes (the file itself when local) and its size."""
    from provenance.sources.hf_dataset import ROW_SCHEME, read_row_bytes

    if uri.startswith(ROW_SCHEME):
        try:
            data = read_row_bytes(uri)
        except Exception as exc:  # a broken row of a dataset is that row's problem
            raise _Refused("unreadable", f"{type(exc).__name__}: {exc}") from exc
        with tempfile.TemporaryDirectory(prefix="fairchord-ingest-") as tmp:
            path = Path(tmp) / "item"
            path.write_bytes(data)
            yield path, len(data)
        return
    if "://" not in uri or uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
        yield path, regular_file_size(path, uri)
        return
    with tempfile.TemporaryDirectory(prefix="fairchord-ingest-") as tmp:
        path = Path(tmp) / "item"
        fetch_remote(uri, path, max_bytes=limits.max_bytes)
        yield path, path.stat().st_size


def _prepare_local(
    store: ObjectStore, item: SourceItem, path: Path, size: int, limits: IngestLimits
) -> PreparedItem:
    if size > limits.max_bytes:
        raise _Refused("too_large", f"{size} bytes > max {limits.max_bytes}", size=size)
    try:
        with open_regular(path) as handle:  # never blocks on a FIFO swapped in
            sha = sha256_stream(handle)
    except OSError as exc:
        raise _Refused("unreadable", f"{type(exc).__name__}: {exc}") from exc
    refused = _header_refusal(item, path, sha, size, limits)
    if refused is not None:
        return refused
    try:
        facts = probe_audio(
            path, containers=limits.containers, silence_amplitude=limits.silence_amplitude
        )
    except AudioProbeError as exc:
        raise _Refused(exc.code, exc.detail, sha256=sha, size=size) from exc
    except Exception as exc:  # a decoder tripping over malformed input: the file's fault
        detail = f"decoder error {type(exc).__name__}: {exc}"
        raise _Refused("truncated_or_corrupt", detail, sha256=sha, size=size) from exc
    reason = _limit_violation(facts.duration_s, facts.peak, limits)
    if reason is not None:
        return PreparedItem(
            item=item,
            sha256=sha,
            size_bytes=size,
            facts=facts.to_dict(),
            reason_code=reason[0],
            reason_detail=reason[1],
        )
    tags = _tags(path, limits)
    credential = _credential(path, facts.container)
    crash_point("before_object")
    try:
        _, uri = store.put_file(path, expected_sha256=sha)
    except ValueError as exc:  # its bytes changed between hashing and copying
        raise _Refused("unreadable", str(exc), sha256=sha, size=size) from exc
    crash_point("after_object")
    return PreparedItem(
        item=item,
        sha256=sha,
        size_bytes=size,
        facts=facts.to_dict(),
        object_uri=uri,
        tag_title=tags.title,
        tag_artists=tags.artists,
        tag_licence=tags.licence,
        credential=credential,
    )


def _header_refusal(
    item: SourceItem, path: Path, sha: str, size: int, limits: IngestLimits
) -> PreparedItem | None:
    refusal = judge_header(path, limits)
    if refusal is None:
        return None
    code, detail, facts = refusal
    return PreparedItem(
        item=item, sha256=sha, size_bytes=size, facts=facts, reason_code=code, reason_detail=detail
    )


def _tags(path: Path, limits: IngestLimits) -> Any:
    from provenance.sources.tags import FileTags, read_tags

    return read_tags(path) if limits.read_tags else FileTags()


def _credential(path: Path, container: str) -> dict[str, Any] | None:
    """The file's Content Credentials as plain values, or None (no manifest, or a container
    C2PA does not cover). A manifest that does not validate comes back ``invalid``; a
    reader that fails outright is logged and read as none: it never refuses the audio."""
    from provenance.content_credentials import mime_for, read_credential
    from provenance.signing_keys import TRUST_ENV

    if mime_for(path, container) is None:
        return None
    try:
        anchors = _trust_anchors()
        reading = read_credential(path, container=container, trust_anchors_pem=anchors)
    except Exception as exc:  # the C2PA library itself, never the file's verdict
        logger.warning(
            "%s: content credentials not read (%s: %s); check %s and c2pa-python",
            path,
            type(exc).__name__,
            exc,
            TRUST_ENV,
        )
        return None
    return reading.to_dict() if reading is not None else None


def _trust_anchors() -> str | None:
    """The CAs an incoming credential may chain to: ``$FAIRCHORD_TRUST_ANCHORS`` only (the
    home's development CA vouches for fairchord's own outputs, not for what it ingests)."""
    from provenance.signing_keys import TRUST_ENV

    named = os.environ.get(TRUST_ENV)
    return Path(named).read_text(encoding="ascii") if named else None


def _limit_violation(duration: float, peak: float, limits: IngestLimits) -> tuple[str, str] | None:
    if duration > limits.max_duration_s:
        return "too_long", f"{duration:.2f} s > max {limits.max_duration_s} s"
    if duration < limits.min_duration_s:
        return "too_short", f"{duration:.2f} s < min {limits.min_duration_s} s"
    if peak <= limits.silence_amplitude:
        peak_db = 20 * math.log10(peak) if peak > 0 else float("-inf")
        return "all_silence", f"peak {peak_db:.1f} dBFS <= {limits.silence_dbfs} dBFS"
    return None
