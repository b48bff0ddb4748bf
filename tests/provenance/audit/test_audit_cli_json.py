"""`fairchord audit licenses --format json` and `audit taint --json` on a recorded run."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from flows.cli import app
from provenance.consent import ConsentSubject, record_consent
from provenance.parties import find_party
from tests.common.ledger import MEMBERS, build_recorded_run


def test_licence_json_and_taint_json(
    session: Session, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = build_recorded_run(session, tmp_path)
    session.commit()
    monkeypatch.setenv("FAIRCHORD_DB_URL", db_url)
    runner = CliRunner()
    out = tmp_path / "report.json"
    args = ["audit", "licenses", "--checkpoint", str(recorded.checkpoint.id), "--format", "json"]
    done = runner.invoke(app, [*args, "--out", str(out)])
    assert done.exit_code == 0, done.output
    text = out.read_text(encoding="utf-8")
    assert text.startswith('[\n  {\n    "checkpoint_id": ')  # indented by two spaces
    (report,) = json.loads(text)
    assert [m["title"] for m in report["members"]] == [title for title, *_ in MEMBERS]
    assert report["members"][0]["artists"] == ["Will Savino"]
    assert report["verdict"] == "clean"
    assert report["taint"] == {"tainted": False, "members": []}
    # Datetimes are written as str() writes them.
    assert report["snapshot_at"] == str(recorded.run.snapshot_at)
    assert report["obligations"]["attribution:CC-BY-SA-3.0"] == sorted(
        r.sha256 for r in recorded.recordings[:2]
    )
    done = runner.invoke(app, ["audit", "taint", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == []

    party = find_party(session, "Mattias Westlund")
    assert party is not None
    event = record_consent(
        session,
        subject=ConsentSubject("party", party.id),
        action="opt_out",
        purpose="any",
        effective_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
        origin="cli",
    )
    assert event is not None
    session.commit()
    done = runner.invoke(app, ["audit", "taint", "--json"])
    assert done.exit_code == 4, done.output
    (finding,) = json.loads(done.output)
    assert finding["checkpoints"] == [
        {"id": recorded.checkpoint.id, "sha256": recorded.checkpoint.sha256}
    ]
    assert finding["members"] == [
        {
            "recording_id": recorded.recordings[2].id,
            "sha256": recorded.recordings[2].sha256,
            "reasons": ["opted_out_since_snapshot:party"],
            "consent_event_ids": [event.id],
            "licence_assertion_ids": [],
        }
    ]
    done = runner.invoke(app, [*args, "--out", str(out)])
    assert done.exit_code == 0, done.output
    (report,) = json.loads(out.read_text(encoding="utf-8"))
    assert report["verdict"] == "tainted"
    assert report["members"][2]["consent_now"] == "opted_out"
    assert report["members"][2]["taint_reasons"] == ["opted_out_since_snapshot:party"]
