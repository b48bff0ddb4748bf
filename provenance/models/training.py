"""Training runs, their frozen membership, checkpoints and gate embedding indexes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from provenance.models.base import SHA256, Base, UTCDateTime, utcnow


class TrainingRun(Base):
    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_name: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[str] = mapped_column(String(32))
    policy_sha256: Mapped[str] = mapped_column(SHA256)
    config_name: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    feature_set_id: Mapped[int | None] = mapped_column(ForeignKey("feature_sets.id"))
    snapshot_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # Merkle root over the sorted member leaf hashes.
    members_digest: Mapped[str | None] = mapped_column(SHA256)
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="snapshotted")
    prefect_flow_run_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The audit chain's head (SEQ:HASH) when the snapshot was frozen; checkpoints carry it.
    audit_head: Mapped[str | None] = mapped_column(String(140))


class TrainingRunMember(Base):
    """A recording in a run's snapshot, with the licence and consent in force then. Append-only."""

    __tablename__ = "training_run_members"
    __table_args__ = (UniqueConstraint("training_run_id", "recording_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    training_run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id"), index=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    sha256: Mapped[str] = mapped_column(SHA256)
    concluded_licence: Mapped[str] = mapped_column(Text)
    licence_assertion_id: Mapped[int | None] = mapped_column(ForeignKey("licence_assertions.id"))
    consent_state: Mapped[str] = mapped_column(String(32))
    consent_event_id: Mapped[int | None] = mapped_column(ForeignKey("consent_events.id"))
    leaf_hash: Mapped[str] = mapped_column(SHA256)


class Checkpoint(Base):
    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    training_run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id"), index=True)
    sha256: Mapped[str] = mapped_column(SHA256, unique=True)
    uri: Mapped[str] = mapped_column(String(2048))
    step: Mapped[int] = mapped_column(Integer)
    is_final: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class EmbeddingIndex(Base):
    """The gate's index over one run's snapshot segment embeddings, with calibrated thresholds."""

    __tablename__ = "embedding_indexes"

    id: Mapped[int] = mapped_column(primary_key=True)
    training_run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id"), index=True)
    embedder_sha256: Mapped[str] = mapped_column(SHA256)
    sha256: Mapped[str] = mapped_column(SHA256, unique=True)
    uri: Mapped[str] = mapped_column(String(2048))
    vectors: Mapped[int] = mapped_column(Integer)
    thresholds: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
