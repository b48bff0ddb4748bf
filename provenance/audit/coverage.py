"""Check the ledger tables' live rows against the digests the audit chain recorded for them.

Every ``covers`` entry of every event (:mod:`provenance.row_digests`) is recomputed
from the rows as stored now. A row edited in place (UPDATE with the triggers dropped,
SQLite ``REPLACE``), deleted, or inserted without a covering event is a finding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.models import AuditEvent
from provenance.row_digests import (
    COVERED_COLUMNS,
    DIGEST_SCHEME,
    digest_rows,
    expand_ranges,
    id_ranges,
    merkle_root,
    pending_rows,
)


@dataclass(frozen=True)
class CoverageFinding:
    ref: str  # e.g. "consent_events rows 3"
    detail: str


def _ids_text(ids: list[int]) -> str:
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in id_ranges(ids))


# The ledgers that decide what may be trained on and what the prompt screen blocks.
ELIGIBILITY_TABLES = (
    "consent_events",
    "licence_assertions",
    "credits",
    "parties",
    "party_aliases",
    "content_credentials",
)
SCREEN_TABLES = ("parties", "party_aliases", "consent_events")


class LedgerTampered(RuntimeError):
    """A ledger row differs from what the audit chain recorded: refuse to decide on it."""


def check_row_coverage(
    session: Session, *, tables: tuple[str, ...] | None = None
) -> tuple[int, list[CoverageFinding]]:
    """Recompute every covered row's digest (of ``tables``, default all); return the number
    of live rows and the findings.

    Rows this session inserted and will cover with its next event (or at commit) count as
    covered: they are the application's own, not yet recorded.
    """
    wanted = tuple(COVERED_COLUMNS) if tables is None else tables
    connection = session.connection()
    live = {table: digest_rows(connection, table) for table in wanted}
    covered: dict[str, set[int]] = {table: set() for table in wanted}
    for table, own_rows in pending_rows(session).items():
        if table in covered:
            covered[table].update(own_rows)
    findings: list[CoverageFinding] = []
    events = session.execute(
        select(AuditEvent.id, AuditEvent.payload)
        .where(AuditEvent.payload.like('%"covers":%'))
        .order_by(AuditEvent.id)
    )
    for event_id, payload in events:
        try:
            covers = json.loads(payload).get("covers")
        except (ValueError, AttributeError):
            continue  # not a JSON object: the chain check reports the altered row
        if not isinstance(covers, list):
            continue
        for entry in covers:
            name = entry.get("table") if isinstance(entry, dict) else None
            table = name if isinstance(name, str) else ""
            if tables is not None and table in COVERED_COLUMNS and table not in live:
                continue  # a table this check was not asked about
            if table not in live or entry.get("scheme", DIGEST_SCHEME) != DIGEST_SCHEME:
                findings.append(
                    CoverageFinding(
                        f"audit event {event_id}", f"covers an unknown table or scheme: {entry!r}"
                    )
                )
                continue
            try:
                ids = expand_ranges(entry.get("ids"))
            except ValueError as exc:
                findings.append(CoverageFinding(f"audit event {event_id}", str(exc)))
                continue
            covered[table].update(ids)
            rows = live[table]
            missing = [i for i in ids if i not in rows]
            if missing:
                findings.append(
                    CoverageFinding(
                        f"{table} rows {_ids_text(missing)}",
                        f"deleted after audit event {event_id} recorded them",
                    )
                )
                continue
            if merkle_root([rows[i] for i in ids]) != entry.get("root"):
                findings.append(
                    CoverageFinding(
                        f"{table} rows {_ids_text(ids)}",
                        f"changed since audit event {event_id} recorded their digest",
                    )
                )
    for table, rows in live.items():
        uncovered = sorted(set(rows) - covered[table])
        if uncovered:
            findings.append(
                CoverageFinding(
                    f"{table} rows {_ids_text(uncovered)}",
                    "no audit event covers them: inserted outside fairchord, or the event "
                    "that recorded them is gone",
                )
            )
    return sum(len(rows) for rows in live.values()), findings


def require_covered(session: Session, tables: tuple[str, ...], *, purpose: str) -> None:
    """Raise :class:`LedgerTampered` when any row of ``tables`` differs from the chain."""
    _, findings = check_row_coverage(session, tables=tables)
    if findings:
        shown = "; ".join(f"{f.ref}: {f.detail}" for f in findings[:3])
        more = f" (and {len(findings) - 3} more)" if len(findings) > 3 else ""
        raise LedgerTampered(
            f"refusing {purpose}: the ledger differs from the audit chain: {shown}{more}; "
            "run `fairchord audit verify`"
        )
