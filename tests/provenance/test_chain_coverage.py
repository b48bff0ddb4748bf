"""Every ledger row is covered by the audit chain: a row edited, replaced, deleted or inserted
behind fairchord's back fails `audit verify`, on both engines, with the triggers dropped."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError

from provenance import migrate
from provenance.audit.integrity import verify_everything
from provenance.audit_log import append_event
from provenance.consent import ConsentSubject, current_consent, record_consent
from provenance.db import make_engine, session_factory
from provenance.licences import current_licence, record_licence
from provenance.models import AuditEvent, Recording, TrainingRun, TrainingRunMember
from provenance.parties import add_credit, get_or_create_party
from tests.common.ledger import as_admin

DAY = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _world(engine: Engine) -> dict[str, int]:
    """A recording with an artist (and an alias), a licence and an opt-in, as fairchord writes
    them; committed."""
    with session_factory(engine).begin() as s:
        rec = Recording(sha256="a" * 64, size_bytes=1, title="Tune")
        s.add(rec)
        s.flush()
        party = get_or_create_party(s, "Ada Lovelace", aliases=["Countess"])
        add_credit(s, recording_id=rec.id, party_id=party.id, role="artist")
        record_licence(s, recording_id=rec.id, declared="LicenseRef-Drascula", asserted_by="t")
        event = record_consent(
            s,
            subject=ConsentSubject("recording", rec.id),
            action="opt_in",
            purpose="training",
            effective_at=DAY,
            origin="cli",
        )
        assert event is not None
        return {"recording": rec.id, "party": party.id, "consent": event.id}


def _ledger_problems(engine: Engine) -> list[str]:
    with session_factory(engine)() as s:
        report = verify_everything(s)
    return [str(d) for d in report.discrepancies if d.kind == "ledger"]


def _all_problems(engine: Engine) -> list[str]:
    with session_factory(engine)() as s:
        return [str(d) for d in verify_everything(s).discrepancies]


def test_rows_written_by_fairchord_are_covered(engine: Engine) -> None:
    _world(engine)
    assert _all_problems(engine) == []
    with session_factory(engine)() as s:
        report = verify_everything(s)
    # parties, aliases, credits, licence assertions, consent events
    assert report.checked["ledger"] == 5


@pytest.mark.parametrize("attack", ["UPDATE", "REPLACE"])
def test_consent_event_changed_in_place_fails_verify(engine: Engine, attack: str) -> None:
    world = _world(engine)
    if attack == "REPLACE" and engine.dialect.name != "sqlite":
        pytest.skip("REPLACE is SQLite's")
    cid = world["consent"]
    columns = (
        "id, party_id, recording_id, source_id, action, purpose, effective_at, recorded_at, "
        "origin, evidence, dedupe_key"
    )
    sql = {
        "UPDATE": f"UPDATE consent_events SET action = 'opt_out' WHERE id = {cid}",
        "REPLACE": (
            f"INSERT OR REPLACE INTO consent_events ({columns}) SELECT "
            + columns.replace("action", "'opt_out'")
            + f" FROM consent_events WHERE id = {cid}"
        ),
    }[attack]
    as_admin(engine, [sql], tables=["consent_events"])
    with session_factory(engine)() as s:  # the attack worked: the ledger now says opt-out
        state = current_consent(s, ConsentSubject("recording", world["recording"]), "training")
        assert state.state == "opted_out"
    assert _ledger_problems(engine) == [
        f"ledger consent_events rows {cid}: changed since audit event "
        f"{_covering_event(engine, 'consent_events', cid)} recorded their digest"
    ]


def _covering_event(engine: Engine, table: str, row_id: int) -> int:
    with engine.connect() as conn:
        for event_id, payload in conn.execute(
            select(AuditEvent.id, AuditEvent.payload).order_by(AuditEvent.id)
        ):
            for entry in json.loads(payload).get("covers", []):
                if entry["table"] == table and any(a <= row_id <= b for a, b in entry["ids"]):
                    return int(event_id)
    raise AssertionError(f"no event covers {table} {row_id}")


@pytest.mark.parametrize(
    ("table", "change"),
    [
        ("licence_assertions", "concluded = 'CC-BY-4.0'"),
        ("credits", "role = 'composer'"),
        ("party_aliases", "alias = 'Somebody Else'"),
        ("parties", "normalized_name = 'someone else'"),
    ],
)
def test_one_row_update_of_a_deciding_fact_fails_verify(
    engine: Engine, table: str, change: str
) -> None:
    _world(engine)
    as_admin(engine, [f"UPDATE {table} SET {change}"], tables=[table])
    problems = _ledger_problems(engine)
    assert len(problems) == 1 and problems[0].startswith(f"ledger {table} rows 1: changed")
    if table == "licence_assertions":
        with session_factory(engine)() as s:
            assertion = current_licence(s, 1)
            assert assertion is not None and assertion.concluded == "CC-BY-4.0"


def test_the_database_refuses_the_update_while_the_triggers_stand(engine: Engine) -> None:
    _world(engine)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE licence_assertions SET concluded = 'CC-BY-4.0'"))


def test_deleted_and_smuggled_rows_are_named(engine: Engine) -> None:
    world = _world(engine)
    cid = world["consent"]
    as_admin(
        engine,
        [
            f"DELETE FROM consent_events WHERE id = {cid}",
            "INSERT INTO consent_events (id, recording_id, action, purpose, effective_at, "
            "recorded_at, origin) VALUES (99, 1, 'opt_out', 'any', '2026-01-01 00:00:00', "
            "'2026-01-01 00:00:00', 'cli')",
        ],
        tables=["consent_events"],
    )
    problems = _ledger_problems(engine)
    assert any(p.startswith(f"ledger consent_events rows {cid}: deleted") for p in problems)
    assert any(
        p.startswith("ledger consent_events rows 99: no audit event covers") for p in problems
    )


def test_a_bulk_insert_is_covered_by_one_entry(engine: Engine) -> None:
    with session_factory(engine).begin() as s:
        recs = [Recording(sha256=f"{i:064x}", size_bytes=1) for i in range(1, 6)]
        run = TrainingRun(
            policy_name="p",
            policy_version="1",
            policy_sha256="b" * 64,
            config_name="debug",
            snapshot_at=DAY,
        )
        s.add_all([*recs, run])
        s.flush()
        s.add_all(
            TrainingRunMember(
                training_run_id=run.id,
                recording_id=r.id,
                sha256=r.sha256,
                concluded_licence="LicenseRef-Drascula",
                consent_state="none",
                leaf_hash="c" * 64,
            )
            for r in recs
        )
        event = append_event(s, "test.members", entity="training_run", entity_id=run.id)
        covers = json.loads(event.payload)["covers"]
        assert covers == [
            {
                "table": "training_run_members",
                "scheme": "row-digest/1",
                "ids": [[1, 5]],
                "count": 5,
                "root": covers[0]["root"],
            }
        ]
    assert _ledger_problems(engine) == []
    as_admin(
        engine,
        ["UPDATE training_run_members SET concluded_licence = 'MIT' WHERE id = 3"],
        tables=["training_run_members"],
    )
    assert _ledger_problems(engine) == [
        "ledger training_run_members rows 1-5: changed since audit event 1 recorded their digest"
    ]


def test_rows_inserted_after_the_last_event_are_covered_at_commit(engine: Engine) -> None:
    with session_factory(engine).begin() as s:
        rec = Recording(sha256="e" * 64, size_bytes=1)
        s.add(rec)
        s.flush()
        get_or_create_party(s, "Grace Hopper")  # covered by party.created
        from provenance.models import Party

        s.add(Party(name="Direct", normalized_name="direct"))  # no event of its own
    with session_factory(engine)() as s:
        actions = list(s.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars())
    assert actions == ["party.created", "ledger.rows_covered"]
    assert _ledger_problems(engine) == []


def test_rows_stored_before_the_upgrade_are_covered_by_it(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine, "0004")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO parties (id, name, normalized_name, kind, created_at) VALUES "
                    "(1, 'Old', 'old', 'person', '2025-01-01 00:00:00')"
                )
            )
        migrate.upgrade(engine)
        with session_factory(engine)() as s:
            event = s.execute(select(AuditEvent)).scalar_one()
            assert event.action == "ledger.rows_covered"
            assert json.loads(event.payload)["covers"][0]["table"] == "parties"
        assert _all_problems(engine) == []
        as_admin(engine, ["UPDATE parties SET name = 'New'"], tables=["parties"])
        assert _ledger_problems(engine) == [
            "ledger parties rows 1: changed since audit event 1 recorded their digest"
        ]
    finally:
        engine.dispose()


def test_a_snapshot_refuses_a_ledger_edited_behind_the_chain(engine: Engine) -> None:
    from provenance.audit.coverage import LedgerTampered
    from provenance.policies import load_policy
    from provenance.snapshot import freeze_snapshot

    _world(engine)
    as_admin(
        engine,
        ["UPDATE licence_assertions SET concluded = 'CC-BY-4.0'"],
        tables=["licence_assertions"],
    )
    with (
        session_factory(engine)() as s,
        pytest.raises(LedgerTampered, match="licence_assertions rows 1: changed"),
    ):
        freeze_snapshot(
            s, policy=load_policy("research"), config_name="debug", config={}, feature_set_id=None
        )


def test_the_prompt_screen_refuses_an_alias_edited_behind_the_chain(engine: Engine) -> None:
    from generation.index import GateUnavailable
    from generation.pipeline import generate
    from generation.request import GenerationRequest
    from provenance.models import Checkpoint

    _world(engine)
    as_admin(engine, ["UPDATE party_aliases SET alias = 'Nobody'"], tables=["party_aliases"])
    with session_factory(engine)() as s, pytest.raises(GateUnavailable, match="party_aliases"):
        generate(
            s,
            GenerationRequest(prompt="in the style of Countess"),
            checkpoint=Checkpoint(id=1, training_run_id=1, sha256="0" * 64, uri="x", step=1),
            load_embedder=lambda: pytest.fail("nothing may load before the screen"),
        )
