"""Training runs and checkpoints looked up by id, and the run a checkpoint belongs to."""

from __future__ import annotations

from sqlalchemy.orm import Session

from provenance.models import Checkpoint, TrainingRun


def run_by_id(session: Session, training_run_id: int) -> TrainingRun | None:
    """The training run with this id, or None."""
    return session.get(TrainingRun, training_run_id)


def checkpoint_by_id(session: Session, checkpoint_id: int) -> Checkpoint | None:
    """The checkpoint with this id, or None."""
    return session.get(Checkpoint, checkpoint_id)


def run_of_checkpoint(session: Session, checkpoint: Checkpoint) -> TrainingRun | None:
    """The training run that wrote ``checkpoint``, or None when its row is gone."""
    return session.get(TrainingRun, checkpoint.training_run_id)
