"""Tamper with the provenance DB the way an administrator with raw SQL access could."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, text


def as_admin(engine: Engine, statements: Sequence[str], *, tables: Sequence[str] = ()) -> None:
    """Run raw SQL with the append-only triggers of ``tables`` out of the way.

    SQLite: the triggers are dropped (an admin can; they stay dropped, as an attacker
    would not bother to put them back). PostgreSQL: ``session_replication_role =
    replica`` switches user triggers off for the transaction, which a superuser can do.
    """
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            for table in tables:
                names = conn.execute(
                    text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
                    {"t": table},
                ).scalars()
                for name in list(names):
                    conn.execute(text(f"DROP TRIGGER {name}"))
        else:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in statements:
            conn.exec_driver_sql(statement)
