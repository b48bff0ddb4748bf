"""What a source states about a recording (title, credits, licence, manifest consent), written down.

The file's own Content Credentials are written down too: a ``content_credentials`` row,
valid or not, and, when a *valid* credential refuses AI training (a training-and-mining
entry ``ai_training`` or ``ai_generative_training`` that is ``notAllowed`` or
``constrained``), an opt-out of ``training`` on the recording with origin ``c2pa``. An
invalid credential neither grants nor removes anything.

A title or source url longer than its column is stored cut and flagged ``oversized_fact``;
a credited name that cannot name a party, a licence that cannot be parsed and a consent
statement that cannot be parsed are flagged too, and the recording is kept.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from provenance.hashing import sha256_bytes
from provenance.ingest_prepare import PreparedItem
from provenance.models import Recording, Source, utcnow
from provenance.sources.base import SourceItem, parse_consent
from provenance.sources.text import fit_text

logger = logging.getLogger(__name__)

# Column widths of recordings.title and recordings.source_url: longer facts are stored cut.
_TITLE_CHARS, _URL_CHARS = 512, 2048


def recording_title(prepared: PreparedItem) -> tuple[str | None, str | None]:
    """The title to store (cut to its column) and where it came from, or ``(None, None)``."""
    item = prepared.item
    if item.title:
        return fit_text(item.title, _TITLE_CHARS)[0], item.fact_sources.get("title", "source")
    if prepared.tag_title:
        return fit_text(prepared.tag_title, _TITLE_CHARS)[0], "tags"
    return None, None


def stored_source_url(item: SourceItem) -> str | None:
    """The item's source url as stored: cut to its column."""
    return fit_text(item.source_url, _URL_CHARS)[0]


def _oversized_facts(prepared: PreparedItem) -> bool:
    title = prepared.item.title or prepared.tag_title
    return fit_text(title, _TITLE_CHARS)[1] or fit_text(prepared.item.source_url, _URL_CHARS)[1]


def record_facts(
    session: Session, rec: Recording, source_id: int, prepared: PreparedItem
) -> tuple[list[str], dict[str, str]]:
    """Credits, licence assertion and manifest consent for an accepted recording. Returns the
    flags raised and where each fact came from."""
    from provenance.licences import conclude_licence, record_licence
    from provenance.parties import credit_names

    item = prepared.item
    source = session.get(Source, source_id)
    source_uri = source.uri if source is not None else str(source_id)
    flags: list[str] = list(item.flags)
    fact_sources: dict[str, str] = {}

    artists, artist_source = item.artists, item.fact_sources.get("artists", "source")
    if not artists and prepared.tag_artists:
        artists, artist_source = prepared.tag_artists, "tags"
    unparsed = credit_names(
        session, recording_id=rec.id, names=artists, role="artist", fact_source=artist_source
    )
    if unparsed:
        flags.append("unparseable_artist")
    if artists:
        fact_sources["artists"] = artist_source
    if _oversized_facts(prepared):
        flags.append("oversized_fact")

    declared, licence_source = item.licence, item.fact_sources.get("licence", "source")
    if declared is None and prepared.tag_licence:
        declared, licence_source = prepared.tag_licence, "tags"
    conclusion = conclude_licence(declared)
    if (
        declared is not None
        and conclusion.concluded == "NOASSERTION"
        and declared.strip().upper() != "NOASSERTION"
    ):
        flags.append("unparseable_licence")
    record_licence(
        session,
        recording_id=rec.id,
        declared=declared,
        asserted_by=f"ingest:{source_uri}"[:256],
        fact_source=licence_source if declared is not None else None,
        evidence_uri=source_uri,
    )
    if declared is not None:
        fact_sources["licence"] = licence_source

    if item.consent:
        try:
            claims = parse_consent(item.consent)
        except ValueError as exc:
            logger.warning("%s: %s", item.locator, exc)
            flags.append("unparseable_consent")
            claims = []
        if claims:
            _record_manifest_consent(session, rec, source_uri, item, claims)
            fact_sources["consent"] = item.fact_sources.get("consent", "source")
    if prepared.credential is not None:
        _record_credential(session, rec, prepared.credential)
        fact_sources["credential"] = "c2pa"
    return flags, fact_sources


def _record_credential(session: Session, rec: Recording, credential: dict[str, Any]) -> None:
    """The credential read from the file and, for a valid refusal of training, its opt-out
    (keyed on the bytes and the manifest: reading the same file again adds nothing)."""
    from provenance.consent import C2PA_ORIGIN, ConsentSubject, record_consent
    from provenance.content_credentials import CredentialReading, training_refusal
    from provenance.credential_rows import record_input_credential

    reading = CredentialReading.from_dict(credential)
    record_input_credential(session, recording_id=rec.id, reading=reading, file_sha256=rec.sha256)
    refused = training_refusal(reading)
    if not refused:
        return
    uses = ", ".join(f"{name}={reading.training_mining[name]}" for name in refused)
    trust = "trusted" if reading.trusted else "untrusted"
    record_consent(
        session,
        subject=ConsentSubject(kind="recording", id=rec.id),
        action="opt_out",
        purpose="training",
        effective_at=utcnow(),
        origin=C2PA_ORIGIN,
        evidence=(
            f"c2pa manifest {reading.manifest_label} signed by {reading.signer} "
            f"({trust} signer) :: {uses} :: file sha256 {rec.sha256}"
        )[:2000],
        dedupe_key=sha256_bytes(f"c2pa|{rec.sha256}|{reading.manifest_label}|training".encode()),
    )


def _record_manifest_consent(
    session: Session,
    rec: Recording,
    source_uri: str,
    item: SourceItem,
    claims: list[tuple[str, str]],
) -> None:
    from provenance.consent import ConsentSubject, record_consent

    for action, purpose in claims:
        key = sha256_bytes(
            f"manifest|{source_uri}|{item.locator}|{rec.sha256}|{action}|{purpose}".encode()
        )
        record_consent(
            session,
            subject=ConsentSubject(kind="recording", id=rec.id),
            action=action,
            purpose=purpose,
            effective_at=utcnow(),
            origin="manifest",
            evidence=f"{source_uri} :: {item.locator} :: consent={item.consent}"[:2000],
            dedupe_key=key,
        )
