"""append-only ledger tables refuse an INSERT that would replace a row

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

SQLite's ``INSERT OR REPLACE`` (and ``REPLACE INTO``) resolves a primary key
or UNIQUE conflict by deleting the old row without firing its DELETE trigger
(unless ``recursive_triggers`` is on), so the UPDATE/DELETE triggers of 0002
let it rewrite history. Here a BEFORE INSERT trigger on each ledger table
refuses any row whose primary key or UNIQUE key already exists; a plain
duplicate INSERT still fails, now with the append-only message.

PostgreSQL needs nothing new: ``INSERT ... ON CONFLICT DO UPDATE`` fires the
BEFORE UPDATE trigger of 0002 on the existing row, which rejects it.

Plain CREATE/DROP TRIGGER: no table is rebuilt.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each table's primary and UNIQUE keys, frozen here on purpose: a migration must
# not change when the models do. A key whose new value is NULL matches nothing.
# (On SQLite NEW.id is -1 while the id is still to be assigned; ids are positive.)
UNIQUE_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "consent_events": (("id",), ("dedupe_key",)),
    "audit_log": (("id",), ("prev_hash",), ("hash",)),
    "training_run_members": (("id",), ("training_run_id", "recording_id")),
    "gate_decisions": (("id",),),
}


def _existing_row(table: str, columns: tuple[str, ...]) -> str:
    match = " AND ".join(f"{column} = NEW.{column}" for column in columns)
    return f"EXISTS (SELECT 1 FROM {table} WHERE {match})"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, keys in UNIQUE_KEYS.items():
        clash = " OR ".join(_existing_row(table, columns) for columns in keys)
        op.execute(
            f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} WHEN {clash} "
            f"BEGIN SELECT RAISE(ABORT, "
            f"'append-only table {table}: INSERT over an existing row rejected'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in UNIQUE_KEYS:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_replace")
