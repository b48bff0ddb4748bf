"""Prompt screen on the database: the prompt lists, style-imitation opt-outs, recorded decisions."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from generation.prompt_screen import PromptScreen, ScreenResult, record_screen_decision
from provenance.audit_log import verify_chain
from provenance.consent import ConsentSubject, record_consent
from provenance.models import AuditEvent, GateDecision, Party
from provenance.parties import get_or_create_party
from tests.common.prompt_screen import demo_artists, read_prompts

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

# Parties named with ordinary words or very short names: they must not block ordinary
# prompts. "Tape" also opts out of style imitation below.
DECOYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Ambient": ("group", ("AM",)),
    "Tape": ("group", ()),
    "Blue Note": ("organisation", ("BN",)),
    "Line": ("person", ()),
    "XX": ("group", ()),
}
# Demo artists that opt out of style imitation in the list tests: their surnames are
# then screened alone, so ordinary prompts must survive that too.
OPTED_OUT = ("Max McCracken", "Will Savino", "Lincoln Domina", "Irving Berlin", "Tape")


def register_parties(session: Session) -> dict[str, Party]:
    """Every demo artist and every decoy as parties, through the provenance API."""
    parties = {
        name: get_or_create_party(session, name, aliases=aliases)
        for name, aliases in demo_artists().items()
    }
    for name, (kind, aliases) in DECOYS.items():
        parties[name] = get_or_create_party(session, name, kind=kind, aliases=aliases)
    session.flush()
    return parties


def opt_out(
    session: Session, party: Party, *, purpose: str = "style_imitation", at: dt.datetime = T0
) -> None:
    record_consent(
        session,
        subject=ConsentSubject("party", party.id),
        action="opt_out",
        purpose=purpose,
        effective_at=at,
        origin="cli",
    )


# --- the prompt lists, on both engines ------------------------------------------------


def test_demo_artists_are_the_corpus_people() -> None:
    artists = demo_artists()
    assert {"Mattias Westlund", "Will Savino", "Max McCracken", "Irving Berlin"} <= set(artists)
    assert artists["Max McCracken"] == ("Maxstack",)
    assert len(artists) == 10


def test_benign_prompts_are_allowed(session: Session) -> None:
    parties = register_parties(session)
    for name in OPTED_OUT:
        opt_out(session, parties[name])
    screen = PromptScreen.from_session(session)
    assert len(screen.style_opt_outs) == len(OPTED_OUT)
    assert {name for _, name, _ in screen.skipped} == {"AM", "BN", "XX"}
    prompts = read_prompts("benign_prompts.txt")
    assert len(prompts) >= 100
    blocked = {p: screen.screen(p).reasons for p in prompts}
    assert {p: r for p, r in blocked.items() if r} == {}


def test_obfuscated_prompts_are_blocked(session: Session) -> None:
    parties = register_parties(session)
    for name in OPTED_OUT:
        opt_out(session, parties[name])
    screen = PromptScreen.from_session(session)
    demo_ids = {parties[name].id for name in demo_artists()}
    prompts = read_prompts("obfuscated_prompts.txt")
    assert len(prompts) >= 50
    methods: set[str] = set()
    missed, wrong = [], []
    for prompt in prompts:
        result = screen.screen(prompt)
        if result.verdict != "block":
            missed.append(prompt)
        if not {m["party_id"] for m in result.matches} <= demo_ids:
            wrong.append((prompt, result.reasons))
        methods.update(m["method"] for m in result.matches)
    assert missed == []
    assert wrong == []
    assert {"exact", "spaced", "leet", "fuzzy"} <= methods
    named = {m["name"] for p in prompts for m in screen.screen(p).matches}
    assert named == set(demo_artists())  # every demo artist is exercised


# --- style-imitation opt-out ---------------------------------------------------------------


def test_style_opt_out_blocks_the_surname_alone(session: Session) -> None:
    parties = register_parties(session)
    westlund = parties["Mattias Westlund"]
    prompt = "sweeping westlund strings for a fantasy battle"

    # A distinctive surname blocks alone; the method says whether the party opted out.
    free = PromptScreen.from_session(session).screen(prompt)
    assert free.verdict == "block"
    assert (free.matches[0]["via"], free.matches[0]["method"]) == ("surname", "exact")

    # Opting out of training says nothing about style imitation.
    opt_out(session, westlund, purpose="training")
    assert PromptScreen.from_session(session).screen(prompt).matches[0]["method"] == "exact"

    opt_out(session, westlund, at=T0 + dt.timedelta(days=10))
    # Not yet in force at an earlier screening time.
    early = PromptScreen.from_session(session, at=T0 + dt.timedelta(days=5))
    assert early.screen(prompt).matches[0]["method"] == "exact"

    screen = PromptScreen.from_session(session)
    assert screen.style_opt_outs == [westlund.id]
    result = screen.screen(prompt)
    assert result.verdict == "block"
    (match,) = result.matches
    assert match["party_id"] == westlund.id
    assert match["method"] == "style_opt_out"
    assert match["matched_text"] == "westlund"
    assert "opted out of style imitation" in result.reasons[0]
    for variant in ("W e s t l u n d strings", "W3stlund strings", "Westlnd strings"):
        assert screen.screen(variant).verdict == "block", variant
    # The given name alone is still not enough.
    assert screen.screen("mattias plays the strings").verdict == "allow"

    # A later opt-in lifts it again.
    record_consent(
        session,
        subject=ConsentSubject("party", westlund.id),
        action="opt_in",
        purpose="style_imitation",
        effective_at=T0 + dt.timedelta(days=20),
        origin="cli",
    )
    assert PromptScreen.from_session(session).screen(prompt).matches[0]["method"] == "exact"


def test_style_opt_out_widens_the_cues_of_an_ordinary_surname(session: Session) -> None:
    parties = register_parties(session)
    prompt = "Berlin-style show tune with a crooner"
    assert PromptScreen.from_session(session).screen(prompt).verdict == "allow"
    opt_out(session, parties["Irving Berlin"])
    result = PromptScreen.from_session(session).screen(prompt)
    assert [m["name"] for m in result.matches] == ["Irving Berlin"]
    assert result.matches[0]["cue"] == "style"
    # The city in a genre name still passes.
    assert PromptScreen.from_session(session).screen("berlin techno").verdict == "allow"


def test_opt_out_of_any_purpose_covers_style_imitation(session: Session) -> None:
    parties = register_parties(session)
    opt_out(session, parties["Doug Kaufman"], purpose="any")
    opt_out(session, parties["Tape"])
    screen = PromptScreen.from_session(session)
    assert screen.screen("a kaufman jig").matches[0]["method"] == "style_opt_out"
    # An opted-out party named with an ordinary word still needs a cue.
    assert screen.screen("tape saturation on the drums").verdict == "allow"
    assert screen.screen("in the style of Tape").verdict == "block"
    with pytest.raises(ValueError, match="naive"):
        PromptScreen.from_session(session, at=dt.datetime(2024, 1, 1))


# --- recording decisions --------------------------------------------------------------------


def test_record_screen_decision_writes_row_and_audit_event(session: Session) -> None:
    parties = register_parties(session)
    screen = PromptScreen.from_session(session)
    blocked = screen.screen("in the style of m a x m c c r a c k e n")
    allowed = screen.screen("warm rhodes chords")
    blocked_row = record_screen_decision(session, None, blocked)
    allowed_row = record_screen_decision(session, None, allowed)
    session.flush()

    rows = session.execute(select(GateDecision).order_by(GateDecision.id)).scalars().all()
    assert [r.id for r in rows] == [blocked_row.id, allowed_row.id]
    assert [(r.stage, r.verdict) for r in rows] == [
        ("prompt_screen", "block"),
        ("prompt_screen", "allow"),
    ]
    assert rows[0].reasons == blocked.reasons
    max_id = parties["Max McCracken"].id
    assert rows[0].reasons[0].startswith(f'names party {max_id} "Max McCracken"')
    assert rows[0].scores["matches"][0]["matched_text"] == "m a x m c c r a c k e n"
    assert rows[0].scores["prompt_sha256"] == blocked.prompt_sha256
    assert rows[0].thresholds["parties"] == len(parties)
    assert rows[1].reasons == [] and rows[1].scores["matches"] == []

    events = session.execute(
        select(AuditEvent).where(AuditEvent.action == "gate.decided").order_by(AuditEvent.id)
    ).scalars()
    payloads = [json.loads(e.payload) for e in events]
    assert [(p["stage"], p["verdict"]) for p in payloads] == [
        ("prompt_screen", "block"),
        ("prompt_screen", "allow"),
    ]
    assert payloads[0]["party_ids"] == [parties["Max McCracken"].id]
    assert payloads[0]["methods"] == ["spaced"]
    assert verify_chain(session)[1] == []

    with pytest.raises(ValueError, match="verdict"):
        record_screen_decision(session, None, ScreenResult("maybe", [], []))
