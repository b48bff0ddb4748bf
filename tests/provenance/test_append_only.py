"""The database itself rejects UPDATE, DELETE, TRUNCATE and REPLACE/upserts on the ledger tables."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, delete, inspect, text, update
from sqlalchemy.exc import DBAPIError

from provenance.audit_log import append_event
from provenance.db import session_factory
from provenance.models import (
    APPEND_ONLY_TABLES,
    ConsentEvent,
    ContentCredential,
    Credit,
    GateDecision,
    LicenceAssertion,
    Party,
    PartyAlias,
    Recording,
    TrainingRun,
    TrainingRunMember,
)

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _fill(engine: Engine) -> None:
    with session_factory(engine).begin() as s:
        party = Party(name="A", normalized_name="a")
        rec = Recording(sha256="a" * 64, size_bytes=1)
        run = TrainingRun(
            policy_name="p",
            policy_version="1",
            policy_sha256="b" * 64,
            config_name="debug",
            snapshot_at=NOW,
        )
        s.add_all([party, rec, run])
        s.flush()
        s.add(
            ConsentEvent(
                party_id=party.id,
                action="opt_out",
                purpose="training",
                effective_at=NOW,
                origin="cli",
                dedupe_key="d" * 64,
            )
        )
        s.add(
            TrainingRunMember(
                training_run_id=run.id,
                recording_id=rec.id,
                sha256=rec.sha256,
                concluded_licence="MIT",
                consent_state="none",
                leaf_hash="c" * 64,
            )
        )
        s.add(GateDecision(stage="similarity_gate", verdict="allow"))
        s.add(
            LicenceAssertion(
                recording_id=rec.id, declared="MIT", concluded="MIT", asserted_by="test"
            )
        )
        s.add(Credit(recording_id=rec.id, party_id=party.id, role="artist"))
        s.add(PartyAlias(party_id=party.id, alias="B", normalized_alias="b"))
        s.add(ContentCredential(recording_id=rec.id, status="invalid", claims={}, validation={}))
        append_event(s, "test.event", entity="test", payload={"n": 1})


MODELS = {
    "consent_events": ConsentEvent,
    "training_run_members": TrainingRunMember,
    "gate_decisions": GateDecision,
    "licence_assertions": LicenceAssertion,
    "credits": Credit,
    "party_aliases": PartyAlias,
    "parties": Party,
    "content_credentials": ContentCredential,
}


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
@pytest.mark.parametrize("statement", ["UPDATE", "DELETE", "TRUNCATE", "ORM_UPDATE", "ORM_DELETE"])
def test_ledger_rejects_changes(engine: Engine, table: str, statement: str) -> None:
    _fill(engine)
    sqlite = engine.dialect.name == "sqlite"
    if statement == "TRUNCATE" and sqlite:
        pytest.skip("SQLite has no TRUNCATE (its truncate optimisation is disabled by triggers)")
    sql = {
        "UPDATE": f"UPDATE {table} SET id = id",
        "DELETE": f"DELETE FROM {table}",
        "TRUNCATE": f"TRUNCATE {table} CASCADE",
    }
    with pytest.raises(DBAPIError, match="append-only"):
        with session_factory(engine).begin() as s:
            if statement in sql:
                s.execute(text(sql[statement]))
            else:
                from provenance.models import AuditEvent

                model = MODELS.get(table, AuditEvent)
                if statement == "ORM_UPDATE":
                    s.execute(
                        update(model)
                        .values(id=model.id)
                        .execution_options(synchronize_session=False)
                    )
                else:
                    s.execute(delete(model).execution_options(synchronize_session=False))
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() >= 1


def test_inserts_still_work(engine: Engine) -> None:
    _fill(engine)
    _fill_more = session_factory(engine)
    with _fill_more.begin() as s:
        append_event(s, "test.second", entity="test")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 2


# A column each attack tries to rewrite, and the table's UNIQUE key besides ``id``.
REWRITE = {
    "consent_events": ("action", "'opt_in'", "dedupe_key"),
    "audit_log": ("payload", "'{}'", "hash"),
    "training_run_members": ("concluded_licence", "'CC0-1.0'", "training_run_id, recording_id"),
    "gate_decisions": ("verdict", "'block'", None),
    "licence_assertions": ("concluded", "'CC-BY-4.0'", None),
    "credits": ("fact_source", "'edited'", "recording_id, party_id, role"),
    "party_aliases": ("alias", "'C'", "party_id, normalized_alias"),
    "parties": ("name", "'Z'", "normalized_name"),
    "content_credentials": ("status", "'valid'", None),
}


def _rows(engine: Engine, table: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
@pytest.mark.parametrize("attack", ["REPLACE", "ON_CONFLICT_DO_UPDATE"])
@pytest.mark.parametrize("key", ["id", "unique"])
def test_ledger_rejects_insert_over_a_row(
    engine: Engine, table: str, attack: str, key: str
) -> None:
    """Re-inserting a row's key with new content (SQLite REPLACE, an upsert) is refused."""
    _fill(engine)
    column, value, unique_key = REWRITE[table]
    if attack == "REPLACE" and engine.dialect.name != "sqlite":
        pytest.skip("REPLACE is SQLite's; PostgreSQL has no such statement")
    if key == "unique" and unique_key is None:
        pytest.skip(f"{table} has no UNIQUE key besides its primary key")
    columns = [c["name"] for c in inspect(engine).get_columns(table)]
    if key == "unique":
        columns.remove("id")  # a new id: the copy clashes on the other key only
    target = ", ".join(columns)
    source = ", ".join(value if c == column else c for c in columns)
    conflict = "id" if key == "id" else unique_key
    sql = {
        "REPLACE": f"INSERT OR REPLACE INTO {table} ({target}) SELECT {source} FROM {table}",
        # `WHERE true` keeps SQLite's parser from reading ON CONFLICT as a join clause.
        "ON_CONFLICT_DO_UPDATE": (
            f"INSERT INTO {table} ({target}) SELECT {source} FROM {table} WHERE true "
            f"ON CONFLICT ({conflict}) DO UPDATE SET {column} = excluded.{column}"
        ),
    }[attack]
    before = _rows(engine, table)
    assert len(before) == 1
    with pytest.raises(DBAPIError, match="append-only"):
        with session_factory(engine).begin() as s:
            s.execute(text(sql))
    assert _rows(engine, table) == before
