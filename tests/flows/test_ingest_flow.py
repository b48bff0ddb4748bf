"""The ingest-source flow end to end: outcomes, the run row linked to the Prefect flow run,
artifacts, idempotent reruns, and the CLI's exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from flows.ingest import outcome_table, run_ingest
from provenance.db import session_factory
from provenance.ingest_runs import summarize
from provenance.models import IngestionRun, QuarantineItem
from provenance.object_store import default_object_store, store_consistency
from provenance.sources import EmptyManifestError
from tests.common.ingest import TEST_LIMITS, build_bad_corpus, db_snapshot


def read_artifacts(flow_run_id: str) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in artifacts}


def test_flow_ingests_quarantines_publishes_and_reruns_idempotently(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    corpus = build_bad_corpus(tmp_path)
    summary = run_ingest(str(corpus.manifest), db_url=db_url, limits=TEST_LIMITS)
    got = {
        o["locator"]: (o["status"], o["reason_code"], tuple(o["flags"]))
        for o in summary["outcomes"]
    }
    assert got == corpus.expected
    assert summary["status"] == "completed" and summary["counts"]["quarantined"] == 15

    sessions = session_factory(engine)
    store = default_object_store()
    with sessions() as s:
        run = s.get(IngestionRun, summary["run_id"])
        assert run is not None and run.status == "completed"
        assert run.prefect_flow_run_id == summary["prefect_flow_run_id"] is not None
        assert run.counts == summary["counts"]
        assert store_consistency(s, store) == ([], [])
        first = db_snapshot(s)

    artifacts = read_artifacts(summary["prefect_flow_run_id"])
    table = artifacts["ingest-outcomes"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert rows == outcome_table(summary["counts"])
    by_reason = {r["reason"]: r["items"] for r in rows if r["outcome"] == "quarantined"}
    assert by_reason["symlink_escape"] == 1 and by_reason["too_large"] == 1
    assert {r["outcome"]: r["items"] for r in rows if not r["reason"]}["accepted"] == 5
    markdown = artifacts["ingest-summary"].data
    assert "quarantined: 15" in markdown and "`link-out.wav`" in markdown

    again = run_ingest(str(corpus.manifest), db_url=db_url, limits=TEST_LIMITS)
    assert again["counts"]["unchanged"] == 7 and again["counts"]["accepted"] == 0
    assert again["counts"]["quarantined_by_reason"] == summary["counts"]["quarantined_by_reason"]
    with sessions() as s:
        assert db_snapshot(s) == first
        assert len(s.scalars(select(IngestionRun)).all()) == 2


def test_flow_records_an_empty_manifest_and_raises(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    corpus = build_bad_corpus(tmp_path)
    with pytest.raises(EmptyManifestError):
        run_ingest(str(corpus.empty_manifest), db_url=db_url)
    with session_factory(engine)() as s:
        (item,) = s.scalars(select(QuarantineItem))
        assert item.reason_code == "empty_manifest"
        (run,) = s.scalars(select(IngestionRun))
        assert run.status == "failed" and run.prefect_flow_run_id


def test_outcome_table_lists_every_reason() -> None:
    from provenance.ingest import IngestOutcome

    counts = summarize(
        [
            IngestOutcome("a", "accepted", audio_seconds=2.0),
            IngestOutcome("b", "quarantined", "too_long"),
            IngestOutcome("c", "quarantined", "too_long"),
            IngestOutcome("d", "accepted", flags=("unparseable_licence",)),
        ]
    )
    rows = outcome_table(counts)
    assert {"outcome": "quarantined", "reason": "too_long", "items": 2} in rows
    assert {"outcome": "flagged (kept)", "reason": "unparseable_licence", "items": 1} in rows
    assert counts["audio_seconds"] == 2.0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_ingest_exit_codes_and_bad_input(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cli import app

    monkeypatch.setenv("FAIRCHORD_DB_URL", db_url)
    corpus = build_bad_corpus(tmp_path)
    runner = CliRunner()
    limits = ["--max-duration", "6", "--min-duration", "1", "--max-mb", str(1_500_000 / 2**20)]
    result = runner.invoke(app, ["ingest", str(corpus.manifest), "--json", *limits])
    assert result.exit_code == 4, result.output  # completed, some items quarantined
    summary = json.loads(result.stdout)
    assert summary["counts"]["accepted"] == 5 and summary["counts"]["quarantined"] == 15
    result = runner.invoke(app, ["ingest", str(corpus.manifest), "--strict", *limits])
    assert result.exit_code == 4
    assert "unchanged" in result.stdout and "too_large: 1" in result.stdout
    result = runner.invoke(app, ["ingest", str(corpus.manifest), "--lenient", *limits])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["ingest", str(corpus.empty_manifest)])
    assert result.exit_code == 2 and "no data rows" in result.stderr
    result = runner.invoke(app, ["ingest", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    result = runner.invoke(app, ["ingest", str(corpus.root), *limits, "--min-duration", "9"])
    assert result.exit_code == 2 and "min_duration_s" in result.stderr
