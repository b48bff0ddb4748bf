"""Ingestion core: one source item → a recording, a sighting, or a quarantine entry.

Two phases per item, so the expensive part needs no database and the
database part is short:

1. :func:`prepare_item` (no DB): read the bytes (never blocking on a FIFO, never
   following a URL the source does not allow; :mod:`provenance.ingest_reads`),
   sha256 them, judge the header before decoding (:mod:`provenance.ingest_checks`),
   decode-validate and measure them (``provenance.audio_probe.probe_audio``), read file
   tags, and, only for acceptable audio, copy the bytes into the content-addressed
   object store (temporary name, then rename).
2. :func:`record_prepared` (caller's transaction): the recording (or the
   existing one with the same sha256), its sighting, near-duplicate link,
   credits, licence assertion, manifest consent events and audit events.

Crash safety follows from the order: an object is complete before any row
names it, and a row is only committed after its object exists. A kill between
the two leaves an object without a row, which the rerun adopts (the put is a
no-op and the row is written) or :func:`sweep_orphan_objects` removes. Every
write is keyed (``recordings.sha256``, sighting and quarantine unique keys,
consent dedupe keys), so rerunning is a no-op and two concurrent runs converge.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provenance.audio_probe import (
    DEFAULT_CONTAINERS,
    DEFAULT_NEAR_DUPLICATE_BITS,
    AudioProbeError,
    probe_audio,
)
from provenance.audit_log import append_event
from provenance.ingest_checks import judge_header
from provenance.ingest_reads import Refused as _Refused
from provenance.ingest_reads import fetch_remote, open_regular, regular_file_size
from provenance.models import IngestionRun, QuarantineItem, Recording, Sighting, Source, utcnow
from provenance.near_duplicates import near_duplicate_of
from provenance.object_store import ObjectStore, crash_point
from provenance.sources.base import SourceAdapter, SourceItem, parse_consent
from provenance.sources.text import fit_text

logger = logging.getLogger(__name__)

# Every reason an item can be refused. ``unparseable_licence`` is not among them: such a
# recording is kept with licence NOASSERTION and reported as a *flag* (see FLAGS).
QUARANTINE_REASONS = (
    "zero_bytes",
    "truncated_or_corrupt",
    "not_audio",
    "unsupported_codec",
    "too_long",
    "too_large",
    "too_short",
    "all_silence",
    "unreadable",
    "path_escape",
    "symlink_escape",
    "missing_file",
    "duplicate_manifest_row",
    "non_utf8_name",
    "impossible_header",
    "empty_manifest",
    "malformed_row",
    "implausible_sample_rate",
    "too_many_channels",
    "record_failed",
)
FLAGS = (
    "unparseable_licence",
    "unparseable_consent",
    "unparseable_artist",  # a credited name that cannot name a party (see credit.unparsed)
    "unreadable_sidecar",
    "oversized_fact",  # a title or source url longer than its column, stored cut
)
OutcomeStatus = Literal["accepted", "near_duplicate", "duplicate", "unchanged", "quarantined"]
OUTCOME_STATUSES: tuple[str, ...] = (
    "accepted",
    "near_duplicate",
    "duplicate",
    "unchanged",
    "quarantined",
)

# PostgreSQL advisory lock taken by each item's transaction: near-duplicate lookup and
# insert take turns across concurrent runs (SQLite already serialises writers).
_INGEST_LOCK_KEY = 7246502
_HASH_CHUNK = 1 << 20


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
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown limit(s) {sorted(unknown)}; known: {sorted(known)}")
        values = dict(values)
        if "containers" in values:
            values["containers"] = tuple(values["containers"])
        return cls(**values)


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
    seconds: float = 0.0

    @property
    def accepted(self) -> bool:
        return self.reason_code is None


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one item."""

    locator: str
    status: OutcomeStatus
    reason_code: str | None = None
    detail: str | None = None
    recording_id: int | None = None
    sha256: str | None = None
    duplicate_of_id: int | None = None
    flags: tuple[str, ...] = ()
    audio_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# =========================================================================== phase 1: no DB


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
        sha = _sha256_file(path)
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


