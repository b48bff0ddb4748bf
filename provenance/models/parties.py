"""People and organisations with rights or credits: parties, their aliases, and credits."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from provenance.models.base import Base, UTCDateTime, utcnow

PARTY_KINDS = ("person", "group", "organisation", "unknown")
CREDIT_ROLES = ("artist", "composer", "performer", "rights_holder", "label", "encoder")


class Party(Base):
    __tablename__ = "parties"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(512))
    # Lower-cased, accent-folded, whitespace-collapsed name: the identity key.
    normalized_name: Mapped[str] = mapped_column(String(512), unique=True)
    kind: Mapped[str] = mapped_column(String(32), default="person")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PartyAlias(Base):
    __tablename__ = "party_aliases"
    __table_args__ = (UniqueConstraint("party_id", "normalized_alias"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    alias: Mapped[str] = mapped_column(String(512))
    normalized_alias: Mapped[str] = mapped_column(String(512), index=True)


class Credit(Base):
    __tablename__ = "credits"
    __table_args__ = (UniqueConstraint("recording_id", "party_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    role: Mapped[str] = mapped_column(String(32), default="artist")
    fact_source: Mapped[str | None] = mapped_column(String(64))
