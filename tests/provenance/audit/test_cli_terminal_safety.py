"""Stored text reaches the terminal literally: no Rich markup rendered, no escape sequences."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from flows.cli import app, common
from flows.cli.common import terminal_safe
from provenance.parties import add_credit, get_or_create_party
from tests.common.ledger import build_recorded_run

TITLE = "[bold red]x[/] \x1b[31mred\x1b[0m\x9b2J"
ARTIST = "[link=http://evil.example]y[/link]"


def test_terminal_safe() -> None:
    assert terminal_safe("a\x1b]0;title\x07b\r\x00\x7f\x9bc\td\ne") == "a]0;titlebc\td\ne"
    assert terminal_safe("[bold]x[/bold]") == "\\[bold]x\\[/bold]"
    assert terminal_safe(3) == "3"


@pytest.mark.parametrize(
    "command",
    [
        ["audit", "licenses", "--format", "table"],
        ["policy", "check", "--policy", "commercial"],
    ],
)
def test_stored_text_is_printed_literally(
    session: Session,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    recorded = build_recorded_run(session, tmp_path)
    recorded.recordings[0].title = TITLE
    # Parties are append-only: the hostile name arrives as a new party credited on the track.
    party = get_or_create_party(session, ARTIST)
    add_credit(session, recording_id=recorded.recordings[0].id, party_id=party.id)
    session.commit()
    monkeypatch.setenv("FAIRCHORD_DB_URL", db_url)
    monkeypatch.setattr(common.console, "width", 400)  # one line per row: nothing wraps

    done = CliRunner().invoke(app, command)

    assert done.exit_code == 0, done.output
    assert "[bold red]x[/] [31mred[0m2J" in done.output
    assert ARTIST in done.output
    assert "\x1b" not in done.output
    assert "\x9b" not in done.output
