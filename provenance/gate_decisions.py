"""The one writer of ``gate_decisions`` rows: a decision, its evidence and its audit event."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from provenance.audit_log import append_event
from provenance.models import GateDecision

VERDICTS = ("allow", "block")


def record_decision(
    session: Session,
    *,
    generation_id: int | None,
    stage: str,
    verdict: str,
    reasons: Sequence[str],
    scores: Mapping[str, Any],
    nearest: Sequence[Any],
    thresholds: Mapping[str, Any],
    event: Mapping[str, Any],
    index_id: int | None = None,
    audio_sha256: str | None = None,
) -> GateDecision:
    """Append one decision row and its ``gate.decided`` event inside the caller's transaction.

    ``event`` is the stage's own evidence for the audit payload; the payload always starts
    with the generation id, the stage and the verdict.
    """
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    row = GateDecision(
        generation_id=generation_id,
        stage=stage,
        verdict=verdict,
        reasons=list(reasons),
        scores=dict(scores),
        nearest=list(nearest),
        thresholds=dict(thresholds),
        index_id=index_id,
        audio_sha256=audio_sha256,
    )
    session.add(row)
    session.flush()
    append_event(
        session,
        "gate.decided",
        entity="gate_decision",
        entity_id=row.id,
        payload={"generation_id": generation_id, "stage": stage, "verdict": verdict, **event},
    )
    return row
