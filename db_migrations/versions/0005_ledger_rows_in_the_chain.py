"""ledger rows covered by the audit chain; licences, credits and parties append-only

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

From here on every row the application inserts into a ledger table is covered
by an audit event that records its digest (:mod:`provenance.row_digests`), and
``audit verify`` recomputes the digests from the live rows. This revision:

- makes ``licence_assertions``, ``credits``, ``party_aliases`` and ``parties``
  append-only like the ledgers of 0002/0004 (they decide eligibility and what
  the prompt screen blocks, and the code only ever inserts them);
- covers the rows already in the database with one ``ledger.rows_covered``
  event, so that rows written before this revision are vouched for from the
  moment of the upgrade on (an edit made before the upgrade cannot be told
  apart; the doc ``docs/tamper-evidence.md`` says so);
- adds ``training_runs.audit_head``, the chain head (``SEQ:HASH``) when the
  run's snapshot was frozen, which checkpoints carry out of the database.

The digest columns live in :data:`provenance.row_digests.COVERED_COLUMNS`,
which is frozen by its own ``DIGEST_SCHEME``; this migration must use the same
definition the verifier uses, so it imports it rather than copying it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each new append-only table's primary and UNIQUE keys, frozen here on purpose.
UNIQUE_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "licence_assertions": (("id",),),
    "credits": (("id",), ("recording_id", "party_id", "role")),
    "party_aliases": (("id",), ("party_id", "normalized_alias")),
    "parties": (("id",), ("normalized_name",)),
}


def _existing_row(table: str, columns: tuple[str, ...]) -> str:
    match = " AND ".join(f"{column} = NEW.{column}" for column in columns)
    return f"EXISTS (SELECT 1 FROM {table} WHERE {match})"


def _append_only() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table, keys in UNIQUE_KEYS.items():
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'append-only table {table}: {verb} rejected'); END"
                )
            clash = " OR ".join(_existing_row(table, columns) for columns in keys)
            op.execute(
                f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} WHEN {clash} "
                f"BEGIN SELECT RAISE(ABORT, "
                f"'append-only table {table}: INSERT over an existing row rejected'); END"
            )
        return
    # fairchord_reject_change() comes from 0002.
    for table in UNIQUE_KEYS:
        op.execute(
            f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION fairchord_reject_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION fairchord_reject_change()"
        )


def _cover_existing_rows() -> None:
    from provenance.audit_log import append_event_on
    from provenance.row_digests import COVERED_COLUMNS, cover_entry, digest_rows

    connection = op.get_bind()
    existing = set(sa.inspect(connection).get_table_names())
    covers = []
    for table in sorted(COVERED_COLUMNS):
        if table not in existing:  # a table a later revision creates
            continue
        digests = digest_rows(connection, table)
        if digests:
            covers.append(cover_entry(table, digests))
    if covers:
        append_event_on(
            connection,
            "ledger.rows_covered",
            entity="ledger",
            payload={"reason": "rows present at revision 0005", "covers": covers},
        )


def upgrade() -> None:
    op.add_column("training_runs", sa.Column("audit_head", sa.String(length=140), nullable=True))
    _append_only()
    _cover_existing_rows()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in UNIQUE_KEYS:
            for suffix in ("update", "delete", "replace"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{suffix}")
    else:
        for table in UNIQUE_KEYS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_column("audit_head")
