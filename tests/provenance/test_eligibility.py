"""Eligibility under the shipped policies: the demo corpus facts, licences, artists, consent."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from provenance.consent import ConsentSubject, record_consent
from provenance.eligibility import (
    eligibility,
    eligibility_table,
    eligible_recordings,
    licence_reasons,
)
from provenance.licences import record_licence
from provenance.models import Recording, Source, utcnow
from provenance.parties import add_credit, get_or_create_party
from provenance.policies import PolicyError, load_policy, parse_policy, policy_names

DEMO_MANIFEST = Path(__file__).resolve().parents[2] / "provenance" / "data" / "demo_manifest.csv"

# Under `research` (documented in provenance/policies/research.toml): free and
# non-commercial licences pass; custom terms unclear for training and NOASSERTION don't.
RESEARCH_BY_LICENCE = {
    "GPL-2.0-or-later": [],
    "CC-BY-SA-3.0": [],
    "GPL-2.0-only": [],
    "LicenseRef-Essen-NonCommercial": [],
    "LicenseRef-Drascula": ["licence_not_allowed:LicenseRef-Drascula"],
    "LicenseRef-Humdrum-Palestrina": ["licence_not_allowed:LicenseRef-Humdrum-Palestrina"],
    "NOASSERTION": ["noassertion"],
}


def demo_rows() -> list[dict[str, str]]:
    with DEMO_MANIFEST.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def load_demo_facts(session: Session) -> dict[int, dict[str, str]]:
    """Recordings (synthetic sha256s), artist credits and licences from the demo manifest, and
    the opt-out ingest reads from the one file signed "do not train"."""
    sources: dict[str, int] = {}
    by_recording: dict[int, dict[str, str]] = {}
    for row in demo_rows():
        if row["source"] not in sources:
            source = Source(uri=row["source"], kind="manifest")
            session.add(source)
            session.flush()
            sources[row["source"]] = source.id
        sha = hashlib.sha256(f"{row['source']}|{row['path']}".encode()).hexdigest()
        rec = Recording(
            sha256=sha,
            size_bytes=1,
            title=row["title"] or None,
            duration_s=float(row["duration_s"]),
            source_id=sources[row["source"]],
        )
        session.add(rec)
        session.flush()
        if row["artist"].strip():
            party = get_or_create_party(session, row["artist"])
            add_credit(session, recording_id=rec.id, party_id=party.id, fact_source="manifest")
        record_licence(session, recording_id=rec.id, declared=row["license"], asserted_by="demo")
        if row["credential"] == "do_not_train":
            record_consent(
                session,
                subject=ConsentSubject("recording", rec.id),
                action="opt_out",
                purpose="training",
                effective_at=utcnow() - dt.timedelta(seconds=1),
                origin="c2pa",
                evidence="c2pa manifest (demo) :: cawg.ai_training=notAllowed",
            )
        by_recording[rec.id] = row
    return by_recording


def credential_reasons(row: dict[str, str]) -> list[str]:
    """What a "do not train" credential adds under any policy."""
    return ["opted_out:recording:c2pa"] if row["credential"] == "do_not_train" else []


def test_demo_manifest_has_30_rows() -> None:
    rows = demo_rows()
    assert len(rows) == 30
    assert [r["credential"] for r in rows].count("do_not_train") == 1
    assert {r["expected_commercial_decision"].split(" ")[0] for r in rows} == {
        "include",
        "exclude",
    }
    assert {r["license"] for r in rows} == set(RESEARCH_BY_LICENCE)


def test_demo_facts_under_both_policies(session: Session) -> None:
    facts = load_demo_facts(session)
    commercial, research = load_policy("commercial"), load_policy("research")

    table = eligibility_table(session, commercial)
    assert [v.recording_id for v in table] == sorted(facts)
    for verdict in table:
        row = facts[verdict.recording_id]
        expected = row["expected_commercial_decision"].split(" ")[0]
        got = "include" if verdict.eligible else "exclude"
        assert got == expected, (row["path"], verdict.reasons)
        licence = row["license"]
        assert verdict.concluded_licence == licence
        assert verdict.licence_assertion_id is not None
        signed = row["credential"] == "do_not_train"
        assert verdict.consent_state == ("opted_out" if signed else "none")
        # Exact reasons: a commercial licence check, plus the named-artist rule.
        want = [] if licence in commercial.allowed_licences else [f"licence_not_allowed:{licence}"]
        if licence == "NOASSERTION":
            want = ["noassertion"]
        if not row["artist"].strip():
            want.append("no_named_artist")
        assert verdict.reasons == want + credential_reasons(row), row["path"]
    included = sum(v.eligible for v in table)
    assert included == sum(
        r["expected_commercial_decision"].startswith("include") for r in facts.values()
    )
    assert included == 19

    for verdict in eligibility_table(session, research):
        row = facts[verdict.recording_id]
        want = RESEARCH_BY_LICENCE[row["license"]] + credential_reasons(row)
        assert verdict.reasons == want, row["path"]
    research_ids = [v.recording_id for v in eligible_recordings(session, research)]
    assert research_ids == sorted(
        rid
        for rid, row in facts.items()
        if not RESEARCH_BY_LICENCE[row["license"]] + credential_reasons(row)
    )


def _recording(session: Session, name: str, licence: str, artist: str | None) -> Recording:
    rec = Recording(sha256=hashlib.sha256(name.encode()).hexdigest(), size_bytes=1, title=name)
    session.add(rec)
    session.flush()
    if artist:
        party = get_or_create_party(session, artist)
        add_credit(session, recording_id=rec.id, party_id=party.id)
    record_licence(session, recording_id=rec.id, declared=licence, asserted_by="test")
    return rec


OPT_IN_POLICY = b"""
name = "strict"
version = "7"
[consent]
requirement = "opt_in_required"
purpose = "commercial_training"
[credits]
require_named_artist = true
[obligations]
attribution_ok = true
share_alike_ok = false
[licences]
allowed = ["CC-BY-4.0", "CC-BY-SA-4.0", "MIT"]
"""


def test_artists_consent_status_and_expressions(session: Session) -> None:
    commercial, research = load_policy("commercial"), load_policy("research")
    strict = parse_policy(OPT_IN_POLICY, origin="test")
    # Licences are asserted "now"; consent takes effect tomorrow; verdicts are asked later.
    t0 = utcnow() + dt.timedelta(days=1)
    at = t0 + dt.timedelta(days=4)

    credited = _recording(session, "credited", "CC-BY-4.0", "Ada Artist")
    assert eligibility(session, credited.id, commercial, at).eligible

    # A composer credit is not an artist credit.
    composed = _recording(session, "composed", "CC-BY-4.0", None)
    composer = get_or_create_party(session, "Carl Composer")
    add_credit(session, recording_id=composed.id, party_id=composer.id, role="composer")
    assert eligibility(session, composed.id, commercial, at).reasons == ["no_named_artist"]
    assert eligibility(session, composed.id, research, at).eligible

    # The artist opts out of training: covers commercial_training and training.
    artist = get_or_create_party(session, "Ada Artist")
    event = record_consent(
        session,
        subject=ConsentSubject("party", artist.id),
        action="opt_out",
        purpose="training",
        effective_at=t0,
        origin="cli",
    )
    assert event is not None
    verdict = eligibility(session, credited.id, commercial, at)
    assert verdict.reasons == [f"opted_out:party={artist.id}"]
    assert (verdict.consent_state, verdict.consent_event_id) == ("opted_out", event.id)
    assert eligibility(session, credited.id, research, at).reasons == [
        f"opted_out:party={artist.id}"
    ]
    # Before the opt-out took effect the recording was eligible.
    assert (
        eligibility(session, credited.id, commercial, t0 - dt.timedelta(days=1)).eligible is False
    )
    # ... no: licences are asserted "now", so at t0 no licence was in force yet.
    assert eligibility(session, credited.id, commercial, t0 - dt.timedelta(days=1)).reasons == [
        "noassertion"
    ]

    # A recording-level opt-in outranks the party opt-out.
    record_consent(
        session,
        subject=ConsentSubject("recording", credited.id),
        action="opt_in",
        purpose="any",
        effective_at=t0,
        origin="cli",
    )
    assert eligibility(session, credited.id, commercial, at).eligible

    # opt_in_required: no event → no_opt_in; a source opt-out → opted_out:source=<id>.
    other = _recording(session, "other", "MIT", "Bea Band")
    assert eligibility(session, other.id, strict, at).reasons == ["no_opt_in"]
    source = Source(uri="https://example.org/label", kind="manifest")
    session.add(source)
    session.flush()
    other.source_id = source.id
    session.flush()
    record_consent(
        session,
        subject=ConsentSubject("source", source.id),
        action="opt_out",
        purpose="commercial_training",
        effective_at=t0,
        origin="tdmrep",
    )
    assert eligibility(session, other.id, strict, at).reasons == [f"opted_out:source={source.id}"]
    assert eligibility(
        session, other.id, research, at
    ).eligible  # research: training, not commercial
    record_consent(
        session,
        subject=ConsentSubject("recording", other.id),
        action="opt_out",
        purpose="commercial_training",
        effective_at=t0,
        origin="cli",
    )
    assert eligibility(session, other.id, strict, at).reasons == ["opted_out:recording"]

    # Share-alike is not acceptable under `strict` even though CC-BY-SA-4.0 is listed.
    sa = _recording(session, "sa", "CC-BY-SA-4.0", "Cleo")
    record_consent(
        session,
        subject=ConsentSubject("recording", sa.id),
        action="opt_in",
        purpose="training",
        effective_at=t0,
        origin="cli",
    )
    assert eligibility(session, sa.id, strict, at).reasons == ["licence_not_allowed:CC-BY-SA-4.0"]

    # Status: quarantined and duplicates are reported, and left out of eligible_recordings.
    dup = _recording(session, "dup", "CC-BY-4.0", "Ada Artist 2")
    dup.duplicate_of_id = composed.id
    bad = _recording(session, "bad", "CC-BY-4.0", "Ada Artist 3")
    bad.status = "quarantined"
    session.flush()
    assert eligibility(session, dup.id, research).reasons == [f"duplicate_of:{composed.id}"]
    assert eligibility(session, bad.id, research).reasons == ["quarantined"]
    ids = [v.recording_id for v in eligible_recordings(session, research)]
    assert dup.id not in ids and bad.id not in ids and composed.id in ids
    assert bad.id not in [v.recording_id for v in eligibility_table(session, research)]
    assert bad.id in [
        v.recording_id for v in eligibility_table(session, research, include_quarantined=True)
    ]


@pytest.mark.parametrize(
    ("concluded", "commercial_reasons", "research_reasons"),
    [
        ("MIT OR LicenseRef-Essen-NonCommercial", [], []),
        (
            "MIT AND LicenseRef-Essen-NonCommercial",
            ["licence_not_allowed:LicenseRef-Essen-NonCommercial"],
            [],
        ),
        ("CC-BY-NC-4.0", ["licence_not_allowed:CC-BY-NC-4.0"], []),
        (
            "CC-BY-NC-4.0 OR LicenseRef-Drascula",
            ["licence_not_allowed:CC-BY-NC-4.0", "licence_not_allowed:LicenseRef-Drascula"],
            [],
        ),
        (
            "LicenseRef-Drascula AND (MIT OR CC-BY-NC-ND-4.0)",
            ["licence_not_allowed:LicenseRef-Drascula"],
            ["licence_not_allowed:LicenseRef-Drascula"],
        ),
        ("GPL-2.0-or-later WITH Classpath-exception-2.0", [], []),
        ("Apache-2.0+", [], []),
        (
            "CC-BY-NC-ND-4.0",
            ["licence_not_allowed:CC-BY-NC-ND-4.0"],
            ["licence_not_allowed:CC-BY-NC-ND-4.0"],
        ),
        ("NONE", ["licence_not_allowed:NONE"], ["licence_not_allowed:NONE"]),
        ("NOASSERTION", ["noassertion"], ["noassertion"]),
    ],
)
def test_licence_expressions(
    concluded: str, commercial_reasons: list[str], research_reasons: list[str]
) -> None:
    assert licence_reasons(concluded, load_policy("commercial")) == commercial_reasons
    assert licence_reasons(concluded, load_policy("research")) == research_reasons


def test_shipped_policies() -> None:
    assert policy_names() == ["commercial", "research"]
    commercial, research = load_policy("commercial"), load_policy("research")
    assert (commercial.consent_purpose, research.consent_purpose) == (
        "commercial_training",
        "training",
    )
    assert commercial.require_named_artist and not research.require_named_artist
    assert len(commercial.sha256) == 64 and commercial.sha256 != research.sha256
    assert not any("-NC" in lid for lid in commercial.allowed_licences)
    assert set(commercial.allowed_licences) < set(research.allowed_licences)
    with pytest.raises(PolicyError, match="unknown policy 'nope'; available: commercial, research"):
        load_policy("nope")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("opt_in_required", "always"), "consent requirement 'always' unknown"),
        (('"MIT"]', '"MIT", "Not-A-Licence"]'), "allowed licence 'Not-A-Licence'"),
        (('"MIT"]', '"GPL-2.0+"]'), "concludes 'GPL-2.0-or-later'"),
        (("commercial_training", "karaoke"), "unknown consent purpose 'karaoke'"),
        (("share_alike_ok = false", "share_alike_ok = 'no'"), "'share_alike_ok' must be bool"),
        (("[credits]", "[credit]"), "missing key 'credits'"),
        (('version = "7"', 'version = "7"\n[[['), "not valid TOML"),
        (('version = "7"', ""), "missing key 'version'"),
    ],
)
def test_bad_policies_are_rejected(change: tuple[str, str], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(OPT_IN_POLICY.replace(change[0].encode(), change[1].encode(), 1))
