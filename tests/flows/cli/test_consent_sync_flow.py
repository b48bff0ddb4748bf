"""`fairchord consent sync` runs the consent-sync flow: opt-outs recorded once, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from flows.cli import app
from provenance.db import session_factory
from provenance.models import ConsentEvent
from tests.common.ledger import make_world, sha


def test_cli_sync_twice_records_once(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIRCHORD_DB_URL", db_url)
    with session_factory(engine).begin() as session:
        make_world(session)
    dnt = tmp_path / "dnt.csv"
    dnt.write_text(f"entry\nMaxstack\n{sha('kaufman')}\nUnknown Person\n", encoding="utf-8")
    tdm = tmp_path / "music.example.org" / ".well-known" / "tdmrep.json"
    tdm.parent.mkdir(parents=True)
    tdm.write_text(json.dumps([{"location": "/westlund/", "tdm-reservation": 1}]))

    runner = CliRunner()
    first = runner.invoke(app, ["consent", "sync", str(dnt), str(tdm), "--json"])
    assert first.exit_code == 0, first.output
    reports = json.loads(first.stdout)
    assert [(r["format"], r["recorded"]) for r in reports] == [
        ("do_not_train_csv", 2),
        ("tdmrep", 1),
    ]
    assert reports[0]["unknown"] == ["party 'Unknown Person'"]

    second = runner.invoke(app, ["consent", "sync", str(dnt), str(tdm)])
    assert second.exit_code == 0, second.output
    assert "0 opt-out(s) recorded, 2 already recorded, 1 unknown" in second.stdout
    with session_factory(engine)() as session:
        assert session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one() == 3

    bad = tmp_path / "bad.csv"
    bad.write_text("colour\nred\n")
    refused = runner.invoke(app, ["consent", "sync", str(bad)])
    assert refused.exit_code == 2 and "needs a header" in refused.output
    orphan = tmp_path / "tdmrep.json"
    orphan.write_text(json.dumps([{"location": "/", "tdm-reservation": 1}]))
    refused = runner.invoke(app, ["consent", "sync", str(orphan)])
    assert refused.exit_code == 2 and "--origin" in refused.output
