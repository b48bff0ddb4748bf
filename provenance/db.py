"""Engines and sessions for the provenance database (SQLite or PostgreSQL)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from provenance.settings import database_url


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` (default: :func:`database_url`).

    SQLite connections get ``PRAGMA foreign_keys=ON`` and a busy timeout, and
    every transaction starts with ``BEGIN IMMEDIATE`` so two writers queue for
    the write lock instead of failing when a read transaction upgrades.
    """
    url = url or database_url()
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 60})
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for the provenance DB; each covers the ledger rows it inserts in the audit
    chain (:func:`provenance.audit_log.cover_ledger_rows`)."""
    from provenance.audit_log import cover_ledger_rows

    factory = sessionmaker(bind=engine, expire_on_commit=False)
    cover_ledger_rows(factory)
    return factory
