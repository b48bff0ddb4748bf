"""Every `--json` output parses: one JSON document, or JSON Lines where the command's help
says so; each on a recorded run with the same database the commands use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from flows.cli import app
from tests.common.ledger import build_recorded_run

# argv without --json; {tmp} is the test's folder. Exit codes: 0, or what the command
# documents for a non-error outcome (4: quarantined items or a tainted run; 10: a file
# without Content Credentials).
COMMANDS: list[tuple[list[str], tuple[int, ...]]] = [
    (["db", "current"], (0,)),
    (["policy", "show", "commercial"], (0,)),
    (["policy", "check", "--policy", "commercial"], (0,)),
    (["consent", "add", "--party", "Will Savino", "--opt-out", "--purpose", "training"], (0,)),
    (["consent", "list"], (0,)),
    (["consent", "sync", "{tmp}/do-not-train.csv"], (0,)),
    (["audit", "licenses"], (0,)),
    (["audit", "taint"], (0, 4)),
    (["audit", "head"], (0,)),
    (["audit", "verify"], (0, 1)),
    (["ingest", "{tmp}/incoming"], (0,)),
    (["keys", "init"], (0,)),
    (["keys", "show"], (0,)),
    (["verify-output", "{tmp}/do-not-train.csv"], (10,)),
]


def parse(text: str) -> object:
    """The output as one JSON document, or as JSON Lines; raises when it is neither."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("argv", "codes"), COMMANDS, ids=[" ".join(argv[:2]) for argv, _ in COMMANDS]
)
def test_json_output_is_one_document(
    session: Session,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    codes: tuple[int, ...],
) -> None:
    build_recorded_run(session, tmp_path)
    session.commit()
    monkeypatch.setenv("FAIRCHORD_DB_URL", db_url)
    (tmp_path / "do-not-train.csv").write_text("party\nNobody Known\n", encoding="utf-8")
    (tmp_path / "incoming").mkdir()
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code in codes, result.output
    document = json.loads(result.stdout)  # one document: no Extra data, no stray text
    assert document not in (None, "")


def test_gate_check_json_is_json_lines() -> None:
    """The one JSON Lines command says so in its help (checked on every file it gates in
    tests/generation/test_generate_gate.py)."""
    result = CliRunner().invoke(app, ["gate", "check", "--help"], terminal_width=200)
    assert "JSON Lines" in result.output
    assert parse('{"a":1}\n{"a":2}\n') == [{"a": 1}, {"a": 2}]
