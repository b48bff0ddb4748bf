"""Row digests: how the hash chain covers the rows of the ledger tables.

A ledger row's digest is the sha256 of a canonical JSON object naming its table
and the values of its covered columns, read back from the database (so writing
and verifying compute it from the same stored values). Every ledger row an
application session inserts is covered by the next audit event the session
appends: the event's payload carries, under ``"covers"``, one entry per table::

    {"table": "consent_events", "ids": [[7, 7]], "count": 1, "root": "<sha256>"}

``ids`` are inclusive id ranges; ``root`` is the Merkle root (:func:`merkle_root`)
of the rows' digests in id order, which for a single row is its digest. Bulk
inserts (a snapshot's members) are covered by one entry.

The covered columns are frozen per table in :data:`COVERED_COLUMNS`. A table
whose rows are edited by design lists only the columns that never change; those
changes are checked against the chain elsewhere (a gate index's thresholds
against its calibration event, :mod:`provenance.chain_facts`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy.orm import Session, UOWTransaction

from provenance.models import Base

DIGEST_SCHEME = "row-digest/1"

# Table -> the columns a row digest covers. Frozen on purpose: changing a list changes
# every digest of that table, so a new list needs a new DIGEST_SCHEME.
COVERED_COLUMNS: dict[str, tuple[str, ...]] = {
    "consent_events": (
        "id",
        "party_id",
        "recording_id",
        "source_id",
        "action",
        "purpose",
        "effective_at",
        "recorded_at",
        "origin",
        "evidence",
        "dedupe_key",
    ),
    "licence_assertions": (
        "id",
        "recording_id",
        "declared",
        "concluded",
        "conclusion_reason",
        "asserted_by",
        "fact_source",
        "evidence_uri",
        "evidence_sha256",
        "note",
        "asserted_at",
    ),
    "training_run_members": (
        "id",
        "training_run_id",
        "recording_id",
        "sha256",
        "concluded_licence",
        "licence_assertion_id",
        "consent_state",
        "consent_event_id",
        "leaf_hash",
    ),
    "gate_decisions": (
        "id",
        "generation_id",
        "stage",
        "verdict",
        "reasons",
        "scores",
        "nearest",
        "thresholds",
        "index_id",
        "audio_sha256",
        "created_at",
    ),
    "parties": ("id", "name", "normalized_name", "kind", "created_at"),
    "party_aliases": ("id", "party_id", "alias", "normalized_alias"),
    "credits": ("id", "recording_id", "party_id", "role", "fact_source"),
    "content_credentials": (
        "id",
        "generation_id",
        "recording_id",
        "status",
        "manifest_label",
        "signer",
        "signer_sha256",
        "trusted",
        "digital_source_type",
        "claims",
        "validation",
        "file_sha256",
        "note",
        "created_at",
    ),
    # ``config`` is refreshed when the gate's cohort changes: not covered.
    "embedders": ("id", "sha256", "uri", "kind", "created_at"),
    # ``thresholds`` change at calibration: checked against the calibration event instead.
    "embedding_indexes": (
        "id",
        "training_run_id",
        "embedder_sha256",
        "sha256",
        "uri",
        "vectors",
        "created_at",
    ),
}

_PENDING_KEY = "fairchord.uncovered_rows"
_CHUNK = 500  # ids per IN (...) query, well under SQLite's parameter limit


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return value


def row_digest(table: str, row: dict[str, Any]) -> str:
    """The digest of one row, given its covered columns' values as read from the database."""
    body = {"table": table, "row": {c: _plain(row[c]) for c in COVERED_COLUMNS[table]}}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def digest_rows(
    connection: Connection, table: str, ids: Iterable[int] | None = None
) -> dict[int, str]:
    """Row id -> digest for ``ids`` (default: every row) of ``table``, as stored now."""
    t = _table(table)
    columns = [t.c[name] for name in COVERED_COLUMNS[table]]
    if ids is None:
        batches: Iterator[list[int] | None] = iter([None])
    else:
        wanted = sorted(set(ids))
        batches = iter([wanted[i : i + _CHUNK] for i in range(0, len(wanted), _CHUNK)])
    digests: dict[int, str] = {}
    for batch in batches:
        query = select(*columns)
        if batch is not None:
            query = query.where(t.c.id.in_(batch))
        for row in connection.execute(query).mappings():
            digests[int(row["id"])] = row_digest(table, dict(row))
    return digests


