"""The hash-chained audit log: append an event, and verify the chain.

Each row's ``hash`` is the sha256 of a canonical serialisation of its content
together with ``prev_hash`` (the previous row's hash; the first row points at
:data:`GENESIS`). Editing a row breaks its own hash; removing or reordering
rows breaks the link from the next row. Deleting the newest rows leaves a
valid but shorter chain, so exports carry the head hash as an external anchor.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from provenance.models import AuditEvent, utcnow

GENESIS = "0" * 64
DEFAULT_ACTOR = "fairchord"


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def event_hash(
    *,
    prev_hash: str,
    occurred_at: dt.datetime,
    actor: str,
    action: str,
    entity: str,
    entity_id: str | None,
    payload: str,
) -> str:
    body = canonical_json(
        {
            "prev_hash": prev_hash,
            "occurred_at": occurred_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "entity": entity,
            "entity_id": entity_id,
            "payload": payload,
        }
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _lock_chain(session: Session) -> None:
    # On PostgreSQL two writers could read the same head concurrently; a
    # transaction-scoped advisory lock makes appends take turns. (SQLite
    # sessions already hold the write lock from BEGIN IMMEDIATE, and the
    # unique prev_hash constraint stops a fork on any engine.)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7246501)"))


def append_event(
    session: Session,
    action: str,
    *,
    entity: str,
    entity_id: str | int | None = None,
    payload: dict[str, Any] | None = None,
    actor: str = DEFAULT_ACTOR,
) -> AuditEvent:
    """Append one event to the chain inside the caller's transaction."""
    _lock_chain(session)
    head = session.execute(
        select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).scalar_one_or_none()
    prev_hash = head or GENESIS
    occurred_at = utcnow()
    body = canonical_json(payload or {})
    eid = None if entity_id is None else str(entity_id)
    row = AuditEvent(
        occurred_at=occurred_at,
        actor=actor,
        action=action,
        entity=entity,
        entity_id=eid,
        payload=body,
        prev_hash=prev_hash,
        hash=event_hash(
            prev_hash=prev_hash,
            occurred_at=occurred_at,
            actor=actor,
            action=action,
            entity=entity,
            entity_id=eid,
            payload=body,
        ),
    )
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class ChainProblem:
    row_id: int
    kind: str  # "altered" | "broken_link"
    detail: str

    def __str__(self) -> str:
        return f"audit_log row {self.row_id}: {self.kind}: {self.detail}"


def verify_chain(session: Session) -> tuple[int, list[ChainProblem]]:
    """Walk the chain in id order; return the number of rows and every problem found."""
    problems: list[ChainProblem] = []
    expected_prev = GENESIS
    count = 0
    for row in session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars():
        count += 1
        if row.prev_hash != expected_prev:
            problems.append(
                ChainProblem(
                    row.id,
                    "broken_link",
                    "prev_hash does not match the preceding row: a row was removed, "
                    "inserted or reordered before it",
                )
            )
        recomputed = event_hash(
            prev_hash=row.prev_hash,
            occurred_at=row.occurred_at,
            actor=row.actor,
            action=row.action,
            entity=row.entity,
            entity_id=row.entity_id,
            payload=row.payload,
        )
        if recomputed != row.hash:
            problems.append(ChainProblem(row.id, "altered", "content does not match its hash"))
        expected_prev = row.hash
    return count, problems


def head_hash(session: Session) -> str:
    head = session.execute(
        select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).scalar_one_or_none()
    return head or GENESIS
