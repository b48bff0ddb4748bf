"""The database itself rejects UPDATE, DELETE and TRUNCATE on the ledger tables."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, delete, text, update
from sqlalchemy.exc import DBAPIError

from provenance.audit_log import append_event
from provenance.db import session_factory
from provenance.models import (
    APPEND_ONLY_TABLES,
    ConsentEvent,
    GateDecision,
    Party,
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
        append_event(s, "test.event", entity="test", payload={"n": 1})


MODELS = {
    "consent_events": ConsentEvent,
    "training_run_members": TrainingRunMember,
    "gate_decisions": GateDecision,
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
