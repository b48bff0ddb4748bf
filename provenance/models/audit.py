"""The append-only, hash-chained audit log."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from provenance.models.base import SHA256, Base, UTCDateTime


class AuditEvent(Base):
    """One state change. ``hash`` covers this row's content and ``prev_hash``.

    ``prev_hash`` is unique, so two writers can never both extend the same row:
    the chain cannot fork even under concurrent writes.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(128))
    # Canonical JSON text (sorted keys), hashed byte for byte.
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(SHA256, unique=True)
    hash: Mapped[str] = mapped_column(SHA256, unique=True)
