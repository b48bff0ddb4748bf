"""Content Credentials (C2PA manifests): the ones fairchord signs and the ones it reads."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from provenance.models.base import SHA256, Base, UTCDateTime, utcnow

# signed: fairchord signed a generated file. unsigned: it wrote one without keys.
# valid / invalid: a credential read from an incoming file, and whether it validated.
CREDENTIAL_STATUSES = ("signed", "unsigned", "valid", "invalid")


class ContentCredential(Base):
    """One credential, on exactly one generated file or one ingested recording. Append-only."""

    __tablename__ = "content_credentials"
    __table_args__ = (
        CheckConstraint(
            "(CASE WHEN generation_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN recording_id IS NULL THEN 0 ELSE 1 END) = 1",
            name="one_subject",
        ),
        CheckConstraint("status IN ('signed', 'unsigned', 'valid', 'invalid')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    generation_id: Mapped[int | None] = mapped_column(ForeignKey("generations.id"), index=True)
    recording_id: Mapped[int | None] = mapped_column(ForeignKey("recordings.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    # The active manifest's label (urn:c2pa:...), None when unsigned.
    manifest_label: Mapped[str | None] = mapped_column(String(256))
    # The signing certificate: its subject and the sha256 of its DER bytes.
    signer: Mapped[str | None] = mapped_column(String(512))
    signer_sha256: Mapped[str | None] = mapped_column(SHA256)
    # Whether the signer chains to a trust anchor the validator was given.
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)
    # IPTC digital source type of the c2pa.created action, e.g. trainedAlgorithmicMedia.
    digital_source_type: Mapped[str | None] = mapped_column(String(256))
    # What the credential says that fairchord acts on (training-mining entries, the
    # generation claims) and the validator's failure codes.
    claims: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    validation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # sha256 of the file as it was signed or read.
    file_sha256: Mapped[str | None] = mapped_column(SHA256)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
