"""Embedder rows and the segment-embedding files they wrote, each recorded with its digest.

The caller owns the session: every function here reads or writes inside it.
A segment-embeddings file is rewritten whole when its embedder embeds again, so
the newest ``embeddings.written`` event for a location is the digest it must have.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit_log import append_event
from provenance.models import AuditEvent, Embedder, Recording

EMBEDDINGS_WRITTEN = "embeddings.written"


def object_uris(session: Session) -> dict[int, str]:
    """Each stored recording's object location, by recording id."""
    rows = session.execute(
        select(Recording.id, Recording.object_uri).where(Recording.object_uri.is_not(None))
    )
    return {rid: uri for rid, uri in rows}


def record_embedder(
    session: Session, *, sha256: str, uri: str, config: dict[str, Any], kind: str = "laion_clap"
) -> int:
    """The embedder row for a checkpoint digest, added with its audit event if new."""
    row = session.execute(select(Embedder).where(Embedder.sha256 == sha256)).scalar_one_or_none()
    if row is not None:
        return row.id
    row = Embedder(sha256=sha256, uri=uri, kind=kind, config=config)
    session.add(row)
    session.flush()
    append_event(
        session,
        "embedder.trained",
        entity="embedder",
        entity_id=row.id,
        payload={"sha256": sha256, "uri": uri, "config": config},
    )
    return row.id


def record_segment_embeddings(
    session: Session, *, embedder_id: int, uri: str, sha256: str, segments: int
) -> None:
    """Record that ``uri`` now holds ``segments`` embeddings with file digest ``sha256``."""
    append_event(
        session,
        EMBEDDINGS_WRITTEN,
        entity="embedder",
        entity_id=embedder_id,
        payload={"uri": uri, "sha256": sha256, "segments": segments},
    )


def segment_embedding_files(session: Session) -> Iterator[tuple[str, str | None, str]]:
    """(reference, location, digest) of every recorded segment-embeddings file, newest write."""
    newest: dict[str, tuple[str, str]] = {}
    events = session.execute(
        select(AuditEvent.entity_id, AuditEvent.payload)
        .where(AuditEvent.action == EMBEDDINGS_WRITTEN)
        .order_by(AuditEvent.id)
    )
    for entity_id, payload in events:
        body = json.loads(payload)
        newest[str(body["uri"])] = (f"embedder {entity_id}", str(body["sha256"]))
    for uri, (ref, sha256) in newest.items():
        yield ref, uri, sha256


def record_gate_detector(
    session: Session, *, sha256: str, uri: str, kind: str, config: dict[str, Any]
) -> None:
    """Record the gate's embedder, with the cohorts it is calibrated against, as an
    ``Embedder`` row: what the gate itself learned from. A changed config is updated."""
    row = session.execute(select(Embedder).where(Embedder.sha256 == sha256)).scalar_one_or_none()
    if row is not None:
        if row.config != config:
            row.config = config
        return
    row = Embedder(sha256=sha256, uri=uri, kind=kind, config=config)
    session.add(row)
    session.flush()
    append_event(
        session,
        "embedder.recorded",
        entity="embedder",
        entity_id=row.id,
        payload={"sha256": sha256, "kind": kind, "role": "similarity_gate"},
    )
