"""indexes for the audit: ledger rows newer than a snapshot

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

`audit taint` and `audit licenses` start from what changed after a training
run's snapshot: consent events recorded or effective after it, and licence
assertions made after it. These indexes let both engines find those rows by
range instead of reading the whole ledger (200 k consent events and 1 M
assertions at the scale the audit is measured at).

Plain CREATE/DROP INDEX on both engines: no table is rebuilt, so SQLite keeps
the append-only triggers of 0002 and the rows as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index, table, columns), frozen here on purpose: a migration must not change when the models do.
INDEXES = (
    ("ix_consent_events_recorded_at", "consent_events", ["recorded_at"]),
    ("ix_consent_events_effective_at", "consent_events", ["effective_at"]),
    ("ix_licence_assertions_asserted_at", "licence_assertions", ["asserted_at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
