"""One bad row never kills a run: through `fairchord ingest` (the Prefect flow), rows that
once ended the run with a traceback are quarantined or kept with an unparsed credit, the rows
after them are ingested, the run completes, the exit code says some items are quarantined,
and reruns neither duplicate nor fail."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from provenance.db import session_factory
from provenance.models import AuditEvent, IngestionRun
from provenance.object_store import default_object_store, store_consistency
from tests.common.audio import write_music
from tests.common.ingest import db_snapshot


def hostile_manifest(root: Path) -> Path:
    root.mkdir(parents=True)
    for i, name in enumerate(("first.flac", "bang.flac", "bobby.flac", "last.ogg")):
        write_music(root / name, 300 + i, seconds=2.0)
    os.mkfifo(root / "pipe.wav")
    rows = [
        {"path": "first.flac", "artist": "Ann"},
        {"path": f"local://{root / 'pipe.wav'}"},
        {"path": "nosuch://x.wav"},
        {"path": "http://127.0.0.1:9/x.wav"},
        {"path": "bang.flac", "artist": "!!!"},
        {"path": "bobby.flac", "artist": "Robert'); DROP TABLE parties;--"},
        {"path": "last.ogg", "artist": "Zed"},
    ]
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_bad_rows_are_quarantined_and_the_run_goes_on(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cli import app

    monkeypatch.setenv("FAIRCHORD_DB_URL", db_url)
    manifest = hostile_manifest(tmp_path / "src")
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(manifest), "--json"])
    assert result.exit_code == 4, result.output
    assert "quarantined" in result.stderr
    summary = json.loads(result.stdout)
    got = {o["locator"]: (o["status"], o["reason_code"], o["flags"]) for o in summary["outcomes"]}
    assert got == {
        "first.flac": ("accepted", None, []),
        "pipe.wav": ("quarantined", "unreadable", []),
        "nosuch://x.wav": ("quarantined", "path_escape", []),
        "http://127.0.0.1:9/x.wav": ("quarantined", "path_escape", []),
        "bang.flac": ("accepted", None, ["unparseable_artist"]),
        "bobby.flac": ("accepted", None, ["unparseable_artist"]),
        "last.ogg": ("accepted", None, []),
    }
    assert summary["status"] == "completed" and summary["counts"]["quarantined"] == 3

    sessions = session_factory(engine)
    store = default_object_store()
    with sessions() as s:
        run = s.get(IngestionRun, summary["run_id"])
        assert run is not None and run.status == "completed"
        assert store_consistency(s, store) == ([], [])
        unparsed = [
            json.loads(e.payload)["name"]
            for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "credit.unparsed"))
        ]
        assert sorted(unparsed) == ["!!!", "--"]
        first = db_snapshot(s)

    # Allowed, the two URLs are read and fail as reads: still quarantined, run completes.
    allowed = runner.invoke(
        app,
        ["ingest", str(manifest), "--json", "--allow-scheme", "nosuch", "--allow-scheme", "http"],
    )
    assert allowed.exit_code == 4, allowed.output
    reasons = {o["locator"]: o["reason_code"] for o in json.loads(allowed.stdout)["outcomes"]}
    assert reasons["nosuch://x.wav"] == reasons["http://127.0.0.1:9/x.wav"] == "unreadable"

    # Reruns: nothing new, nothing failing; --lenient exits 0.
    again = runner.invoke(app, ["ingest", str(manifest), "--json", "--lenient"])
    assert again.exit_code == 0, again.output
    counts = json.loads(again.stdout)["counts"]
    assert counts["unchanged"] == 4 and counts["quarantined"] == 3
    with sessions() as s:
        snapshot = db_snapshot(s)
        new_entries = set(snapshot["quarantine"]) - set(first["quarantine"])
        assert new_entries == {
            ("nosuch://x.wav", "unreadable"),
            ("http://127.0.0.1:9/x.wav", "unreadable"),
        }
        assert {k: v for k, v in snapshot.items() if k not in ("quarantine", "audit")} == {
            k: v for k, v in first.items() if k not in ("quarantine", "audit")
        }
        assert set(s.scalars(select(IngestionRun.status))) == {"completed"}
        assert store_consistency(s, store) == ([], [])


def test_help_documents_the_exit_codes() -> None:
    from flows.cli import app

    result = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "4 the run completed, but some items are quarantined" in " ".join(result.stdout.split())
    assert "--allow-scheme" in result.stdout and "--lenient" in result.stdout


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_hostile_csv_batch_through_the_flow(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """The Prefect path (tasks, artifacts, summary) meets every hostile manifest row too."""
    from flows.ingest import run_ingest
    from tests.common.hostile import BATCH_LIMITS, build_hostile_batch

    batch = build_hostile_batch(tmp_path / "batch")
    summary = run_ingest(str(batch.csv_manifest), db_url=db_url, limits=BATCH_LIMITS)
    got = {
        o["locator"]: (o["status"], o["reason_code"], tuple(o["flags"]))
        for o in summary["outcomes"]
    }
    want = {loc: (e.status, e.reason, e.flags) for loc, e in batch.expected("csv").items()}
    assert got == want
    with session_factory(engine)() as s:
        assert set(s.scalars(select(IngestionRun.status))) == {"completed"}
        assert store_consistency(s, default_object_store()) == ([], [])
