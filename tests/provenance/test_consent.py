"""Consent resolution: a table of cases over recording, party and source events."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provenance.consent import (
    ConsentSubject,
    covering_purposes,
    current_consent,
    record_consent,
)
from provenance.models import AuditEvent, ConsentEvent, Recording, Source
from provenance.parties import add_credit, get_or_create_party

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
AT = T0 + dt.timedelta(days=10)


def day(n: int) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


@dataclass(frozen=True)
class Ev:
    who: str  # "recording" | "party:a" | "party:b" | "source" | "other_recording"
    action: str
    purpose: str
    when: dt.datetime


@dataclass(frozen=True)
class Case:
    name: str
    events: tuple[Ev, ...]
    purpose: str
    expected: str
    level: str | None
    reason: str
    at: dt.datetime = AT


CASES = [
    Case("no events", (), "training", "none", None, "no_event"),
    Case(
        "recording opt-out",
        (Ev("recording", "opt_out", "training", day(1)),),
        "training",
        "opted_out",
        "recording",
        "opted_out:recording",
    ),
    Case(
        "latest effective wins (opt-in after opt-out)",
        (
            Ev("recording", "opt_out", "training", day(1)),
            Ev("recording", "opt_in", "training", day(2)),
        ),
        "training",
        "opted_in",
        "recording",
        "opted_in:recording",
    ),
    Case(
        "latest effective wins regardless of insertion order",
        (
            Ev("recording", "opt_out", "training", day(3)),
            Ev("recording", "opt_in", "training", day(2)),
        ),
        "training",
        "opted_out",
        "recording",
        "opted_out:recording",
    ),
    Case(
        "equal time: opt-out beats opt-in (opt-in recorded last)",
        (
            Ev("recording", "opt_out", "training", day(2)),
            Ev("recording", "opt_in", "training", day(2)),
        ),
        "training",
        "opted_out",
        "recording",
        "opted_out:recording",
    ),
    Case(
        "future event does not apply yet",
        (
            Ev("recording", "opt_in", "training", day(1)),
            Ev("recording", "opt_out", "training", day(20)),
        ),
        "training",
        "opted_in",
        "recording",
        "opted_in:recording",
    ),
    Case(
        "future event applies once its time comes",
        (
            Ev("recording", "opt_in", "training", day(1)),
            Ev("recording", "opt_out", "training", day(20)),
        ),
        "training",
        "opted_out",
        "recording",
        "opted_out:recording",
        at=day(21),
    ),
    Case(
        "only a future event: none",
        (Ev("recording", "opt_out", "any", day(20)),),
        "training",
        "none",
        None,
        "no_event",
    ),
    Case(
        "any covers training",
        (Ev("recording", "opt_out", "any", day(1)),),
        "training",
        "opted_out",
        "recording",
        "opted_out:recording",
    ),
    Case(
        "any covers style_imitation",
        (Ev("party:a", "opt_out", "any", day(1)),),
        "style_imitation",
        "opted_out",
        "party",
        "opted_out:party=A",
    ),
    Case(
        "training covers commercial_training",
        (Ev("recording", "opt_out", "training", day(1)),),
        "commercial_training",
        "opted_out",
        "recording",
        "opted_out:recording",
    ),
    Case(
        "commercial_training opt-out does not cover training",
        (Ev("recording", "opt_out", "commercial_training", day(1)),),
        "training",
        "none",
        None,
        "no_event",
    ),
    Case(
        "style_imitation opt-out does not cover training",
        (Ev("recording", "opt_out", "style_imitation", day(1)),),
        "training",
        "none",
        None,
        "no_event",
    ),
    Case(
        "training opt-out does not answer an `any` query",
        (Ev("recording", "opt_out", "training", day(1)),),
        "any",
        "none",
        None,
        "no_event",
    ),
    Case(
        "recording outranks a later party opt-out",
        (
            Ev("recording", "opt_in", "training", day(1)),
            Ev("party:a", "opt_out", "training", day(5)),
        ),
        "training",
        "opted_in",
        "recording",
        "opted_in:recording",
    ),
    Case(
        "party outranks a later source opt-in",
        (
            Ev("party:a", "opt_out", "training", day(1)),
            Ev("source", "opt_in", "training", day(5)),
        ),
        "training",
        "opted_out",
        "party",
        "opted_out:party=A",
    ),
    Case(
        "source decides when nothing above applies",
        (Ev("source", "opt_out", "training", day(1)),),
        "training",
        "opted_out",
        "source",
        "opted_out:source=S",
    ),
    Case(
        "source opt-out ignored when a party opted in",
        (
            Ev("party:b", "opt_in", "training", day(1)),
            Ev("source", "opt_out", "training", day(2)),
        ),
        "training",
        "opted_in",
        "party",
        "opted_in:party=B",
    ),
    Case(
        "one party opted out is enough, even if another opted in later",
        (
            Ev("party:a", "opt_in", "training", day(1)),
            Ev("party:b", "opt_out", "training", day(2)),
            Ev("party:a", "opt_in", "training", day(3)),
        ),
        "training",
        "opted_out",
        "party",
        "opted_out:party=B",
    ),
    Case(
        "per party, the latest event wins",
        (
            Ev("party:a", "opt_out", "training", day(1)),
            Ev("party:a", "opt_in", "training", day(2)),
        ),
        "training",
        "opted_in",
        "party",
        "opted_in:party=A",
    ),
    Case(
        "a future recording event leaves the party level in charge",
        (
            Ev("party:a", "opt_out", "any", day(1)),
            Ev("recording", "opt_in", "any", day(30)),
        ),
        "commercial_training",
        "opted_out",
        "party",
        "opted_out:party=A",
    ),
    Case(
        "events about another recording do not apply",
        (Ev("other_recording", "opt_out", "any", day(1)),),
        "training",
        "none",
        None,
        "no_event",
    ),
    Case(
        "uncredited party's opt-out does not apply",
        (Ev("party:c", "opt_out", "any", day(1)),),
        "training",
        "none",
        None,
        "no_event",
    ),
    Case(
        "narrow opt-in later than broad opt-out wins for its purpose",
        (
            Ev("recording", "opt_out", "any", day(1)),
            Ev("recording", "opt_in", "commercial_training", day(2)),
        ),
        "commercial_training",
        "opted_in",
        "recording",
        "opted_in:recording",
    ),
    Case(
        "... but not for a sibling purpose",
        (
            Ev("recording", "opt_out", "any", day(1)),
            Ev("recording", "opt_in", "commercial_training", day(2)),
        ),
        "style_imitation",
        "opted_out",
        "recording",
        "opted_out:recording",
    ),
]


def build_world(session: Session, tag: str) -> dict[str, int]:
    """A source, a recording credited to parties A (artist) and B (composer), and an
    unrelated recording credited to C; names and hashes are unique per ``tag``."""
    source = Source(uri=f"file:///music/{tag}", kind="folder")
    session.add(source)
    session.flush()
    ids: dict[str, int] = {"source": source.id}
    for key in ("recording", "other_recording"):
        sha = hashlib.sha256(f"{tag}/{key}".encode()).hexdigest()
        rec = Recording(sha256=sha, size_bytes=1, source_id=source.id)
        session.add(rec)
        session.flush()
        ids[key] = rec.id
    for key, name in (("party:a", "Ana Álvarez"), ("party:b", "Bo Berg"), ("party:c", "Cy")):
        ids[key] = get_or_create_party(session, f"{name} {tag}").id
    add_credit(session, recording_id=ids["recording"], party_id=ids["party:a"])
    add_credit(session, recording_id=ids["recording"], party_id=ids["party:b"], role="composer")
    add_credit(session, recording_id=ids["other_recording"], party_id=ids["party:c"])
    return ids


@pytest.fixture
def world(session: Session) -> dict[str, int]:
    return build_world(session, "shared")


def _subject(world: dict[str, int], who: str) -> ConsentSubject:
    kind = who.split(":")[0].replace("other_", "")
    return ConsentSubject(kind, world[who])  # type: ignore[arg-type]


def test_case_names_are_unique_and_the_table_is_big_enough() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 15


def test_resolution_table(session: Session) -> None:
    """Every case gets its own recording, parties and source in one database (one
    migration per engine keeps this fast); all mismatches are reported together."""
    mismatches = []
    for number, case in enumerate(CASES):
        world = build_world(session, f"case{number}")
        for ev in case.events:
            record_consent(
                session,
                subject=_subject(world, ev.who),
                action=ev.action,
                purpose=ev.purpose,
                effective_at=ev.when,
                origin="cli",
            )
        state = current_consent(
            session, ConsentSubject("recording", world["recording"]), case.purpose, at=case.at
        )
        reason = (
            case.reason.replace("=A", f"={world['party:a']}")
            .replace("=B", f"={world['party:b']}")
            .replace("=S", f"={world['source']}")
        )
        got = (state.state, state.level, state.reason)
        if got != (case.expected, case.level, reason):
            mismatches.append(
                f"{case.name}: got {got}, expected {(case.expected, case.level, reason)}"
            )
            continue
        if case.expected == "none":
            if state.event_id is not None:
                mismatches.append(f"{case.name}: event id {state.event_id} for 'none'")
            continue
        decided = session.get(ConsentEvent, state.event_id)
        want = "opt_out" if case.expected == "opted_out" else "opt_in"
        if decided is None or decided.action != want:
            mismatches.append(f"{case.name}: deciding event {state.event_id} is not an {want}")
    assert not mismatches, "\n".join(mismatches)


def test_party_and_source_subjects_use_their_own_events(
    session: Session, world: dict[str, int]
) -> None:
    record_consent(
        session,
        subject=_subject(world, "recording"),
        action="opt_out",
        purpose="any",
        effective_at=day(1),
        origin="cli",
    )
    party = ConsentSubject("party", world["party:a"])
    assert current_consent(session, party, "training", at=AT).state == "none"
    record_consent(
        session,
        subject=party,
        action="opt_in",
        purpose="training",
        effective_at=day(1),
        origin="cli",
    )
    assert current_consent(session, party, "commercial_training", at=AT).reason == (
        f"opted_in:party={world['party:a']}"
    )
    source = ConsentSubject("source", world["source"])
    assert current_consent(session, source, "training", at=AT).state == "none"


def test_record_consent_dedupes_and_audits(session: Session, world: dict[str, int]) -> None:
    subject = _subject(world, "recording")
    before = session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    kwargs = dict(
        subject=subject,
        action="opt_out",
        purpose="training",
        effective_at=day(1),
        origin="registry_import",
        dedupe_key="k" * 64,
    )
    first = record_consent(session, **kwargs)  # type: ignore[arg-type]
    assert first is not None
    assert record_consent(session, **kwargs) is None  # type: ignore[arg-type]
    after = session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    assert after == before + 1
    audit = session.execute(select(AuditEvent).order_by(AuditEvent.id.desc())).scalars().first()
    assert audit is not None and audit.action == "consent.recorded"
    assert f'"consent_event_id":{first.id}' in audit.payload


BAD_VALUES = [
    ("action", "maybe", "unknown consent action 'maybe'; allowed: opt_in, opt_out"),
    ("purpose", "karaoke", "unknown consent purpose 'karaoke'; allowed: any, training"),
    ("origin", "rumour", "unknown consent origin 'rumour'; allowed: manifest"),
    ("effective_at", dt.datetime(2025, 1, 1), "is naive"),
    ("subject", ConsentSubject("party", 999_999), "no party with id 999999"),
]


def test_record_consent_rejects_bad_values(session: Session, world: dict[str, int]) -> None:
    for field, value, message in BAD_VALUES:
        kwargs: dict[str, object] = dict(
            subject=_subject(world, "recording"),
            action="opt_out",
            purpose="training",
            effective_at=day(1),
            origin="cli",
        )
        kwargs[field] = value
        with pytest.raises(ValueError, match=re.escape(message)):
            record_consent(session, **kwargs)  # type: ignore[arg-type]
    assert session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one() == 0


def test_subject_kind_and_purpose_tree() -> None:
    with pytest.raises(ValueError, match="unknown consent subject kind 'label'"):
        ConsentSubject("label", 1)  # type: ignore[arg-type]
    assert covering_purposes("commercial_training") == ("commercial_training", "training", "any")
    assert covering_purposes("style_imitation") == ("style_imitation", "any")
    assert covering_purposes("any") == ("any",)
