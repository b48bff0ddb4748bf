"""CLI round trips for `policy` and `consent` on a real, migrated database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from flows.cli import app
from provenance.db import session_factory
from provenance.licences import record_licence
from provenance.models import ConsentEvent, Recording
from provenance.parties import add_credit, get_or_create_party


@pytest.fixture
def cli(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("FAIRCHORD_DB_URL", db_url)
    with session_factory(engine).begin() as s:
        for i, (artist, licence) in enumerate(
            [("Will Savino", "CC-BY-SA-3.0"), (None, "LicenseRef-Drascula")]
        ):
            rec = Recording(sha256=f"{i}" * 64, size_bytes=1, title=f"t{i}", duration_s=60.0)
            s.add(rec)
            s.flush()
            if artist:
                party = get_or_create_party(s, artist, aliases=["Savino"])
                add_credit(s, recording_id=rec.id, party_id=party.id)
            record_licence(s, recording_id=rec.id, declared=licence, asserted_by="test")
    return CliRunner()


def test_policy_check_json(cli: CliRunner) -> None:
    result = cli.invoke(app, ["policy", "check", "--policy", "commercial", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["title"]: r for r in json.loads(result.output)["recordings"]}
    assert rows["t0"]["decision"] == "include"
    assert rows["t1"]["decision"] == "exclude"
    assert "licence_not_allowed:LicenseRef-Drascula" in rows["t1"]["reasons"]


def test_policy_check_table_piped_keeps_every_value_whole(cli: CliRunner) -> None:
    """Piped (not a terminal), the table is as wide as its values: nothing is cut to fit
    80 columns, and there is no colour."""
    result = cli.invoke(app, ["policy", "check", "--policy", "commercial"])
    assert result.exit_code == 0, result.output
    assert "licence_not_allowed:LicenseRef-Drascula" in result.output
    assert "LicenseRef-Drascula" in result.output and "…" not in result.output
    assert "\x1b[" not in result.output
    assert max(len(line) for line in result.output.splitlines()) > 80


def test_policy_unknown_name(cli: CliRunner) -> None:
    result = cli.invoke(app, ["policy", "show", "nope"])
    assert result.exit_code == 2


def test_consent_add_changes_eligibility(cli: CliRunner, engine: Engine) -> None:
    added = cli.invoke(
        app, ["consent", "add", "--party", "savino", "--opt-out", "--purpose", "training", "--json"]
    )
    assert added.exit_code == 0, added.output
    result = cli.invoke(app, ["policy", "check", "--policy", "commercial", "--json"])
    rows = {r["title"]: r for r in json.loads(result.output)["recordings"]}
    assert rows["t0"]["decision"] == "exclude"
    assert any(r.startswith("opted_out") for r in rows["t0"]["reasons"])
    listed = cli.invoke(app, ["consent", "list", "--json"])
    assert json.loads(listed.output)[0]["origin"] == "cli"


def test_consent_import_bad_file_writes_nothing(
    cli: CliRunner, engine: Engine, tmp_path: Path
) -> None:
    bad = tmp_path / "c.csv"
    bad.write_text(
        "subject_kind,subject,action,purpose,effective_at,evidence\n"
        "party,Will Savino,opt_out,training,2026-01-01,ok\n"
        "party,Will Savino,opt_out,training,2026-13-01,bad date\n"
    )
    result = cli.invoke(app, ["consent", "import", str(bad)])
    assert result.exit_code == 2
    assert "line 3" in result.output
    with session_factory(engine)() as s:
        assert s.execute(select(func.count()).select_from(ConsentEvent)).scalar_one() == 0
    good = tmp_path / "ok.csv"
    good.write_text(bad.read_text().splitlines()[0] + "\n" + bad.read_text().splitlines()[1] + "\n")
    assert cli.invoke(app, ["consent", "import", str(good)]).exit_code == 0
    again = cli.invoke(app, ["consent", "import", str(good), "--json"])
    assert json.loads(again.output)["already_recorded"] == 1
