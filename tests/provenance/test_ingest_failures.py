"""An item whose rows cannot be written is quarantined ``record_failed`` and the run goes on;
a run stopped by an error is marked ``failed``, never left ``running``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

import provenance.ingest_record as ingest
from provenance.db import session_factory
from provenance.ingest_runs import ingest_source
from provenance.models import IngestionRun, QuarantineItem, Recording
from provenance.object_store import ObjectStore, store_consistency
from provenance.parties import unusable_name
from provenance.sources import open_source
from provenance.sources.text import MAX_LOCATOR_BYTES, clean_text, locator_text
from tests.common.audio import write_music


def _folder(base: Path) -> Path:
    base.mkdir()
    for i, name in enumerate(("a.flac", "b.flac", "c.flac")):
        write_music(base / name, 400 + i, seconds=2.0)
    return base


def test_an_item_that_cannot_be_recorded_is_quarantined_and_the_run_goes_on(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ingest.record_prepared

    def failing_on_b(session: Any, **kwargs: Any) -> Any:
        if kwargs["prepared"].item.locator == "b.flac":
            session.add(Recording(sha256="0" * 64, size_bytes=1, status="bogus"))
            session.flush()  # a CHECK violation: the item's transaction must roll back
        return real(session, **kwargs)

    monkeypatch.setattr(ingest, "record_prepared", failing_on_b)
    sessions = session_factory(engine)
    store = ObjectStore(str(tmp_path / "objects"))
    adapter = open_source(str(_folder(tmp_path / "src")))
    result = ingest_source(sessions, adapter, store)
    got = [(o.locator, o.status, o.reason_code) for o in result.outcomes]
    assert got == [
        ("a.flac", "accepted", None),
        ("b.flac", "quarantined", "record_failed"),
        ("c.flac", "accepted", None),
    ]
    with sessions() as s:
        (entry,) = s.scalars(select(QuarantineItem))
        assert entry.locator == "b.flac" and "IntegrityError" in (entry.reason_detail or "")
        assert s.get(IngestionRun, result.run_id).status == "completed"  # type: ignore[union-attr]
        assert len(s.scalars(select(Recording)).all()) == 2
    # The rerun meets the same failure and moves on again, adding nothing.
    again = ingest_source(sessions, open_source(str(tmp_path / "src")), store)
    assert [o.status for o in again.outcomes] == ["unchanged", "quarantined", "unchanged"]
    with sessions() as s:
        assert len(s.scalars(select(QuarantineItem)).all()) == 1


def test_a_run_stopped_by_an_error_is_marked_failed(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = ObjectStore.put_file

    def store_fails_second_time(self: ObjectStore, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("the object store's disk is full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ObjectStore, "put_file", store_fails_second_time)
    sessions = session_factory(engine)
    store = ObjectStore(str(tmp_path / "objects"))
    with pytest.raises(OSError, match="disk is full"):
        ingest_source(sessions, open_source(str(_folder(tmp_path / "src"))), store)
    with sessions() as s:
        (run,) = s.scalars(select(IngestionRun))
        assert run.status == "failed" and run.finished_at is not None
        assert run.counts["accepted"] == 1 and "disk is full" in run.counts["error"]
        assert store_consistency(s, store) == ([], [])


def test_text_from_sources_is_storable() -> None:
    assert clean_text("a\x00b\x1b[31m\n") == "a b [31m"
    assert clean_text("\ud800x") == "\\ud800x"
    assert clean_text("caf\udce9") == "caf\\xe9"
    assert locator_text("a\nb\x00.wav") == "a\\nb\\x00.wav"
    long = locator_text("é" * 5000)
    assert len(long.encode()) <= MAX_LOCATOR_BYTES and "#sha256=" in long
    assert long == locator_text("é" * 5000) != locator_text("é" * 5001)
    assert unusable_name("!!!") is not None and unusable_name("--") is not None
    assert unusable_name("A" * 600) is not None and unusable_name("\u200b") is not None
    assert unusable_name("Robert')") is None and unusable_name("Мattias") is None
