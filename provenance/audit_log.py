"""The hash-chained audit log: append an event, and verify the chain.

Each row's ``hash`` is the sha256 of a canonical serialisation of its content
together with ``prev_hash`` (the previous row's hash; the first row points at
:data:`GENESIS`). Editing a row breaks its own hash; removing or reordering
rows breaks the link from the next row. Deleting the newest rows leaves a
valid but shorter chain, and so does rewriting and re-hashing every row: both
are caught only against a head recorded outside the database
(:mod:`provenance.audit.anchors`).

Rows of the ledger tables are covered by the chain too: an event's payload
carries, under ``"covers"``, the digest of every ledger row its transaction
inserted since the previous event (:mod:`provenance.row_digests`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event, select, text
from sqlalchemy.orm import Session, sessionmaker

from provenance import row_digests
from provenance.models import AuditEvent, Base, utcnow

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


CHAIN_LOCK = 7246501


def _lock_chain(session: Session) -> None:
    # On PostgreSQL two writers could read the same head concurrently; a
    # transaction-scoped advisory lock makes appends take turns. (SQLite
    # sessions already hold the write lock from BEGIN IMMEDIATE, and the
    # unique prev_hash constraint stops a fork on any engine.)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SELECT pg_advisory_xact_lock({CHAIN_LOCK})"))


def append_event(
    session: Session,
    action: str,
    *,
    entity: str,
    entity_id: str | int | None = None,
    payload: dict[str, Any] | None = None,
    actor: str = DEFAULT_ACTOR,
) -> AuditEvent:
    """Append one event to the chain inside the caller's transaction.

    Ledger rows this session inserted since its last event are covered by this one: their
    digests go into the payload under ``"covers"``.
    """
    _lock_chain(session)
    session.flush()
    head = session.execute(
        select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).scalar_one_or_none()
    prev_hash = head or GENESIS
    occurred_at = utcnow()
    content = dict(payload or {})
    covers = row_digests.take_pending_covers(session)
    if covers:
        content["covers"] = covers
    body = canonical_json(content)
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


def append_event_on(
    connection: Connection,
    action: str,
    *,
    entity: str,
    entity_id: str | int | None = None,
    payload: dict[str, Any] | None = None,
    actor: str = DEFAULT_ACTOR,
) -> tuple[int, str]:
    """Append one event through a bare connection (migrations); returns its id and hash."""
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({CHAIN_LOCK})"))
    table = Base.metadata.tables[AuditEvent.__tablename__]
    prev_hash = (
        connection.execute(
            select(table.c.hash).order_by(table.c.id.desc()).limit(1)
        ).scalar_one_or_none()
        or GENESIS
    )
    occurred_at = utcnow()
    body = canonical_json(payload or {})
    eid = None if entity_id is None else str(entity_id)
    digest = event_hash(
        prev_hash=prev_hash,
        occurred_at=occurred_at,
        actor=actor,
        action=action,
        entity=entity,
        entity_id=eid,
        payload=body,
    )
    new_id = connection.execute(
        table.insert()
        .values(
            occurred_at=occurred_at,
            actor=actor,
            action=action,
            entity=entity,
            entity_id=eid,
            payload=body,
            prev_hash=prev_hash,
            hash=digest,
        )
        .returning(table.c.id)
    ).scalar_one()
    return int(new_id), digest


COVER_ACTION = "ledger.rows_covered"


def _cover_before_commit(session: Session) -> None:
    # Ledger rows inserted after the transaction's last event would otherwise commit
    # uncovered; one more event covers them.
    session.flush()
    if row_digests.has_pending(session):
        append_event(session, COVER_ACTION, entity="ledger")


def cover_ledger_rows(factory: sessionmaker[Session]) -> None:
    """Make every session from ``factory`` cover the ledger rows it inserts in the chain."""
    event.listen(factory, "after_flush", row_digests.note_new_rows)
    event.listen(factory, "before_commit", _cover_before_commit)
    event.listen(factory, "after_commit", row_digests.forget_pending)
    event.listen(factory, "after_rollback", row_digests.forget_pending)


@dataclass(frozen=True)
class ChainHead:
    """The newest event: its id (the sequence number) and hash. ``0:GENESIS`` when empty."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash}

    @classmethod
    def parse(cls, text_: str) -> ChainHead:
        """``SEQ:HASH`` as :func:`chain_head` prints it."""
        seq, sep, digest = text_.strip().partition(":")
        digest = digest.lower()
        if (
            not sep
            or not seq.isdigit()
            or len(digest) != 64
            or any(c not in "0123456789abcdef" for c in digest)
        ):
            raise ValueError(
                f"chain head {text_!r} is not SEQ:HASH (a row id, a colon, 64 hex digits)"
            )
        return cls(int(seq), digest)


def chain_head(session: Session) -> ChainHead:
    row = session.execute(
        select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).one_or_none()
    return ChainHead(0, GENESIS) if row is None else ChainHead(int(row[0]), str(row[1]))


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
