"""Licence assertions and the append-only consent ledger."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from provenance.models.base import SHA256, Base, UTCDateTime, utcnow

CONSENT_ACTIONS = ("opt_in", "opt_out")
CONSENT_PURPOSES = ("any", "training", "commercial_training", "style_imitation")
# c2pa: a training-and-mining refusal read from a file's Content Credentials at ingest.
CONSENT_ORIGINS = ("manifest", "registry_import", "tdmrep", "cli", "import_file", "c2pa")


class LicenceAssertion(Base):
    """What someone said about a recording's licence; the newest assertion is the one in force."""

    __tablename__ = "licence_assertions"

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    declared: Mapped[str] = mapped_column(Text)
    concluded: Mapped[str] = mapped_column(Text)
    conclusion_reason: Mapped[str | None] = mapped_column(Text)
    asserted_by: Mapped[str] = mapped_column(String(256))
    fact_source: Mapped[str | None] = mapped_column(String(64))
    evidence_uri: Mapped[str | None] = mapped_column(String(2048))
    evidence_sha256: Mapped[str | None] = mapped_column(SHA256)
    note: Mapped[str | None] = mapped_column(Text)
    # Indexed for the audit, which looks for assertions newer than a snapshot.
    asserted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ConsentEvent(Base):
    """One consent decision about exactly one subject. Rows are never updated or deleted."""

    __tablename__ = "consent_events"
    __table_args__ = (
        CheckConstraint(
            "(CASE WHEN party_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN recording_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN source_id IS NULL THEN 0 ELSE 1 END) = 1",
            name="one_subject",
        ),
        CheckConstraint("action IN ('opt_in', 'opt_out')", name="action"),
        CheckConstraint(
            "purpose IN ('any', 'training', 'commercial_training', 'style_imitation')",
            name="purpose",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    party_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"), index=True)
    recording_id: Mapped[int | None] = mapped_column(ForeignKey("recordings.id"), index=True)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(32))
    # Both indexed for the audit, which looks for events newer than a snapshot.
    effective_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    origin: Mapped[str] = mapped_column(String(32))
    evidence: Mapped[str | None] = mapped_column(Text)
    # Identifies the same statement arriving twice (e.g. a registry synced again).
    dedupe_key: Mapped[str | None] = mapped_column(SHA256, unique=True)