def _limit_violation(duration: float, peak: float, limits: IngestLimits) -> tuple[str, str] | None:
    if duration > limits.max_duration_s:
        return "too_long", f"{duration:.2f} s > max {limits.max_duration_s} s"
    if duration < limits.min_duration_s:
        return "too_short", f"{duration:.2f} s < min {limits.min_duration_s} s"
    if peak <= limits.silence_amplitude:
        peak_db = 20 * math.log10(peak) if peak > 0 else float("-inf")
        return "all_silence", f"peak {peak_db:.1f} dBFS <= {limits.silence_dbfs} dBFS"
    return None


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(path) as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# =========================================================================== phase 2: DB


def get_or_create_source(session: Session, adapter: SourceAdapter) -> Source:
    """The ``sources`` row for ``adapter`` (keyed by its uri); safe under concurrent runs."""
    existing = session.execute(select(Source).where(Source.uri == adapter.uri)).scalar_one_or_none()
    if existing is not None:
        return existing
    try:
        with session.begin_nested():
            source = Source(uri=adapter.uri, kind=adapter.kind, config=adapter.config)
            session.add(source)
            session.flush()
    except IntegrityError:
        return session.execute(select(Source).where(Source.uri == adapter.uri)).scalar_one()
    append_event(
        session,
        "source.registered",
        entity="source",
        entity_id=source.id,
        payload={"uri": source.uri, "kind": source.kind, "config": source.config},
    )
    return source


def start_run(session: Session, *, source_id: int, prefect_flow_run_id: str | None) -> IngestionRun:
    """A new ``running`` run; earlier runs of this source whose process on this host is gone
    (killed) are marked ``interrupted`` first."""
    mark_interrupted_runs(session, source_id=source_id)
    run = IngestionRun(
        source_id=source_id,
        prefect_flow_run_id=prefect_flow_run_id,
        status="running",
        started_at=utcnow(),
        counts={"host": socket.gethostname(), "pid": os.getpid()},
    )
    session.add(run)
    session.flush()
    return run


def mark_interrupted_runs(session: Session, *, source_id: int) -> list[int]:
    """Mark ``running`` runs of ``source_id`` started by a dead process on this host."""
    marked = []
    for run in session.scalars(
        select(IngestionRun).where(
            IngestionRun.source_id == source_id, IngestionRun.status == "running"
        )
    ):
        owner = run.counts or {}
        if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
            continue
        if owner["pid"] == os.getpid() or _pid_alive(owner["pid"]):
            continue
        run.status = "interrupted"
        run.finished_at = utcnow()
        marked.append(run.id)
        append_event(
            session,
            "ingest.run_interrupted",
            entity="ingestion_run",
            entity_id=run.id,
            payload={"source_id": source_id, "pid": owner["pid"]},
        )
    return marked


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def finish_run(
    session: Session, *, run_id: int, counts: dict[str, Any], status: str = "completed"
) -> IngestionRun:
    run = session.get(IngestionRun, run_id)
    if run is None:
        raise ValueError(f"no ingestion run {run_id}")
    run.status = status
    run.finished_at = utcnow()
    run.counts = counts
    session.flush()
    append_event(
        session,
        "ingest.run_finished",
        entity="ingestion_run",
        entity_id=run.id,
        payload={
            "source_id": run.source_id,
            "status": status,
            "prefect_flow_run_id": run.prefect_flow_run_id,
            "counts": counts,
        },
    )
    return run


def record_prepared(
    session: Session,
    *,
    source_id: int,
    run_id: int | None,
    prepared: PreparedItem,
    limits: IngestLimits = DEFAULT_LIMITS,
) -> IngestOutcome:
    """Write one prepared item in the caller's transaction (the caller commits)."""
    _serialise_writers(session)
    item = prepared.item
    if prepared.sha256 is None:
        return _record_refused_input(session, source_id, run_id, prepared)
    for _attempt in range(3):
        existing = session.execute(
            select(Recording).where(Recording.sha256 == prepared.sha256)
        ).scalar_one_or_none()
        if existing is not None:
            return _record_sighting(session, existing, source_id, run_id, prepared, limits)
        try:
            with session.begin_nested():
                rec = _new_recording(prepared, source_id, run_id)
                session.add(rec)
                session.flush()
        except IntegrityError:
            logger.info("recording %s was inserted concurrently; re-reading", prepared.sha256)
            continue
        return _record_new(session, rec, source_id, run_id, prepared, limits)
    raise RuntimeError(f"could not insert or find recording {prepared.sha256} for {item.locator}")


