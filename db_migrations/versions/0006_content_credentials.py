"""content credentials: C2PA manifests signed on generated files and read at ingest

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

One row per credential: the one fairchord signs onto a generated file (or the
note that it wrote the file unsigned), and the one it reads from an incoming
file, valid or not. The table is append-only like the other ledgers, and its
rows are covered by the audit chain (:data:`provenance.row_digests.COVERED_COLUMNS`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import provenance.models.base

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "content_credentials"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation_id", sa.Integer(), nullable=True),
        sa.Column("recording_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("manifest_label", sa.String(length=256), nullable=True),
        sa.Column("signer", sa.String(length=512), nullable=True),
        sa.Column("signer_sha256", sa.String(length=64), nullable=True),
        sa.Column("trusted", sa.Boolean(), nullable=False),
        sa.Column("digital_source_type", sa.String(length=256), nullable=True),
        sa.Column("claims", sa.JSON(), nullable=False),
        sa.Column("validation", sa.JSON(), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", provenance.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(CASE WHEN generation_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN recording_id IS NULL THEN 0 ELSE 1 END) = 1",
            name=op.f("ck_content_credentials_one_subject"),
        ),
        sa.CheckConstraint(
            "status IN ('signed', 'unsigned', 'valid', 'invalid')",
            name=op.f("ck_content_credentials_status"),
        ),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["generations.id"],
            name=op.f("fk_content_credentials_generation_id_generations"),
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_content_credentials_recording_id_recordings"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_credentials")),
    )
    op.create_index(
        op.f("ix_content_credentials_generation_id"), TABLE, ["generation_id"], unique=False
    )
    op.create_index(
        op.f("ix_content_credentials_recording_id"), TABLE, ["recording_id"], unique=False
    )
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{verb.lower()} BEFORE {verb} ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, 'append-only table {TABLE}: {verb} rejected'); END"
            )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_replace BEFORE INSERT ON {TABLE} "
            f"WHEN EXISTS (SELECT 1 FROM {TABLE} WHERE id = NEW.id) "
            f"BEGIN SELECT RAISE(ABORT, "
            f"'append-only table {TABLE}: INSERT over an existing row rejected'); END"
        )
        return
    # fairchord_reject_change() comes from 0002.
    op.execute(
        f"CREATE TRIGGER {TABLE}_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE} "
        "FOR EACH ROW EXECUTE FUNCTION fairchord_reject_change()"
    )
    op.execute(
        f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
        "FOR EACH STATEMENT EXECUTE FUNCTION fairchord_reject_change()"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_content_credentials_recording_id"), table_name=TABLE)
    op.drop_index(op.f("ix_content_credentials_generation_id"), table_name=TABLE)
    op.drop_table(TABLE)
