"""Featurized data: feature sets (one per mel config), their shards, and the recordings covered."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from provenance.models.base import SHA256, Base, UTCDateTime, utcnow


class Embedder(Base):
    """A CLAP (or other) embedding model, identified by its checkpoint sha256."""

    __tablename__ = "embedders"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(SHA256, unique=True)
    uri: Mapped[str] = mapped_column(String(2048))
    kind: Mapped[str] = mapped_column(String(32), default="laion_clap")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class FeatureSet(Base):
    __tablename__ = "feature_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    mel_config_hash: Mapped[str] = mapped_column(String(64), unique=True)
    mel_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    root_uri: Mapped[str] = mapped_column(String(2048))
    manifest_uri: Mapped[str | None] = mapped_column(String(2048))
    manifest_sha256: Mapped[str | None] = mapped_column(SHA256)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class FeatureShard(Base):
    __tablename__ = "feature_shards"
    __table_args__ = (UniqueConstraint("feature_set_id", "uri"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    feature_set_id: Mapped[int] = mapped_column(ForeignKey("feature_sets.id"), index=True)
    uri: Mapped[str] = mapped_column(String(2048))
    sha256: Mapped[str] = mapped_column(SHA256)
    rows: Mapped[int] = mapped_column(Integer)
    embedder_sha256: Mapped[str | None] = mapped_column(SHA256)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class FeatureSetRecording(Base):
    """A recording covered by a feature set, with its segment count and the shard holding it."""

    __tablename__ = "feature_set_recordings"
    __table_args__ = (UniqueConstraint("feature_set_id", "recording_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    feature_set_id: Mapped[int] = mapped_column(ForeignKey("feature_sets.id"), index=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    shard_id: Mapped[int | None] = mapped_column(ForeignKey("feature_shards.id"))
    segments: Mapped[int] = mapped_column(Integer)
