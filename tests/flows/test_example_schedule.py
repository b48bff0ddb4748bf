"""The documented example schedule passes `fairchord serve --check` on a demo home."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from flows.demo_corpus import ensure_consent_list
from provenance.consent_lists import parse_consent_file

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "schedules.example.toml"


def test_example_schedule_checks_on_a_demo_home(_isolated_home: Path) -> None:
    runner = CliRunner()
    manifest = _isolated_home / "corpus" / "demo" / "manifest.csv"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("path,title\n", encoding="utf-8")  # what `corpus demo` leaves
    missing = runner.invoke(app, ["serve", "--check", str(EXAMPLE)])
    assert missing.exit_code == 2 and "do-not-train.csv" in missing.output

    consent_list = ensure_consent_list()
    assert consent_list == _isolated_home / "consent" / "do-not-train.csv"
    result = runner.invoke(app, ["serve", "--check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    # The empty list is a valid list with no entries, and a second call keeps what is there.
    assert parse_consent_file(consent_list).entries == ()
    consent_list.write_text("party\nSomeone\n", encoding="utf-8")
    ensure_consent_list()
    assert consent_list.read_text(encoding="utf-8") == "party\nSomeone\n"
