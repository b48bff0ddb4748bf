"""Every generation attempt and every gate decision, allowed or blocked."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from provenance.models.base import SHA256, Base, UTCDateTime, utcnow


class Generation(Base):
    __tablename__ = "generations"

    id: Mapped[int] = mapped_column(primary_key=True)
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id"), index=True)
    prompt: Mapped[str] = mapped_column(Text)
    seed: Mapped[int | None] = mapped_column(Integer)
    sampler: Mapped[str | None] = mapped_column(String(32))
    steps: Mapped[int | None] = mapped_column(Integer)
    cfg: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float | None] = mapped_column(Float)
    init_audio_sha256: Mapped[str | None] = mapped_column(SHA256)
    # allowed | blocked_prompt | blocked_gate | error
    status: Mapped[str] = mapped_column(String(32))
    output_uri: Mapped[str | None] = mapped_column(String(2048))
    output_sha256: Mapped[str | None] = mapped_column(SHA256)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class GateDecision(Base):
    """One safeguard decision with its evidence. Append-only."""

    __tablename__ = "gate_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    generation_id: Mapped[int | None] = mapped_column(ForeignKey("generations.id"), index=True)
    stage: Mapped[str] = mapped_column(String(32))  # prompt_screen | similarity_gate
    verdict: Mapped[str] = mapped_column(String(16))  # allow | block
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    scores: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    nearest: Mapped[list[Any]] = mapped_column(JSON, default=list)
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    index_id: Mapped[int | None] = mapped_column(ForeignKey("embedding_indexes.id"))
    audio_sha256: Mapped[str | None] = mapped_column(SHA256)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