def ingest_item(
    session: Session,
    store: ObjectStore,
    source: Source | int,
    run: IngestionRun | int | None,
    item: SourceItem,
    limits: IngestLimits = DEFAULT_LIMITS,
) -> IngestOutcome:
    """Both phases for one item in the caller's transaction: the convenience entry point."""
    prepared = prepare_item(store, item, limits)
    source_id = source if isinstance(source, int) else source.id
    run_id = run if isinstance(run, int) or run is None else run.id
    return record_prepared(
        session, source_id=source_id, run_id=run_id, prepared=prepared, limits=limits
    )


def _serialise_writers(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SELECT pg_advisory_xact_lock({_INGEST_LOCK_KEY})"))


def _record_refused_input(
    session: Session, source_id: int, run_id: int | None, prepared: PreparedItem
) -> IngestOutcome:
    """An input refused before it had bytes to keep: a ``quarantine_items`` row."""
    item, code = prepared.item, prepared.reason_code
    assert code is not None
    row = session.execute(
        select(QuarantineItem).where(
            QuarantineItem.source_id == source_id,
            QuarantineItem.locator == item.locator,
            QuarantineItem.reason_code == code,
        )
    ).scalar_one_or_none()
    if row is None:
        row = QuarantineItem(
            source_id=source_id,
            locator=item.locator,
            reason_code=code,
            reason_detail=prepared.reason_detail,
            sha256=None,
            first_run_id=run_id,
            last_run_id=run_id,
        )
        session.add(row)
        session.flush()
        append_event(
            session,
            "ingest.quarantined",
            entity="quarantine_item",
            entity_id=row.id,
            payload={
                "source_id": source_id,
                "locator": item.locator,
                "reason_code": code,
                "detail": prepared.reason_detail,
                "size_bytes": prepared.size_bytes,
                "run_id": run_id,
            },
        )
    else:
        row.last_run_id = run_id
    return IngestOutcome(
        locator=item.locator, status="quarantined", reason_code=code, detail=prepared.reason_detail
    )


def _new_recording(prepared: PreparedItem, source_id: int, run_id: int | None) -> Recording:
    facts = prepared.facts or {}
    item = prepared.item
    assert prepared.sha256 is not None and prepared.size_bytes is not None
    return Recording(
        sha256=prepared.sha256,
        size_bytes=prepared.size_bytes,
        title=_title(prepared)[0],
        status="accepted" if prepared.accepted else "quarantined",
        reason_code=prepared.reason_code,
        reason_detail=prepared.reason_detail,
        duration_s=facts.get("duration_s"),
        sample_rate=facts.get("sample_rate"),
        channels=facts.get("channels"),
        codec=facts.get("codec"),
        peak=facts.get("peak"),
        rms_dbfs=facts.get("rms_dbfs"),
        silence_fraction=facts.get("silence_fraction"),
        pcm_fingerprint=facts.get("fingerprint"),
        object_uri=prepared.object_uri if prepared.accepted else None,
        source_id=source_id,
        source_url=fit_text(item.source_url, _URL_CHARS)[0],
        first_seen_run_id=run_id,
        last_seen_run_id=run_id,
    )


def _title(prepared: PreparedItem) -> tuple[str | None, str | None]:
    item = prepared.item
    if item.title:
        return fit_text(item.title, _TITLE_CHARS)[0], item.fact_sources.get("title", "source")
    if prepared.tag_title:
        return fit_text(prepared.tag_title, _TITLE_CHARS)[0], "tags"
    return None, None


# Column widths of recordings.title and recordings.source_url: longer facts are stored cut.
_TITLE_CHARS, _URL_CHARS = 512, 2048


def _oversized_facts(prepared: PreparedItem) -> bool:
    title = prepared.item.title or prepared.tag_title
    return fit_text(title, _TITLE_CHARS)[1] or fit_text(prepared.item.source_url, _URL_CHARS)[1]


def _upsert_sighting(
    session: Session, recording_id: int, source_id: int, run_id: int | None, locator: str
) -> bool:
    """Add the (recording, source, locator) sighting; True when it is new."""
    row = session.execute(
        select(Sighting).where(
            Sighting.recording_id == recording_id,
            Sighting.source_id == source_id,
            Sighting.locator == locator,
        )
    ).scalar_one_or_none()
    if row is not None:
        row.last_run_id = run_id
        row.seen_at = utcnow()
        return False
    session.add(
        Sighting(
            recording_id=recording_id,
            source_id=source_id,
            locator=locator,
            first_run_id=run_id,
            last_run_id=run_id,
            seen_at=utcnow(),
        )
    )
    session.flush()
    return True


def _record_new(
    session: Session,
    rec: Recording,
    source_id: int,
    run_id: int | None,
    prepared: PreparedItem,
    limits: IngestLimits,
) -> IngestOutcome:
    item = prepared.item
    _upsert_sighting(session, rec.id, source_id, run_id, item.locator)
    flags: list[str] = []
    fact_sources: dict[str, str] = {}
    if rec.status == "accepted":
        rec.duplicate_of_id = _near_duplicate_of(session, rec, limits)
        flags, fact_sources = _record_facts(session, rec, source_id, prepared)
    title, title_source = _title(prepared)
    if title_source:
        fact_sources["title"] = title_source
    append_event(
        session,
        "recording.ingested" if rec.status == "accepted" else "recording.quarantined",
        entity="recording",
        entity_id=rec.id,
        payload={
            "sha256": rec.sha256,
            "source_id": source_id,
            "locator": item.locator,
            "run_id": run_id,
            "status": rec.status,
            "reason_code": rec.reason_code,
            "codec": rec.codec,
            "duration_s": rec.duration_s,
            "object_uri": rec.object_uri,
            "duplicate_of_id": rec.duplicate_of_id,
            "fact_sources": fact_sources,
            "flags": flags,
        },
    )
    crash_point("before_commit")
    if rec.status == "quarantined":
        status: OutcomeStatus = "quarantined"
    else:
        status = "near_duplicate" if rec.duplicate_of_id is not None else "accepted"
    return IngestOutcome(
        locator=item.locator,
        status=status,
        reason_code=rec.reason_code,
        detail=rec.reason_detail,
        recording_id=rec.id,
        sha256=rec.sha256,
        duplicate_of_id=rec.duplicate_of_id,
        flags=tuple(flags),
        audio_seconds=(rec.duration_s or 0.0) if rec.status == "accepted" else 0.0,
    )


def _record_sighting(
    session: Session,
    rec: Recording,
    source_id: int,
    run_id: int | None,
    prepared: PreparedItem,
    limits: IngestLimits,
) -> IngestOutcome:
    """Bytes already known: a new place adds a sighting (and that place's facts), a known
    place changes nothing but the last-seen run."""
    item = prepared.item
    new = _upsert_sighting(session, rec.id, source_id, run_id, item.locator)
    rec.last_seen_run_id = run_id
    flags: list[str] = []
    readmitted = _readmit(session, rec, prepared, run_id)
    if readmitted:
        rec.duplicate_of_id = _near_duplicate_of(session, rec, limits)
        new = True  # its facts are recorded now, as for a new recording
    if new:
        fact_sources: dict[str, str] = {}
        if rec.status == "accepted":
            flags, fact_sources = _record_facts(session, rec, source_id, prepared)
        append_event(
            session,
            "recording.sighted",
            entity="recording",
            entity_id=rec.id,
            payload={
                "sha256": rec.sha256,
                "source_id": source_id,
                "locator": item.locator,
                "run_id": run_id,
                "fact_sources": fact_sources,
                "flags": flags,
            },
        )
    crash_point("before_commit")
    status: OutcomeStatus
    if rec.status == "quarantined":
        status = "quarantined"
    elif readmitted:
        status = "near_duplicate" if rec.duplicate_of_id is not None else "accepted"
    else:
        status = "duplicate" if new else "unchanged"
    return IngestOutcome(
        locator=item.locator,
        status=status,
        reason_code=rec.reason_code,
        detail=rec.reason_detail,
        recording_id=rec.id,
        sha256=rec.sha256,
        duplicate_of_id=rec.duplicate_of_id,
        flags=tuple(flags),
    )


# Reasons that depend on the configured limits, not on the bytes: a run with wider limits
# re-admits such a recording (its object was stored by prepare_item under those limits).
LIMIT_REASONS = ("too_long", "too_short", "all_silence")


def _readmit(session: Session, rec: Recording, prepared: PreparedItem, run_id: int | None) -> bool:
    if not (
        rec.status == "quarantined"
        and rec.reason_code in LIMIT_REASONS
        and prepared.accepted
        and prepared.object_uri
    ):
        return False
    append_event(
        session,
        "recording.readmitted",
        entity="recording",
        entity_id=rec.id,
        payload={"sha256": rec.sha256, "was": rec.reason_code, "run_id": run_id},
    )
    rec.status, rec.reason_code, rec.reason_detail = "accepted", None, None
    rec.object_uri = prepared.object_uri
    # Refused on its header, the row holds only what the header said: now it was decoded.
    facts = prepared.facts or {}
    for column, key in _FACT_COLUMNS:
        if facts.get(key) is not None:
            setattr(rec, column, facts[key])
    session.flush()
    return True


_FACT_COLUMNS = (
    ("duration_s", "duration_s"),
    ("sample_rate", "sample_rate"),
    ("channels", "channels"),
    ("codec", "codec"),
    ("peak", "peak"),
    ("rms_dbfs", "rms_dbfs"),
    ("silence_fraction", "silence_fraction"),
    ("pcm_fingerprint", "fingerprint"),
)


def _near_duplicate_of(session: Session, rec: Recording, limits: IngestLimits) -> int | None:
    """The root of the recording ``rec`` duplicates (duration, fingerprint and a fine
    spectral comparison must all agree: ``provenance.near_duplicates``), or None."""
    return near_duplicate_of(
        session,
        rec,
        max_bits=limits.near_duplicate_bits,
        duration_tolerance=limits.near_duplicate_duration_tolerance,
    )


def _record_facts(
    session: Session, rec: Recording, source_id: int, prepared: PreparedItem
) -> tuple[list[str], dict[str, str]]:
    """Credits, licence assertion and manifest consent for an accepted recording. Returns the
    flags raised and where each fact came from."""
    from provenance.licences import conclude_licence, record_licence
    from provenance.parties import credit_names

    item = prepared.item
    source = session.get(Source, source_id)
    source_uri = source.uri if source is not None else str(source_id)
    flags: list[str] = list(item.flags)
    fact_sources: dict[str, str] = {}

    artists, artist_source = item.artists, item.fact_sources.get("artists", "source")
    if not artists and prepared.tag_artists:
        artists, artist_source = prepared.tag_artists, "tags"
    unparsed = credit_names(
        session, recording_id=rec.id, names=artists, role="artist", fact_source=artist_source
    )
    if unparsed:
        flags.append("unparseable_artist")
    if artists:
        fact_sources["artists"] = artist_source
    if _oversized_facts(prepared):
        flags.append("oversized_fact")

    declared, licence_source = item.licence, item.fact_sources.get("licence", "source")
    if declared is None and prepared.tag_licence:
        declared, licence_source = prepared.tag_licence, "tags"
    conclusion = conclude_licence(declared)
    if (
        declared is not None
        and conclusion.concluded == "NOASSERTION"
        and declared.strip().upper() != "NOASSERTION"
    ):
        flags.append("unparseable_licence")
    record_licence(
        session,
        recording_id=rec.id,
        declared=declared,
        asserted_by=f"ingest:{source_uri}"[:256],
        fact_source=licence_source if declared is not None else None,
        evidence_uri=source_uri,
    )
    if declared is not None:
        fact_sources["licence"] = licence_source

    if item.consent:
        try:
            claims = parse_consent(item.consent)
        except ValueError as exc:
            logger.warning("%s: %s", item.locator, exc)
            flags.append("unparseable_consent")
            claims = []
        if claims:
            _record_manifest_consent(session, rec, source_uri, item, claims)
            fact_sources["consent"] = item.fact_sources.get("consent", "source")
    return flags, fact_sources


def _record_manifest_consent(
    session: Session,
    rec: Recording,
    source_uri: str,
    item: SourceItem,
    claims: list[tuple[str, str]],
) -> None:
    from provenance.consent import ConsentSubject, record_consent

    for action, purpose in claims:
        key = hashlib.sha256(
            f"manifest|{source_uri}|{item.locator}|{rec.sha256}|{action}|{purpose}".encode()
        ).hexdigest()
        record_consent(
            session,
            subject=ConsentSubject(kind="recording", id=rec.id),
            action=action,
            purpose=purpose,
            effective_at=utcnow(),
            origin="manifest",
            evidence=f"{source_uri} :: {item.locator} :: consent={item.consent}"[:2000],
            dedupe_key=key,
        )


# =========================================================================== runs


def summarize(outcomes: Iterable[IngestOutcome]) -> dict[str, Any]:
    """Counts for a run: by outcome status, quarantines by reason, flags, audio seconds."""
    outcomes = list(outcomes)
    by_status: Counter[str] = Counter(o.status for o in outcomes)
    reasons = Counter(o.reason_code for o in outcomes if o.status == "quarantined")
    flags = Counter(flag for o in outcomes for flag in o.flags)
    return {
        "items": len(outcomes),
        **{status: by_status.get(status, 0) for status in OUTCOME_STATUSES},
        "quarantined_by_reason": {str(k): v for k, v in sorted(reasons.items())},
        "flags": dict(sorted(flags.items())),
        "audio_seconds": round(sum(o.audio_seconds for o in outcomes), 3),
    }


@dataclass
class RunResult:
    source_id: int
    run_id: int
    outcomes: list[IngestOutcome] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, Any]:
        return summarize(self.outcomes)


