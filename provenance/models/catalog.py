"""Where audio came from and what it is: sources, runs, recordings, sightings, quarantine."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from provenance.models.base import SHA256, Base, UTCDateTime, utcnow

RECORDING_STATUSES = ("accepted", "quarantined")


class Source(Base):
    """A place audio comes from: a folder, a manifest, a dataset dump."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    uri: Mapped[str] = mapped_column(String(2048), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class IngestionRun(Base):
    __tablename__ = "ingestion_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    prefect_flow_run_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Recording(Base):
    """One distinct audio content, identified by the sha256 of its original bytes."""

    __tablename__ = "recordings"
    __table_args__ = (CheckConstraint("status IN ('accepted', 'quarantined')", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(SHA256, unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    title: Mapped[str | None] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16), default="accepted", index=True)
    reason_code: Mapped[str | None] = mapped_column(String(64))
    reason_detail: Mapped[str | None] = mapped_column(Text)
    # Decoded facts (None when the file could not be decoded).
    duration_s: Mapped[float | None] = mapped_column(Float)
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(Integer)
    codec: Mapped[str | None] = mapped_column(String(64))
    peak: Mapped[float | None] = mapped_column(Float)
    rms_dbfs: Mapped[float | None] = mapped_column(Float)
    silence_fraction: Mapped[float | None] = mapped_column(Float)
    pcm_fingerprint: Mapped[str | None] = mapped_column(String(128), index=True)
    object_uri: Mapped[str | None] = mapped_column(String(2048))
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("recordings.id"))
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id"), index=True)
    source_url: Mapped[str | None] = mapped_column(String(2048))
    first_seen_run_id: Mapped[int | None] = mapped_column(ForeignKey("ingestion_runs.id"))
    last_seen_run_id: Mapped[int | None] = mapped_column(ForeignKey("ingestion_runs.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Sighting(Base):
    """A place a recording's bytes were seen; seeing the same bytes again adds a sighting."""

    __tablename__ = "sightings"
    __table_args__ = (UniqueConstraint("recording_id", "source_id", "locator"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"))
    locator: Mapped[str] = mapped_column(String(2048))
    first_run_id: Mapped[int | None] = mapped_column(ForeignKey("ingestion_runs.id"))
    last_run_id: Mapped[int | None] = mapped_column(ForeignKey("ingestion_runs.id"))
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class QuarantineItem(Base):
    """An input refused before it could become a recording (missing file, path escape, ...)."""

    __tablename__ = "quarantine_items"
    __table_args__ = (UniqueConstraint("source_id", "locator", "reason_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    locator: Mapped[str] = mapped_column(String(2048))
    reason_code: Mapped[str] = mapped_column(String(64))
    reason_detail: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(SHA256)
    first_run_id: Mapped[int | None] = mapped_column(ForeignKey("ingestion_runs.id"))
    last_run_id: Mapped[int | None] = mapped_column(ForeignKey("ingestion_runs.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
