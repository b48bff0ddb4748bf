"""Provenance-database sessions for flow tasks: an engine made for one block of work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

from provenance.db import make_engine, session_factory


@contextmanager
def engine_sessions(db_url: str | None) -> Iterator[sessionmaker[Session]]:
    """Sessions on a new engine for ``db_url`` (default: the configured database).

    Tasks may run in worker processes, so each opens its own engine rather than sharing
    one; disposing it on the way out leaves no pooled connection behind in the worker.
    """
    engine = make_engine(db_url)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


@contextmanager
def transaction(db_url: str | None) -> Iterator[Session]:
    """One session in one transaction on a new engine: committed when the block ends, rolled
    back if it raises; the engine is disposed afterwards."""
    with engine_sessions(db_url) as sessions, sessions.begin() as session:
        yield session
