"""Gate-index rows (``embedding_indexes``): recording one as it is built, its calibrated
thresholds, and finding a run's indexes.

Plain functions: the caller owns the session and its transaction (they flush, never commit).
The index files themselves are written and verified by ``generation.index``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit_log import append_event
from provenance.chain_facts import thresholds_sha256
from provenance.models import EmbeddingIndex


def gate_index_by_id(session: Session, index_id: int) -> EmbeddingIndex | None:
    """The gate index row with this id, or None."""
    return session.get(EmbeddingIndex, index_id)


def gate_index_by_sha256(session: Session, sha256: str) -> EmbeddingIndex | None:
    """The gate index row whose files hash to ``sha256``, or None."""
    return session.execute(
        select(EmbeddingIndex).where(EmbeddingIndex.sha256 == sha256)
    ).scalar_one_or_none()


def newest_gate_index(
    session: Session, training_run_id: int, *, embedder_sha256: str | None = None
) -> EmbeddingIndex | None:
    """The run's newest gate index, for one embedder when ``embedder_sha256`` is given."""
    query = select(EmbeddingIndex).where(EmbeddingIndex.training_run_id == training_run_id)
    if embedder_sha256 is not None:
        # A run can have an index per embedder (e.g. the CLAP segments and the gate's).
        query = query.where(EmbeddingIndex.embedder_sha256 == embedder_sha256)
    return session.execute(query.order_by(EmbeddingIndex.id.desc()).limit(1)).scalar_one_or_none()


def gate_index_embedders(session: Session, training_run_id: int) -> list[str]:
    """The embedder sha256 of each of the run's gate indexes (one entry per index)."""
    return list(
        session.execute(
            select(EmbeddingIndex.embedder_sha256).where(
                EmbeddingIndex.training_run_id == training_run_id
            )
        ).scalars()
    )


def record_gate_index(
    session: Session,
    *,
    training_run_id: int,
    embedder_sha256: str,
    sha256: str,
    uri: str,
    vectors: int,
    snapshot_digest: str | None,
    thresholds: dict[str, Any] | None,
) -> EmbeddingIndex:
    """Add the row of a gate index whose files were written, with a ``gate_index.built``
    audit event."""
    row = EmbeddingIndex(
        training_run_id=training_run_id,
        embedder_sha256=embedder_sha256,
        sha256=sha256,
        uri=uri,
        vectors=vectors,
        thresholds=thresholds or None,
    )
    session.add(row)
    session.flush()
    append_event(
        session,
        "gate_index.built",
        entity="embedding_index",
        entity_id=row.id,
        payload={
            "training_run_id": training_run_id,
            "sha256": sha256,
            "embedder_sha256": embedder_sha256,
            "snapshot_digest": snapshot_digest,
            "vectors": vectors,
            "thresholds_sha256": thresholds_sha256(row.thresholds),
        },
    )
    return row


def record_thresholds(session: Session, row: EmbeddingIndex, thresholds: dict[str, Any]) -> None:
    """Set the index's calibrated thresholds, with a ``gate_index.calibrated`` audit event
    whose digest is what loading checks the row against."""
    row.thresholds = dict(thresholds)
    session.flush()
    append_event(
        session,
        "gate_index.calibrated",
        entity="embedding_index",
        entity_id=row.id,
        payload={
            "sha256": row.sha256,
            "thresholds": dict(thresholds),
            "thresholds_sha256": thresholds_sha256(row.thresholds),
        },
    )
