"""Throwaway provenance databases: a SQLite file or a fresh PostgreSQL database per test.

Each PostgreSQL database is created on the server named by
``FAIRCHORD_TEST_PG_ADMIN_URL`` (default: the local server's ``postgres``
database) and dropped afterwards, so runs never share state.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ADMIN_URL_ENV = "FAIRCHORD_TEST_PG_ADMIN_URL"
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ENGINES = ("sqlite", "postgresql")


def pg_admin_url() -> str:
    return os.environ.get(PG_ADMIN_URL_ENV, DEFAULT_PG_ADMIN_URL)


@contextmanager
def throwaway_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of a new, empty database of ``kind``; remove it afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'provenance.sqlite'}"
        return
    if kind != "postgresql":
        raise ValueError(f"unknown engine kind {kind!r}; expected one of {ENGINES}")
    name = f"fairchord_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_admin_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
