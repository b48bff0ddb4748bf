"""Ingestion phase 2, in the caller's transaction: write one prepared item's rows.

:func:`record_prepared` writes the recording (or finds the existing one with the same
sha256), its sighting and near-duplicate link, and the facts the source states about
it (:mod:`provenance.ingest_facts`), each with its audit event; an item refused before
it had bytes to keep becomes a ``quarantine_items`` row. Every write is keyed, so a
rerun changes nothing and two concurrent runs converge.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provenance.audit_log import append_event
from provenance.ingest import IngestOutcome, OutcomeStatus
from provenance.ingest_facts import record_facts, recording_title, stored_source_url
from provenance.ingest_prepare import DEFAULT_LIMITS, IngestLimits, PreparedItem, prepare_item
from provenance.models import IngestionRun, QuarantineItem, Recording, Sighting, Source, utcnow
from provenance.near_duplicates import near_duplicate_of
from provenance.object_store import ObjectStore, crash_point
from provenance.sources.base import SourceItem

logger = logging.getLogger(__name__)

# PostgreSQL advisory lock taken by each item's transaction: near-duplicate lookup and
# insert take turns across concurrent runs (SQLite already serialises writers).
_INGEST_LOCK_KEY = 7246502


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
        return record_refused_input(session, source_id, run_id, prepared)
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


def record_refused_input(
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
        title=recording_title(prepared)[0],
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
        source_url=stored_source_url(item),
        first_seen_run_id=run_id,
        last_seen_run_id=run_id,
    )


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
        flags, fact_sources = record_facts(session, rec, source_id, prepared)
    title, title_source = recording_title(prepared)
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
            flags, fact_sources = record_facts(session, rec, source_id, prepared)
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