def ingest_source(
    sessions: Any,
    adapter: SourceAdapter,
    store: ObjectStore,
    *,
    limits: IngestLimits = DEFAULT_LIMITS,
    prefect_flow_run_id: str | None = None,
) -> RunResult:
    """Ingest every item of ``adapter`` sequentially, without Prefect.

    ``sessions`` is a ``sessionmaker``; each item is its own transaction, so a bad
    item never rolls back good ones, and an item whose rows cannot be written is
    quarantined ``record_failed`` (:mod:`provenance.ingest_failures`). An empty
    manifest is recorded as a quarantine entry and re-raised
    (:class:`provenance.sources.EmptyManifestError`); a run stopped by anything else
    is marked ``failed`` before the error propagates.
    """
    from provenance.sources.base import SourceError

    with sessions.begin() as session:
        source = get_or_create_source(session, adapter)
        run = start_run(session, source_id=source.id, prefect_flow_run_id=prefect_flow_run_id)
        source_id, run_id = source.id, run.id
    store.remove_stale_tmp()
    result = RunResult(source_id=source_id, run_id=run_id)
    try:
        items = list(adapter.items())
    except SourceError as exc:
        record_source_failure(sessions, source_id=source_id, run_id=run_id, error=exc)
        raise
    from provenance.ingest_failures import mark_run_failed, record_or_quarantine

    try:
        for item in items:
            prepared = prepare_item(store, item, limits)
            outcome = record_or_quarantine(
                sessions, source_id=source_id, run_id=run_id, prepared=prepared, limits=limits
            )
            crash_point("after_commit")
            result.outcomes.append(outcome)
    except BaseException as exc:  # the run stops: it must not stay `running`
        mark_run_failed(sessions, run_id=run_id, outcomes=result.outcomes, error=exc)
        raise
    with sessions.begin() as session:
        finish_run(session, run_id=run_id, counts=result.counts)
    return result


def record_source_failure(sessions: Any, *, source_id: int, run_id: int, error: Exception) -> None:
    """A source that could not be listed: a quarantine entry for it, and a failed run."""
    code = getattr(error, "reason_code", "unreadable")
    with sessions.begin() as session:
        source = session.get(Source, source_id)
        locator = Path(source.uri).name if source is not None else "source"
        outcome = _record_refused_input(
            session,
            source_id,
            run_id,
            PreparedItem(
                item=SourceItem(locator=locator, uri=None),
                reason_code=code,
                reason_detail=str(error),
            ),
        )
        finish_run(
            session,
            run_id=run_id,
            counts=summarize([outcome]) | {"error": str(error)},
            status="failed",
        )


# =========================================================================== housekeeping


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
        mtime = info.get("mtime") or info.get("created")
        if mtime is not None and hasattr(mtime, "timestamp"):
            mtime = mtime.timestamp()
        if mtime is None or now - float(mtime) >= older_than_s:
            store.delete(sha)
            removed.append(sha)
    if removed:
        logger.info("removed %d orphan object(s)", len(removed))
    return removed
