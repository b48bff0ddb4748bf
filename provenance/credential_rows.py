"""The ``content_credentials`` rows: written for every generated file and every credential
read at ingest, read back by ``verify-output``, eligibility and the audit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.content_credentials import (
    GENERATED_SOURCE_TYPE,
    CredentialReading,
)
from provenance.models import ContentCredential


def record_output_credential(
    session: Session,
    *,
    generation_id: int,
    file_sha256: str,
    signed: CredentialReading | None,
    signer_sha256: str | None = None,
    note: str | None = None,
) -> ContentCredential:
    """The credential fairchord put on a generated file, or ``unsigned`` when it had no keys."""
    row = ContentCredential(
        generation_id=generation_id,
        status="signed" if signed is not None else "unsigned",
        file_sha256=file_sha256,
        note=note,
        signer_sha256=signer_sha256,
        **(_reading_columns(signed) if signed is not None else {"claims": {}, "validation": {}}),
    )
    session.add(row)
    session.flush()
    return row


def record_input_credential(
    session: Session, *, recording_id: int, reading: CredentialReading, file_sha256: str
) -> ContentCredential:
    """A credential read from an ingested file, as the validator judged it (once per file
    and manifest: reading the same bytes again adds nothing)."""
    existing = session.execute(
        select(ContentCredential).where(
            ContentCredential.recording_id == recording_id,
            ContentCredential.manifest_label == reading.manifest_label,
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    row = ContentCredential(
        recording_id=recording_id,
        status=reading.status,
        file_sha256=file_sha256,
        **_reading_columns(reading),
    )
    session.add(row)
    session.flush()
    return row


def _reading_columns(reading: CredentialReading) -> dict[str, Any]:
    return {
        "manifest_label": reading.manifest_label,
        "signer": reading.signer,
        "trusted": reading.trusted,
        "digital_source_type": reading.digital_source_type,
        "claims": {
            "training_mining": reading.training_mining,
            "generation": reading.generation,
            "training_data": reading.training_data,
            "assertions": list(reading.assertions),
            "signer_serial": reading.signer_serial,
            "claim_generator": reading.claim_generator,
        },
        "validation": {"failures": list(reading.failures)},
    }


def output_credential(session: Session, generation_id: int) -> ContentCredential | None:
    """The newest credential row of a generation's written file."""
    return session.execute(
        select(ContentCredential)
        .where(ContentCredential.generation_id == generation_id)
        .order_by(ContentCredential.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def credential_by_label(session: Session, manifest_label: str) -> ContentCredential | None:
    """The output credential fairchord signed with this manifest label, if any."""
    return session.execute(
        select(ContentCredential).where(
            ContentCredential.manifest_label == manifest_label,
            ContentCredential.generation_id.is_not(None),
        )
    ).scalar_one_or_none()


def generated_media_recordings(
    session: Session, recording_ids: list[int] | None = None
) -> set[int]:
    """Recordings whose valid credential says a trained model made them."""
    query = select(ContentCredential.recording_id).where(
        ContentCredential.status == "valid",
        ContentCredential.digital_source_type == GENERATED_SOURCE_TYPE,
        ContentCredential.recording_id.is_not(None),
    )
    if recording_ids is not None:
        query = query.where(ContentCredential.recording_id.in_(recording_ids))
    return {int(rid) for rid in session.execute(query).scalars() if rid is not None}


def recording_credentials(session: Session, recording_id: int) -> list[ContentCredential]:
    """Every credential read from one recording's file, oldest first."""
    return list(
        session.execute(
            select(ContentCredential)
            .where(ContentCredential.recording_id == recording_id)
            .order_by(ContentCredential.id)
        ).scalars()
    )


def signing_certificates(session: Session) -> list[dict[str, Any]]:
    """The certificates fairchord signed outputs with: subject, sha256 and how many files."""
    rows = session.execute(
        select(ContentCredential.signer, ContentCredential.signer_sha256).where(
            ContentCredential.status == "signed"
        )
    ).all()
    counts: dict[tuple[str | None, str | None], int] = {}
    for signer, sha in rows:
        counts[(signer, sha)] = counts.get((signer, sha), 0) + 1
    return [
        {"subject": signer, "sha256": sha, "files": n}
        for (signer, sha), n in sorted(counts.items(), key=lambda kv: str(kv[0]))
    ]
