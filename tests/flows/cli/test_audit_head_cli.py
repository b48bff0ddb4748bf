"""`fairchord audit head`, `audit verify --expect-head`, and the heads that reports and
exports carry out of the database."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from flows.cli import app
from flows.cli.common import EXIT_BAD_INPUT
from provenance.audit.anchors import WITNESS_LOG
from provenance.audit_log import append_event, chain_head
from provenance.db import session_factory
from provenance.settings import fairchord_home
from tests.common.ledger import as_admin, build_recorded_run


def _chain(engine: Engine, n: int) -> None:
    with session_factory(engine).begin() as s:
        for i in range(n):
            append_event(s, "test.event", entity="thing", entity_id=i, payload={"i": i})


def test_head_and_expect_head(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRCHORD_DB_URL", db_url)
    _chain(engine, 4)
    runner = CliRunner()
    printed = runner.invoke(app, ["audit", "head"])
    assert printed.exit_code == 0, printed.output
    head = printed.output.strip()
    with session_factory(engine)() as s:
        assert head == str(chain_head(s)) and head.startswith("4:")
    as_json = json.loads(runner.invoke(app, ["audit", "head", "--json"]).output)
    assert as_json["head"] == head and as_json["seq"] == 4

    ok = runner.invoke(app, ["audit", "verify", "--expect-head", head])
    assert ok.exit_code == 0, ok.output

    bad_input = runner.invoke(app, ["audit", "verify", "--expect-head", "4:nothex"])
    assert bad_input.exit_code == EXIT_BAD_INPUT
    assert "SEQ:HASH" in bad_input.output

    as_admin(engine, ["DELETE FROM audit_log WHERE id > 2"], tables=["audit_log"])
    truncated = runner.invoke(app, ["audit", "verify", "--expect-head", head])
    assert truncated.exit_code == 1
    assert "its newest rows were removed" in truncated.output


def test_verify_checks_the_heads_it_handed_out(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --expect-head: `audit head` noted the head in the home's witness log."""
    monkeypatch.setenv("FAIRCHORD_DB_URL", db_url)
    _chain(engine, 3)
    runner = CliRunner()
    assert runner.invoke(app, ["audit", "head"]).exit_code == 0
    assert (fairchord_home() / WITNESS_LOG).is_file()
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    as_admin(engine, ["DELETE FROM audit_log WHERE id = 3"], tables=["audit_log"])
    done = runner.invoke(app, ["audit", "verify"])
    assert done.exit_code == 1
    assert "anchor" in done.output and "newest rows were removed" in done.output


def test_reports_and_exports_carry_the_head(
    session: Session, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = build_recorded_run(session, tmp_path)
    session.commit()
    head = chain_head(session)
    session.commit()  # end the read: SQLite transactions hold the write lock
    monkeypatch.setenv("FAIRCHORD_DB_URL", db_url)
    runner = CliRunner()
    ckpt = ["--checkpoint", str(recorded.checkpoint.id)]
    out = tmp_path / "out"

    done = runner.invoke(
        app, ["audit", "licenses", *ckpt, "--format", "json", "--out", str(out / "r.json")]
    )
    assert done.exit_code == 0, done.output
    (report,) = json.loads((out / "r.json").read_text())
    assert report["audit_head"] == head.to_dict()

    done = runner.invoke(
        app, ["audit", "licenses", *ckpt, "--format", "csv", "--out", str(out / "r.csv")]
    )
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader(io.StringIO((out / "r.csv").read_text())))
    assert {row["audit_head"] for row in rows} == {str(head)}

    done = runner.invoke(
        app, ["audit", "licenses", *ckpt, "--format", "html", "--out", str(out / "r.html")]
    )
    assert done.exit_code == 0, done.output
    assert f'<meta name="fairchord-audit-head" content="{head}">' in (out / "r.html").read_text()

    done = runner.invoke(app, ["audit", "export", *ckpt, "--out", str(out / "c.json")])
    assert done.exit_code == 0, done.output
    assert json.loads((out / "c.json").read_text())["auditHead"] == head.to_dict()

    witnessed = (fairchord_home() / WITNESS_LOG).read_text().splitlines()
    assert len(witnessed) == 4
    assert {json.loads(line)["hash"] for line in witnessed} == {head.hash}