def merkle_root(leaves: list[str]) -> str:
    """Binary Merkle root over hex leaves (pairs hashed as sha256(left || right), an odd
    last node carried up); one leaf is its own root, none is sha256 of nothing."""
    if not leaves:
        return hashlib.sha256(b"").hexdigest()
    level = list(leaves)
    while len(level) > 1:
        nxt = [
            hashlib.sha256(bytes.fromhex(level[i]) + bytes.fromhex(level[i + 1])).hexdigest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def id_ranges(ids: Iterable[int]) -> list[list[int]]:
    """Sorted ids as inclusive ``[first, last]`` runs: [1, 2, 3, 7] -> [[1, 3], [7, 7]]."""
    ranges: list[list[int]] = []
    for i in sorted(set(ids)):
        if ranges and ranges[-1][1] == i - 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return ranges


def expand_ranges(ranges: Any) -> list[int]:
    """The ids of :func:`id_ranges` output; raises ``ValueError`` on anything else."""
    if not isinstance(ranges, list):
        raise ValueError(f"id ranges must be a list, got {ranges!r}")
    ids: list[int] = []
    for pair in ranges:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(v, int) for v in pair)
            or pair[0] > pair[1]
        ):
            raise ValueError(f"bad id range {pair!r}")
        ids.extend(range(pair[0], pair[1] + 1))
    return ids


def cover_entry(table: str, digests: dict[int, str]) -> dict[str, Any]:
    """The ``covers`` entry for ``digests`` (row id -> digest) of one table."""
    ids = sorted(digests)
    return {
        "table": table,
        "scheme": DIGEST_SCHEME,
        "ids": id_ranges(ids),
        "count": len(ids),
        "root": merkle_root([digests[i] for i in ids]),
    }


# --- session hooks ---------------------------------------------------------------------------


def note_new_rows(session: Session, _flush_context: UOWTransaction) -> None:
    """``after_flush``: remember the ledger rows this flush inserted, until an event covers
    them. (``session.new`` still lists the flushed objects here, now with their ids.)"""
    pending: dict[str, set[int]] = session.info.setdefault(_PENDING_KEY, {})
    for obj in session.new:
        table = getattr(obj, "__tablename__", None)
        if table in COVERED_COLUMNS and getattr(obj, "id", None) is not None:
            pending.setdefault(table, set()).add(int(obj.id))


def pending_rows(session: Session) -> dict[str, set[int]]:
    """The ledger rows this session inserted that no event covers yet."""
    pending: dict[str, set[int]] = session.info.get(_PENDING_KEY, {})
    return {table: set(ids) for table, ids in pending.items()}


def has_pending(session: Session) -> bool:
    return any(session.info.get(_PENDING_KEY, {}).values())


def forget_pending(session: Session) -> None:
    """After commit or rollback nothing is pending any more."""
    session.info.pop(_PENDING_KEY, None)


def take_pending_covers(session: Session) -> list[dict[str, Any]]:
    """The ``covers`` entries for the rows noted since the last event, read back from the
    database; clears the note. Rows a rolled-back savepoint removed are left out."""
    pending: dict[str, set[int]] = session.info.pop(_PENDING_KEY, {})
    covers = []
    connection = session.connection()
    for table in sorted(pending):
        digests = digest_rows(connection, table, pending[table])
        if digests:
            covers.append(cover_entry(table, digests))
    return covers
