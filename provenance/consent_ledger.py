"""The consent ledger as a listing: every event, oldest effective first, its subject named."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.consent import describe_subject, event_subject
from provenance.models import ConsentEvent


@dataclass(frozen=True)
class LedgerEntry:
    """One consent event with a human label for its subject (:func:`describe_subject`)."""

    id: int
    subject: str
    action: str
    purpose: str
    effective_at: dt.datetime
    recorded_at: dt.datetime
    origin: str
    evidence: str | None

    def to_dict(self) -> dict[str, Any]:
        """The fields with both times as ISO 8601 text."""
        return {
            "id": self.id,
            "subject": self.subject,
            "action": self.action,
            "purpose": self.purpose,
            "effective_at": self.effective_at.isoformat(),
            "recorded_at": self.recorded_at.isoformat(),
            "origin": self.origin,
            "evidence": self.evidence,
        }


def consent_ledger(session: Session) -> list[LedgerEntry]:
    """Every consent event, ordered by effective time, then by id."""
    events = session.execute(
        select(ConsentEvent).order_by(ConsentEvent.effective_at, ConsentEvent.id)
    ).scalars()
    return [
        LedgerEntry(
            id=e.id,
            subject=describe_subject(session, event_subject(e)),
            action=e.action,
            purpose=e.purpose,
            effective_at=e.effective_at,
            recorded_at=e.recorded_at,
            origin=e.origin,
            evidence=e.evidence,
        )
        for e in events
    ]
