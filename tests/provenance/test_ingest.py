"""Ingestion without Prefect: a bad-input corpus is quarantined case by case while every valid
file beside it is accepted; reruns change nothing; duplicates become sightings or links."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from provenance.audit_log import verify_chain
from provenance.db import session_factory
from provenance.ingest import IngestOutcome
from provenance.ingest_prepare import IngestLimits
from provenance.ingest_record import ingest_item
from provenance.ingest_runs import ingest_source
from provenance.models import (
    ConsentEvent,
    Credit,
    IngestionRun,
    LicenceAssertion,
    Party,
    QuarantineItem,
    Recording,
    Sighting,
    Source,
)
from provenance.object_store import ObjectStore, store_consistency, sweep_orphan_objects
from provenance.sources import EmptyManifestError, open_source
from provenance.sources.base import parse_consent
from tests.common.audio import write_music
from tests.common.ingest import TEST_LIMITS, build_bad_corpus, db_snapshot

# Quarantines decided from the bytes keep a (quarantined) recording; the others do not.
CONTENT_REASONS = {
    "zero_bytes",
    "truncated_or_corrupt",
    "not_audio",
    "unsupported_codec",
    "impossible_header",
    "too_long",
    "too_short",
    "all_silence",
}


def outcome_map(
    outcomes: list[IngestOutcome],
) -> dict[str, tuple[str, str | None, tuple[str, ...]]]:
    return {o.locator: (o.status, o.reason_code, o.flags) for o in outcomes}


def test_bad_input_corpus_is_quarantined_and_valid_files_accepted(
    engine: Engine, tmp_path: Path
) -> None:
    corpus = build_bad_corpus(tmp_path)
    sessions = session_factory(engine)
    store = ObjectStore(str(tmp_path / "objects"))
    adapter = open_source(str(corpus.manifest))
    result = ingest_source(sessions, adapter, store, limits=TEST_LIMITS)

    assert outcome_map(result.outcomes) == corpus.expected
    counts = result.counts
    assert counts["accepted"] == 5 and counts["near_duplicate"] == 1 and counts["duplicate"] == 1
    assert counts["quarantined"] == 15
    assert counts["flags"] == {"unparseable_licence": 1}

    with sessions() as s:
        recs = {r.sha256: r for r in s.scalars(select(Recording))}
        by_loc = {
            loc: s.get(Recording, rid)
            for rid, loc in s.execute(select(Sighting.recording_id, Sighting.locator)).all()
        }
        good1, good2, dup = by_loc["good1.wav"], by_loc["good2.flac"], by_loc["good2-reencoded.mp3"]
        assert good1 is not None and good2 is not None and dup is not None
        assert by_loc["copy-of-good1.wav"] is good1  # same bytes: a sighting, not a recording
        assert dup.duplicate_of_id == good2.id and good2.duplicate_of_id is None
        assert good1.codec == "WAV/PCM_16" and good1.duration_s == pytest.approx(3.0, abs=0.01)
        assert good1.sample_rate == 22050 and good1.channels == 2
        assert good1.title == "Good One" and good1.source_url == "https://example.org/1"
        assert good1.peak and good1.rms_dbfs and good1.silence_fraction is not None

        accepted = {sha for sha, r in recs.items() if r.status == "accepted"}
        assert len(accepted) == 6
        for r in recs.values():
            if r.status == "quarantined":
                assert r.reason_code in CONTENT_REASONS and r.object_uri is None
        quarantined_recs = sorted(r.reason_code for r in recs.values() if r.status != "accepted")
        assert quarantined_recs == sorted(CONTENT_REASONS)
        items = sorted((q.locator, q.reason_code) for q in s.scalars(select(QuarantineItem)))
        assert items == sorted(
            (loc, reason)
            for loc, (status, reason, _) in corpus.expected.items()
            if status == "quarantined" and reason not in CONTENT_REASONS
        )
        # The object store holds exactly the accepted originals.
        assert set(store.iter_shas()) == accepted
        assert store_consistency(s, store) == ([], [])

        # Credits, licences (unparseable → NOASSERTION, kept), manifest consent.
        names = {
            p.name
            for p in s.scalars(
                select(Party)
                .join(Credit, Credit.party_id == Party.id)
                .where(Credit.recording_id == good1.id)
            )
        }
        assert names == {"Ann", "Bob"}
        odd = by_loc["badlicence.ogg"]
        assert odd is not None and odd.status == "accepted"
        (assertion,) = s.scalars(
            select(LicenceAssertion).where(LicenceAssertion.recording_id == odd.id)
        )
        assert assertion.concluded == "NOASSERTION"
        assert assertion.declared == "this is not a licence (c) me"
        (gpl,) = s.scalars(
            select(LicenceAssertion).where(LicenceAssertion.recording_id == good1.id)
        )
        assert gpl.concluded == "GPL-2.0-or-later" and gpl.fact_source == "manifest"
        events = {
            (c.recording_id, c.action, c.purpose, c.origin) for c in s.scalars(select(ConsentEvent))
        }
        assert events == {
            (good1.id, "opt_in", "training", "manifest"),
            (by_loc["good3.ogg"].id, "opt_out", "any", "manifest"),  # type: ignore[union-attr]
        }
        run = s.get(IngestionRun, result.run_id)
        assert run is not None and run.status == "completed" and run.counts == counts
        count, problems = verify_chain(s)
        assert problems == [] and count > 0
        before = db_snapshot(s)

    # A rerun recognises everything: no new rows, no new objects, no new audit events.
    again = ingest_source(sessions, open_source(str(corpus.manifest)), store, limits=TEST_LIMITS)
    statuses = outcome_map(again.outcomes)
    for loc, (status, reason, _) in corpus.expected.items():
        if status == "quarantined":
            assert statuses[loc][:2] == (status, reason)
        else:
            assert statuses[loc] == ("unchanged", None, ()), loc
    with sessions() as s:
        assert db_snapshot(s) == before
        assert s.scalar(select(func.count()).select_from(IngestionRun)) == 2
    assert set(store.iter_shas()) == accepted


def test_empty_manifest_is_a_clear_error_and_recorded(engine: Engine, tmp_path: Path) -> None:
    corpus = build_bad_corpus(tmp_path)
    sessions = session_factory(engine)
    store = ObjectStore(str(tmp_path / "objects"))
    with pytest.raises(EmptyManifestError, match="no data rows"):
        ingest_source(sessions, open_source(str(corpus.empty_manifest)), store)
    with sessions() as s:
        (item,) = s.scalars(select(QuarantineItem))
        assert (item.locator, item.reason_code) == ("empty.csv", "empty_manifest")
        (run,) = s.scalars(select(IngestionRun))
        assert run.status == "failed" and "no data rows" in run.counts["error"]


def test_tags_fill_in_what_the_folder_does_not_say(session: Session, tmp_path: Path) -> None:
    from mutagen.oggvorbis import OggVorbis

    from provenance.ingest_runs import get_or_create_source

    folder = tmp_path / "tagged"
    folder.mkdir()
    ogg = write_music(folder / "tagged.ogg", 21, seconds=2.0)
    tags = OggVorbis(ogg)
    tags["ARTIST"] = ["Mattias Westlund"]
    tags["LICENSE"] = ["GPL-2.0-or-later"]
    tags["TITLE"] = ["Battle Epic"]
    tags.save()
    (folder / "sidecar.ogg").write_bytes(
        write_music(tmp_path / "x.ogg", 22, seconds=2.0).read_bytes()
    )
    (folder / "sidecar.json").write_text(json.dumps({"artist": "Side Car", "licence": "MIT"}))
    adapter = open_source(str(folder))
    source = get_or_create_source(session, adapter)
    store = ObjectStore(str(tmp_path / "objects"))
    outcomes = {
        item.locator: ingest_item(session, store, source, None, item) for item in adapter.items()
    }
    session.flush()
    tagged = session.get(Recording, outcomes["tagged.ogg"].recording_id)
    assert tagged is not None and tagged.title == "Battle Epic"
    (credit,) = session.scalars(select(Credit).where(Credit.recording_id == tagged.id))
    assert credit.fact_source == "tags"
    assert session.get(Party, credit.party_id).name == "Mattias Westlund"  # type: ignore[union-attr]
    (licence,) = session.scalars(
        select(LicenceAssertion).where(LicenceAssertion.recording_id == tagged.id)
    )
    assert (licence.concluded, licence.fact_source) == ("GPL-2.0-or-later", "tags")
    side = outcomes["sidecar.ogg"].recording_id
    (licence,) = session.scalars(
        select(LicenceAssertion).where(LicenceAssertion.recording_id == side)
    )
    assert (licence.concluded, licence.fact_source) == ("MIT", "sidecar")
    assert session.scalar(select(func.count()).select_from(Source)) == 1


def test_same_bytes_in_two_sources_is_one_recording_two_sightings(
    session: Session, tmp_path: Path
) -> None:
    from provenance.ingest_runs import get_or_create_source

    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        write_music(tmp_path / name / "song.flac", 31, seconds=2.0)
    store = ObjectStore(str(tmp_path / "objects"))
    results = []
    for name in ("one", "two"):
        adapter = open_source(str(tmp_path / name))
        source = get_or_create_source(session, adapter)
        (item,) = adapter.items()
        results.append(ingest_item(session, store, source, None, item))
    assert [r.status for r in results] == ["accepted", "duplicate"]
    assert results[0].recording_id == results[1].recording_id
    assert session.scalar(select(func.count()).select_from(Recording)) == 1
    assert session.scalar(select(func.count()).select_from(Sighting)) == 2


def test_orphan_objects_are_swept_only_when_old(session: Session, tmp_path: Path) -> None:
    store = ObjectStore(str(tmp_path / "objects"))
    sha, _ = store.put_bytes(b"an object no row names")
    assert store_consistency(session, store) == ([sha], [])
    assert sweep_orphan_objects(session, store, older_than_s=3600) == []
    assert sweep_orphan_objects(session, store, older_than_s=0) == [sha]
    assert store_consistency(session, store) == ([], [])


def test_parse_consent() -> None:
    assert parse_consent("opt_in") == [("opt_in", "any")]
    assert parse_consent("opt-out:commercial_training; opt_in:training") == [
        ("opt_out", "commercial_training"),
        ("opt_in", "training"),
    ]
    assert parse_consent(" ") == []
    with pytest.raises(ValueError, match="not an action"):
        parse_consent("maybe")
    with pytest.raises(ValueError, match="purpose 'karaoke'"):
        parse_consent("opt_in:karaoke")


def test_limits_validate() -> None:
    with pytest.raises(ValueError, match="min_duration_s"):
        IngestLimits(min_duration_s=10, max_duration_s=5)
    with pytest.raises(ValueError, match="unknown limit"):
        IngestLimits.from_dict({"max_seconds": 3})
    assert IngestLimits.from_dict(TEST_LIMITS.to_dict()) == TEST_LIMITS


def test_wider_limits_readmit_a_limit_quarantined_recording(
    session: Session, tmp_path: Path
) -> None:
    from provenance.ingest_runs import get_or_create_source

    (tmp_path / "src").mkdir()
    write_music(tmp_path / "src" / "long.flac", 41, seconds=7.0)
    adapter = open_source(str(tmp_path / "src"))
    source = get_or_create_source(session, adapter)
    store = ObjectStore(str(tmp_path / "objects"))
    (item,) = adapter.items()
    first = ingest_item(session, store, source, None, item, TEST_LIMITS)
    assert (first.status, first.reason_code) == ("quarantined", "too_long")
    assert list(store.iter_shas()) == []
    wider = IngestLimits(max_duration_s=10.0)
    second = ingest_item(session, store, source, None, item, wider)
    assert second.status == "accepted" and second.recording_id == first.recording_id
    rec = session.get(Recording, first.recording_id)
    assert rec is not None and rec.status == "accepted" and rec.reason_code is None
    assert store_consistency(session, store) == ([], [])
    assert ingest_item(session, store, source, None, item, wider).status == "unchanged"
    assert ingest_item(session, store, source, None, item, TEST_LIMITS).status == "unchanged"


def test_ingest_a_saved_hf_dataset(session: Session, tmp_path: Path) -> None:
    from datasets import Audio, Dataset

    from provenance.ingest_runs import get_or_create_source

    write_music(tmp_path / "a.flac", 51, seconds=2.0)
    (tmp_path / "bad.wav").write_text("not audio at all")
    Dataset.from_dict(
        {
            "audio": [str(tmp_path / "a.flac"), str(tmp_path / "bad.wav")],
            "artist": ["Ann", "Bob"],
            "license": ["CC-BY-4.0", "CC-BY-4.0"],
        }
    ).cast_column("audio", Audio()).save_to_disk(str(tmp_path / "ds"))
    adapter = open_source(str(tmp_path / "ds"))
    source = get_or_create_source(session, adapter)
    store = ObjectStore(str(tmp_path / "objects"))
    outcomes = [ingest_item(session, store, source, None, item) for item in adapter.items()]
    assert [(o.status, o.reason_code) for o in outcomes] == [
        ("accepted", None),
        ("quarantined", "not_audio"),
    ]
    rec = session.get(Recording, outcomes[0].recording_id)
    assert rec is not None and rec.codec == "FLAC/PCM_16"
    with store.open(rec.sha256) as f:
        assert f.read() == (tmp_path / "a.flac").read_bytes()
    (licence,) = session.scalars(
        select(LicenceAssertion).where(LicenceAssertion.recording_id == rec.id)
    )
    assert licence.fact_source == "dataset"
