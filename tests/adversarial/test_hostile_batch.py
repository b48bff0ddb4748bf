"""A mixed batch, valid files beside every hostile kind of :mod:`tests.common.hostile`,
ingested on both engines: each valid file once, each hostile item quarantined (or kept with
its flag) for its own reason, every run finished, and a rerun adds nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from provenance.audit_log import verify_chain
from provenance.db import session_factory
from provenance.ingest import FLAGS, QUARANTINE_REASONS
from provenance.ingest_runs import ingest_source
from provenance.models import IngestionRun, Party, QuarantineItem, Recording, Sighting
from provenance.object_store import ObjectStore
from provenance.object_store import store_consistency as consistency
from provenance.sources import SourceError, open_source
from tests.common.hostile import BATCH_LIMITS, build_hostile_batch, kind_names
from tests.common.ingest import db_snapshot

SOURCES = ("csv", "jsonl", "folder")


def test_the_generator_covers_at_least_thirty_kinds_in_every_area(tmp_path: Path) -> None:
    batch = build_hostile_batch(tmp_path)
    kinds = {c.kind for c in batch.cases if c.kind != "valid"}
    assert len(kinds) >= 30, sorted(kinds)
    areas = {k.split("/")[0] for k in kinds}
    assert {"audio", "file", "manifest", "jsonl", "whole", "sidecar", "name"} <= areas
    assert len(kind_names()) >= 20
    for case in batch.cases:  # every expectation names a real reason or flag
        assert case.expect.reason is None or case.expect.reason in QUARANTINE_REASONS, case
        assert set(case.expect.flags) <= set(FLAGS), case


def test_mixed_batch_keeps_every_valid_file_once_and_refuses_each_hostile_one(
    engine: Engine, tmp_path: Path
) -> None:
    batch = build_hostile_batch(tmp_path / "batch")
    sessions = session_factory(engine)
    store = ObjectStore(str(tmp_path / "objects"))
    uris = {"csv": batch.csv_manifest, "jsonl": batch.jsonl_manifest, "folder": batch.folder}

    for source in SOURCES:
        result = ingest_source(sessions, open_source(str(uris[source])), store, limits=BATCH_LIMITS)
        got = {o.locator: (o.status, o.reason_code, o.flags) for o in result.outcomes}
        want = {loc: (e.status, e.reason, e.flags) for loc, e in batch.expected(source).items()}
        assert got == want, source
    for manifest in batch.whole.values():
        with pytest.raises(SourceError):
            ingest_source(sessions, open_source(str(manifest)), store, limits=BATCH_LIMITS)

    with sessions() as s:
        # Each valid file is exactly one accepted recording, seen where the source put it.
        for case in batch.cases:
            if not case.valid_audio:
                continue
            folder = batch.folder if case.source == "folder" else batch.root
            sha = hashlib.sha256((folder / case.locator).read_bytes()).hexdigest()
            (rec,) = s.scalars(select(Recording).where(Recording.sha256 == sha))
            assert rec.status == "accepted", case
            locators = s.scalars(select(Sighting.locator).where(Sighting.recording_id == rec.id))
            assert list(locators) == [case.locator], case
        valid = sum(c.valid_audio for c in batch.cases)
        accepted = s.scalar(
            select(func.count()).select_from(Recording).where(Recording.status == "accepted")
        )
        assert accepted == valid
        # Each hostile item refused before it had bytes is one quarantine entry.
        entries = {(q.locator, q.reason_code) for q in s.scalars(select(QuarantineItem))}
        for case in batch.cases:
            reason = case.expect.reason
            if case.source == "whole" or reason in (
                "path_escape",
                "symlink_escape",
                "malformed_row",
                "non_utf8_name",
                "unreadable",
            ):
                assert (case.locator, reason) in entries, case
        # Nothing left running, nothing stored that no row names, the chain intact.
        statuses = set(s.scalars(select(IngestionRun.status)))
        assert statuses == {"completed", "failed"}  # failed: the broken-as-a-whole manifests
        assert consistency(s, store) == ([], [])
        parties = set(s.scalars(select(Party.name)))  # the table is there, names are text
        assert {"Robert')", "DROP TABLE parties", "Мattias Westlund"} <= parties
        assert verify_chain(s)[1] == []
        before = db_snapshot(s)
        runs = s.scalar(select(func.count()).select_from(IngestionRun))

    # A rerun changes nothing and fails on nothing.
    for source in SOURCES:
        again = ingest_source(sessions, open_source(str(uris[source])), store, limits=BATCH_LIMITS)
        for outcome in again.outcomes:
            expect = batch.expected(source)[outcome.locator]
            if expect.status == "quarantined":
                assert (outcome.status, outcome.reason_code) == ("quarantined", expect.reason)
            else:
                assert outcome.status == "unchanged", outcome
    with sessions() as s:
        assert db_snapshot(s) == before
        assert s.scalar(select(func.count()).select_from(IngestionRun)) == runs + len(SOURCES)
        assert set(s.scalars(select(IngestionRun.status))) == {"completed", "failed"}
        assert consistency(s, store) == ([], [])
