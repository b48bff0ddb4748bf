"""The hash chain catches an edited, a deleted and a swapped audit_log row; so does the CLI."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from flows.cli import app
from provenance.audit_log import append_event, verify_chain
from provenance.db import session_factory

TRIGGERS_SQLITE = {
    "audit_log_no_update": "UPDATE",
    "audit_log_no_delete": "DELETE",
}


def _chain(engine: Engine, n: int = 5) -> None:
    with session_factory(engine).begin() as s:
        for i in range(n):
            append_event(s, "test.event", entity="thing", entity_id=i, payload={"i": i})


def _bypassing_triggers(engine: Engine, tamper: Callable[[Session], None]) -> None:
    """Tamper the way someone with raw database access would: around the triggers."""
    with session_factory(engine).begin() as s:
        if engine.dialect.name == "sqlite":
            for name in TRIGGERS_SQLITE:
                s.execute(text(f"DROP TRIGGER {name}"))
            tamper(s)
            for name, verb in TRIGGERS_SQLITE.items():
                s.execute(
                    text(
                        f"CREATE TRIGGER {name} BEFORE {verb} ON audit_log BEGIN "
                        f"SELECT RAISE(ABORT, 'append-only table audit_log: {verb} rejected'); END"
                    )
                )
        else:
            s.execute(text("SET LOCAL session_replication_role = replica"))
            tamper(s)


def _problems(engine: Engine) -> list[str]:
    with session_factory(engine)() as s:
        rows, problems = verify_chain(s)
    return [str(p) for p in problems]


def test_intact_chain_verifies(engine: Engine) -> None:
    _chain(engine)
    with session_factory(engine)() as s:
        assert verify_chain(s) == (5, [])


def test_edited_row_is_named(engine: Engine) -> None:
    _chain(engine)
    _bypassing_triggers(
        engine,
        lambda s: s.execute(text("UPDATE audit_log SET payload = :p WHERE id = 3"), {"p": "[]"}),
    )
    assert _problems(engine) == ["audit_log row 3: altered: content does not match its hash"]


def test_deleted_row_is_named(engine: Engine) -> None:
    _chain(engine)
    _bypassing_triggers(engine, lambda s: s.execute(text("DELETE FROM audit_log WHERE id = 2")))
    problems = _problems(engine)
    assert len(problems) == 1 and problems[0].startswith("audit_log row 3: broken_link")


def test_swapped_pair_is_found(engine: Engine) -> None:
    _chain(engine)

    def swap(s: Session) -> None:
        cols = "occurred_at, actor, action, entity, entity_id, payload, prev_hash, hash"
        rows = {
            r[0]: r[1:]
            for r in s.execute(text(f"SELECT id, {cols} FROM audit_log WHERE id IN (2, 3)"))
        }
        # Park row 2 out of the way (prev_hash and hash are unique), then swap contents.
        s.execute(text("DELETE FROM audit_log WHERE id IN (2, 3)"))
        for rid, other in ((2, 3), (3, 2)):
            values = dict(zip(cols.split(", "), rows[other], strict=True))
            s.execute(
                text(
                    f"INSERT INTO audit_log (id, {cols}) VALUES (:id, :"
                    + ", :".join(cols.split(", "))
                    + ")"
                ),
                {"id": rid, **values},
            )

    _bypassing_triggers(engine, swap)
    problems = _problems(engine)
    assert problems and problems[0].startswith("audit_log row 2: broken_link"), problems


def test_cli_verify_exit_codes(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIRCHORD_DB_URL", db_url)
    _chain(engine)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--json"])
    assert ok.exit_code == 0, ok.output
    _bypassing_triggers(
        engine, lambda s: s.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE id = 4"))
    )
    bad = runner.invoke(app, ["audit", "verify"])
    assert bad.exit_code == 1
    assert "audit_log row 4" in bad.output
