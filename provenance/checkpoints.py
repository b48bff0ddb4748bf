"""Checkpoint rows: recording one as it is written, finding one, and the run a resume continues.

Plain functions: the caller owns the session and its transaction (they flush, never commit).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit_log import append_event
from provenance.models import Checkpoint, TrainingRun
from provenance.store_publish import publish_or_home

# A run in one of these states has not finished, so `fairchord train --resume` may continue it.
RESUMABLE_STATUSES = ("snapshotted", "training", "failed", "interrupted")


class CheckpointNotFound(LookupError):
    """The checkpoint id given does not exist, or no checkpoint was recorded yet."""


def record_checkpoint(
    session: Session,
    training_run_id: int,
    *,
    path: str | Path,
    sha256: str,
    step: int,
    is_final: bool,
) -> int:
    """The id of the ``checkpoints`` row for a written file, added with a ``checkpoint.recorded``
    audit event unless a row with this sha256 exists already (then that row's id)."""
    existing = session.execute(
        select(Checkpoint).where(Checkpoint.sha256 == sha256)
    ).scalar_one_or_none()
    if existing is not None:
        return existing.id
    row = Checkpoint(
        training_run_id=training_run_id,
        sha256=sha256,
        # With a store URL set, the file is published there and that location recorded.
        uri=publish_or_home(
            path, "checkpoints", f"run-{training_run_id}/{Path(path).name}", sha256=sha256
        ),
        step=step,
        is_final=is_final,
    )
    session.add(row)
    session.flush()
    append_event(
        session,
        "checkpoint.recorded",
        entity="checkpoint",
        entity_id=row.id,
        payload={
            "training_run_id": training_run_id,
            "sha256": sha256,
            "step": step,
            "is_final": is_final,
            "uri": row.uri,
        },
    )
    return row.id


def newest_checkpoint(session: Session) -> Checkpoint | None:
    """The newest final checkpoint, else the newest of any kind; None before any training."""
    return session.execute(
        select(Checkpoint).order_by(Checkpoint.is_final.desc(), Checkpoint.id.desc()).limit(1)
    ).scalar_one_or_none()


def checkpoint_or_newest(session: Session, checkpoint_id: int | None) -> Checkpoint:
    """The checkpoint ``checkpoint_id``, or when None the :func:`newest_checkpoint`;
    raises :class:`CheckpointNotFound` naming what is missing."""
    if checkpoint_id is not None:
        ckpt = session.get(Checkpoint, checkpoint_id)
        if ckpt is None:
            raise CheckpointNotFound(f"checkpoint {checkpoint_id} does not exist")
        return ckpt
    newest = newest_checkpoint(session)
    if newest is None:
        raise CheckpointNotFound("no checkpoints yet: train a model first (`fairchord train`)")
    return newest


def latest_resumable_run(
    session: Session, *, policy_name: str, config_name: str
) -> TrainingRun | None:
    """The newest unfinished run (:data:`RESUMABLE_STATUSES`) of this policy and config."""
    return session.execute(
        select(TrainingRun)
        .where(
            TrainingRun.policy_name == policy_name,
            TrainingRun.config_name == config_name,
            TrainingRun.status.in_(RESUMABLE_STATUSES),
        )
        .order_by(TrainingRun.id.desc())
        .limit(1)
    ).scalar_one_or_none()
