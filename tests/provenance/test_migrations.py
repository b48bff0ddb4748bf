"""The real migrations build the schema from empty, take it back down, and match the models."""

from __future__ import annotations

from sqlalchemy import inspect

from provenance import migrate
from provenance.db import make_engine
from provenance.models import Base


def test_upgrade_check_downgrade(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision(engine)
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        migrate.check(engine)  # raises if the models drifted from the migrations
        migrate.downgrade(engine, "base")
        assert migrate.current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(engine)  # and back up again cleanly
        assert migrate.current_revision(engine) == migrate.head_revision(engine)
    finally:
        engine.dispose()
