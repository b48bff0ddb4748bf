"""Consent sync: do-not-train lists and TDMRep files become opt-out events, idempotently."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provenance.consent import ConsentSubject, current_consent
from provenance.consent_lists import (
    ConsentListError,
    infer_kind,
    location_matches,
    parse_consent_file,
)
from provenance.consent_sync import sync_consent_file
from provenance.consent_terms import parse_effective_at
from provenance.models import AuditEvent, ConsentEvent, Recording
from provenance.parties import find_party
from tests.common.ledger import make_world, sha


def n_events(session: Session) -> int:
    return session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one()


def opted_out(session: Session, rec: Recording, purpose: str = "commercial_training") -> bool:
    state = current_consent(session, ConsentSubject("recording", rec.id), purpose)
    return state.state == "opted_out"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_parsing_helpers() -> None:
    assert infer_kind(sha("x")) == "sha256"
    assert infer_kind("https://x.org/a") == "source_url"
    assert infer_kind("Björk") == "party"
    assert parse_effective_at("2026-01-02") == dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert parse_effective_at("2026-01-02T03:04:05+01:00") == dt.datetime(
        2026, 1, 2, 2, 4, 5, tzinfo=dt.UTC
    )
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_effective_at("yesterday")
    assert location_matches("/", "/music/a.ogg")
    assert location_matches("/music/*.ogg", "/music/x/a.ogg")
    assert not location_matches("/music/*.ogg$", "/music/a.ogg.bak")
    assert location_matches("/exact$", "/exact") and not location_matches("/exact$", "/exact/x")
    assert not location_matches("/Music/", "/music/a.ogg")  # case-sensitive
    assert location_matches("/a%20b/", "/a b/c")


def test_do_not_train_csv_records_opt_outs_once(session: Session, tmp_path: Path) -> None:
    world = make_world(session)
    session.flush()
    listed = write(
        tmp_path / "dnt.csv",
        "entry,purpose,effective_at,reason\n"
        "  mattias   WESTLUND ,,,asked by email\n"  # name, any case and spacing
        "maxstack,commercial_training,2026-01-01,\n"  # an alias
        f"{sha('kaufman')},,,\n"  # a recording sha256
        "https://music.example.org/exact,,,\n"  # a source url
        "https://archive.example.org/catalogue.csv,,,\n"  # a source's uri
        "Nobody Known,,,\n"  # unknown party
        f"{sha('missing')},,,\n"  # unknown recording
        "https://nowhere.example.org/x.ogg,,,\n"  # unknown url
        "Someone,bogus_purpose,,\n",  # invalid
    )
    before_audit = session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    report = sync_consent_file(session, listed)
    session.flush()
    assert report.format == "do_not_train_csv"
    assert report.recorded == 5 and report.already_recorded == 0
    assert sorted(report.unknown) == sorted(
        [
            "party 'Nobody Known'",
            f"recording sha256 '{sha('missing')}'",
            "source url 'https://nowhere.example.org/x.ogg'",
        ]
    )
    assert len(report.invalid) == 1 and "bogus_purpose" in report.invalid[0]
    after_audit = session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    assert after_audit - before_audit == 5  # one audit event per consent event

    events = session.execute(select(ConsentEvent).order_by(ConsentEvent.id)).scalars().all()
    assert {e.action for e in events} == {"opt_out"}
    assert {e.origin for e in events} == {"registry_import"}
    by_party = {e.party_id: e for e in events if e.party_id}
    assert set(by_party) == {world.party["westlund"], world.party["maxstack"]}
    alias_event = by_party[world.party["maxstack"]]
    assert alias_event.purpose == "commercial_training"
    assert alias_event.effective_at == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert "by alias" in (alias_event.evidence or "")
    westlund_event = by_party[world.party["westlund"]]
    assert westlund_event.purpose == "training"
    assert report.sha256 in (westlund_event.evidence or "")
    assert "asked by email" in (westlund_event.evidence or "")
    assert {e.source_id for e in events if e.source_id} == {world.source.id}
    assert {e.recording_id for e in events if e.recording_id} == {
        world.rec["kaufman"].id,
        world.rec["exact"].id,
    }
    assert all(e.dedupe_key and len(e.dedupe_key) == 64 for e in events)

    # Consent now resolves as opted out (party level for Westlund, recording for Kaufman);
    # the source-level opt-out covers every recording of that source without its own event.
    assert (
        current_consent(
            session, ConsentSubject("recording", world.rec["westlund"].id), "commercial_training"
        ).level
        == "party"
    )
    assert opted_out(session, world.rec["kaufman"])
    assert opted_out(session, world.rec["free"])  # via the source

    # The same list again, and a renamed copy of it, add nothing.
    count = n_events(session)
    again = sync_consent_file(session, listed)
    copy = tmp_path / "elsewhere" / "copy.csv"
    copy.parent.mkdir()
    shutil.copy(listed, copy)
    renamed = sync_consent_file(session, copy)
    session.flush()
    assert n_events(session) == count
    assert again.recorded == renamed.recorded == 0
    assert again.already_recorded == 5
    assert all(r.status in ("already_recorded", "unknown") for r in again.results)


def test_do_not_train_json_forms(session: Session, tmp_path: Path) -> None:
    world = make_world(session)
    plain = write(
        tmp_path / "plain.json",
        json.dumps(["Doug Kaufman", sha("westlund"), "https://music.example.org/free/*"]),
    )
    report = sync_consent_file(session, plain)
    assert report.format == "do_not_train_json" and report.recorded == 3
    assert opted_out(session, world.rec["kaufman"])
    assert opted_out(session, world.rec["westlund"])
    assert opted_out(session, world.rec["free"])
    assert not opted_out(session, world.rec["exact"])

    wrapped = write(
        tmp_path / "wrapped.json",
        json.dumps(
            {
                "purpose": "style_imitation",
                "effective_at": "2030-01-01T00:00:00Z",
                "entries": [{"party": "Max McCracken"}, {"sha256": "not-a-sha"}],
            }
        ),
    )
    report = sync_consent_file(session, wrapped)
    assert report.recorded == 1 and len(report.invalid) == 1
    event = session.execute(
        select(ConsentEvent).where(ConsentEvent.party_id == world.party["maxstack"])
    ).scalar_one()
    assert event.purpose == "style_imitation"
    # Effective in the future: not in force yet.
    state = current_consent(session, ConsentSubject("party", world.party["maxstack"]), "any")
    assert state.state == "none"


def test_unknown_party_can_be_created_so_the_opt_out_waits_for_it(
    session: Session, tmp_path: Path
) -> None:
    make_world(session)
    listed = write(tmp_path / "dnt.csv", "party\nFuture Artist\n")
    report = sync_consent_file(session, listed)
    assert report.unknown == ["party 'Future Artist'"] and report.recorded == 0
    assert find_party(session, "future artist") is None

    report = sync_consent_file(session, listed, create_parties=True)
    assert report.recorded == 1 and report.unknown == []
    party = find_party(session, "Future Artist")
    assert party is not None and party.kind == "unknown"
    state = current_consent(session, ConsentSubject("party", party.id), "training")
    assert state.state == "opted_out"
    assert sync_consent_file(session, listed, create_parties=True).recorded == 0


def test_tdmrep_reserves_by_first_matching_location(session: Session, tmp_path: Path) -> None:
    world = make_world(session)
    rules = [
        {"location": "/free/*", "tdm-reservation": 0},
        {"location": "/exact$", "tdm-reservation": 7},  # protocol error: unset
        {
            "location": "/",
            "tdm-reservation": 1,
            "tdm-policy": "https://music.example.org/policies/tdm.json",
        },
    ]
    path = write(tmp_path / "music.example.org" / ".well-known" / "tdmrep.json", json.dumps(rules))
    parsed = parse_consent_file(path)
    assert parsed.format == "tdmrep" and parsed.origin == "https://music.example.org"
    assert len(parsed.invalid) == 1 and "7" in parsed.invalid[0]

    report = sync_consent_file(session, path)
    session.flush()
    assert report.recorded == 2
    statuses = [r.status for r in report.results]
    assert statuses == ["not_reserved", "no_match", "recorded"]
    assert opted_out(session, world.rec["westlund"])
    assert opted_out(session, world.rec["kaufman"])
    assert not opted_out(session, world.rec["free"])  # first match: not reserved
    assert not opted_out(session, world.rec["exact"])  # first match: unset
    assert not opted_out(session, world.rec["other_site"])  # another origin
    events = session.execute(select(ConsentEvent)).scalars().all()
    assert {(e.origin, e.purpose, e.action) for e in events} == {("tdmrep", "training", "opt_out")}
    policy = "tdm-policy https://music.example.org/policies/tdm.json"
    assert all(policy in (e.evidence or "") for e in events)

    count = n_events(session)
    again = sync_consent_file(session, path)
    assert again.recorded == 0 and again.already_recorded == 2 and n_events(session) == count


def test_tdmrep_origin_given_or_absolute_and_required(session: Session, tmp_path: Path) -> None:
    world = make_world(session)
    plain = write(
        tmp_path / "tdmrep.json", json.dumps([{"location": "/kaufman/", "tdm-reservation": 1}])
    )
    with pytest.raises(ConsentListError, match="origin"):
        sync_consent_file(session, plain)
    report = sync_consent_file(session, plain, origin="https://music.example.org/")
    assert report.recorded == 1 and opted_out(session, world.rec["kaufman"])
    assert not opted_out(session, world.rec["westlund"])

    absolute = write(
        tmp_path / "abs" / "tdmrep.json",
        json.dumps([{"location": "https://other.example.net/*", "tdm-reservation": 1}]),
    )
    report = sync_consent_file(session, absolute)
    assert report.recorded == 1 and opted_out(session, world.rec["other_site"])


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConsentListError, match="needs a header"):
        parse_consent_file(write(tmp_path / "x.csv", "foo,bar\n1,2\n"))
    with pytest.raises(ConsentListError, match="not valid JSON"):
        parse_consent_file(write(tmp_path / "x.json", "[1,"))
    with pytest.raises(ConsentListError, match="entries"):
        parse_consent_file(write(tmp_path / "y.json", '{"names": []}'))
    with pytest.raises(ValueError, match="purpose"):
        parse_consent_file(write(tmp_path / "z.csv", "party\nA\n"), purpose="everything")
