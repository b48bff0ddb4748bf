"""The consent ledger: record consent events, and derive current consent from them.

Consent is never stored as a flag. :func:`current_consent` derives it from the
append-only ``consent_events`` with these rules:

**Purposes.** Purposes form a tree; an event about a purpose covers every
purpose beneath it::

    any
    ├── training
    │   └── commercial_training
    └── style_imitation

So a query for ``commercial_training`` is decided by events about
``commercial_training``, ``training`` or ``any``; a query for ``training`` by
``training`` or ``any`` (an opt-out of only *commercial* training says nothing
about research training); a query for ``style_imitation`` by
``style_imitation`` or ``any``; a query for ``any`` only by ``any`` events.

**Which events apply.** An event applies at time ``at`` (default: now) when its
purpose covers the queried purpose and its ``effective_at`` is not after
``at``. Events effective in the future do not apply yet.

**Levels.** For a recording, events can be about the recording itself, a party
credited on it (any credit role), or its source (``recordings.source_id``).
The most specific level with an applicable event decides: recording outranks
party, party outranks source. A lower level is consulted only when every
higher level has no applicable event.

**Within a level.** The latest ``effective_at`` wins; at equal effective time
opt-out beats opt-in (then the newest event id is reported). At the party
level each credited party is resolved on its own this way, and *any* party
that is opted out makes the recording opted out (the lowest such party id is
reported); otherwise, if some party opted in, the recording is opted in.

**Result.** ``opted_in``, ``opted_out`` or ``none`` (no applicable event at
any level), with the deciding event, its level, and a machine-readable reason:
``opted_out:recording``, ``opted_out:party=<id>``, ``opted_out:source=<id>``,
``opted_in:<same forms>`` or ``no_event``.

A party or source subject is resolved from its own events only.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from provenance.audit_log import _lock_chain, append_event
from provenance.models import ConsentEvent, Credit, Party, Recording, Source, utcnow
from provenance.models.rights import CONSENT_ACTIONS, CONSENT_ORIGINS, CONSENT_PURPOSES
from provenance.parties import recording_party_ids

logger = logging.getLogger(__name__)

SubjectKind = Literal["party", "recording", "source"]
SUBJECT_KINDS: tuple[SubjectKind, ...] = ("party", "recording", "source")
ConsentLevel = Literal["recording", "party", "source"]

# purpose -> its parent in the purpose tree (``any`` is the root).
PURPOSE_PARENT: dict[str, str | None] = {
    "any": None,
    "training": "any",
    "commercial_training": "training",
    "style_imitation": "any",
}
assert set(PURPOSE_PARENT) == set(CONSENT_PURPOSES)

_SUBJECT_MODELS = {"party": Party, "recording": Recording, "source": Source}

# A training-and-mining assertion read from a file's Content Credentials at ingest
# (:mod:`provenance.ingest_facts`).
C2PA_ORIGIN = "c2pa"
assert C2PA_ORIGIN in CONSENT_ORIGINS


@dataclass(frozen=True)
class ConsentSubject:
    """Who or what a consent event is about: one party, recording or source, by id."""

    kind: SubjectKind
    id: int

    def __post_init__(self) -> None:
        if self.kind not in SUBJECT_KINDS:
            raise ValueError(
                f"unknown consent subject kind {self.kind!r}; allowed: {', '.join(SUBJECT_KINDS)}"
            )


@dataclass(frozen=True)
class ConsentState:
    state: Literal["opted_in", "opted_out", "none"]
    event_id: int | None
    level: ConsentLevel | None
    reason: str


def covering_purposes(purpose: str) -> tuple[str, ...]:
    """``purpose`` and its ancestors: the event purposes that decide a query for it."""
    if purpose not in PURPOSE_PARENT:
        raise ValueError(
            f"unknown consent purpose {purpose!r}; allowed: {', '.join(CONSENT_PURPOSES)}"
        )
    chain: list[str] = []
    current: str | None = purpose
    while current is not None:
        chain.append(current)
        current = PURPOSE_PARENT[current]
    return tuple(chain)


def _require_aware(value: dt.datetime, what: str) -> None:
    if value.tzinfo is None:
        raise ValueError(f"{what} {value.isoformat()} is naive; give a timezone-aware UTC time")


def record_consent(
    session: Session,
    *,
    subject: ConsentSubject,
    action: str,
    purpose: str,
    effective_at: dt.datetime,
    origin: str,
    evidence: str | None = None,
    dedupe_key: str | None = None,
) -> ConsentEvent | None:
    """Append one consent event and a ``consent.recorded`` audit event; never commits.

    Returns ``None`` (writing nothing) when an event with ``dedupe_key`` exists:
    the same statement arriving again, e.g. a registry synced twice.
    """
    if action not in CONSENT_ACTIONS:
        raise ValueError(
            f"unknown consent action {action!r}; allowed: {', '.join(CONSENT_ACTIONS)}"
        )
    covering_purposes(purpose)  # validates
    if origin not in CONSENT_ORIGINS:
        raise ValueError(
            f"unknown consent origin {origin!r}; allowed: {', '.join(CONSENT_ORIGINS)}"
        )
    _require_aware(effective_at, "effective_at")
    if session.get(_SUBJECT_MODELS[subject.kind], subject.id) is None:
        raise ValueError(f"no {subject.kind} with id {subject.id}")
    # Serialise writers before the dedupe check so two syncs cannot both insert.
    _lock_chain(session)
    if dedupe_key is not None:
        seen = session.execute(
            select(ConsentEvent.id).where(ConsentEvent.dedupe_key == dedupe_key)
        ).scalar_one_or_none()
        if seen is not None:
            return None
    event = ConsentEvent(
        party_id=subject.id if subject.kind == "party" else None,
        recording_id=subject.id if subject.kind == "recording" else None,
        source_id=subject.id if subject.kind == "source" else None,
        action=action,
        purpose=purpose,
        effective_at=effective_at,
        recorded_at=utcnow(),
        origin=origin,
        evidence=evidence,
        dedupe_key=dedupe_key,
    )
    session.add(event)
    session.flush()
    append_event(
        session,
        "consent.recorded",
        entity=subject.kind,
        entity_id=subject.id,
        payload={
            "consent_event_id": event.id,
            "action": action,
            "purpose": purpose,
            "effective_at": effective_at.astimezone(dt.UTC).isoformat(),
            "origin": origin,
            "evidence": evidence,
            "dedupe_key": dedupe_key,
        },
    )
    return event


class _Deciding(Protocol):
    """What deciding needs of an event: a stored ``ConsentEvent`` or its :class:`_EventFacts`."""

    @property
    def id(self) -> int: ...
    @property
    def action(self) -> str: ...
    @property
    def effective_at(self) -> dt.datetime: ...


@dataclass(frozen=True)
class _EventFacts:
    id: int
    action: str
    effective_at: dt.datetime


_E = TypeVar("_E", bound=_Deciding)


def _decide(events: Sequence[_E]) -> _E | None:
    """The deciding event among one subject's applicable events (latest; opt-out on ties)."""
    if not events:
        return None
    return max(events, key=lambda e: (e.effective_at, e.action == "opt_out", e.id))


def _applicable(
    session: Session, where: ColumnElement[bool], purposes: tuple[str, ...], at: dt.datetime
) -> list[ConsentEvent]:
    return list(
        session.execute(
            select(ConsentEvent).where(
                where, ConsentEvent.purpose.in_(purposes), ConsentEvent.effective_at <= at
            )
        ).scalars()
    )


def _state(event: _Deciding, level: ConsentLevel, label: str) -> ConsentState:
    state: Literal["opted_in", "opted_out"] = (
        "opted_out" if event.action == "opt_out" else "opted_in"
    )
    return ConsentState(state, event.id, level, f"{state}:{label}")


NO_CONSENT_EVENT = ConsentState("none", None, None, "no_event")


def current_consent(
    session: Session,
    subject: ConsentSubject,
    purpose: str,
    *,
    at: dt.datetime | None = None,
) -> ConsentState:
    """Consent for ``purpose`` on ``subject`` at ``at`` (default now); rules in the module doc."""
    purposes = covering_purposes(purpose)
    at = at or utcnow()
    _require_aware(at, "at")
    if subject.kind == "party":
        decided = _decide(_applicable(session, ConsentEvent.party_id == subject.id, purposes, at))
        return _state(decided, "party", f"party={subject.id}") if decided else NO_CONSENT_EVENT
    if subject.kind == "source":
        decided = _decide(_applicable(session, ConsentEvent.source_id == subject.id, purposes, at))
        return _state(decided, "source", f"source={subject.id}") if decided else NO_CONSENT_EVENT

    recording = session.get(Recording, subject.id)
    if recording is None:
        raise ValueError(f"no recording with id {subject.id}")
    decided = _decide(_applicable(session, ConsentEvent.recording_id == recording.id, purposes, at))
    if decided is not None:
        return _state(decided, "recording", "recording")

    party_ids = recording_party_ids(session, recording.id)
    if party_ids:
        events = _applicable(session, ConsentEvent.party_id.in_(party_ids), purposes, at)
        by_party: dict[int, list[ConsentEvent]] = {}
        for event in events:
            assert event.party_id is not None
            by_party.setdefault(event.party_id, []).append(event)
        per_party = {pid: _decide(evs) for pid, evs in sorted(by_party.items())}
        for pid, deciding in per_party.items():
            if deciding is not None and deciding.action == "opt_out":
                return _state(deciding, "party", f"party={pid}")
        for pid, deciding in per_party.items():
            if deciding is not None:
                return _state(deciding, "party", f"party={pid}")

    if recording.source_id is not None:
        source_id = recording.source_id
        decided = _decide(_applicable(session, ConsentEvent.source_id == source_id, purposes, at))
        if decided is not None:
            return _state(decided, "source", f"source={source_id}")
    return NO_CONSENT_EVENT


def describe_subject(session: Session, subject: ConsentSubject) -> str:
    """A human label: the party's name, the recording's sha256, the source's uri."""
    if subject.kind == "party":
        party = session.get(Party, subject.id)
        return f"party {party.name!r}" if party else f"party #{subject.id}"
    if subject.kind == "recording":
        rec = session.get(Recording, subject.id)
        return f"recording {rec.sha256}" if rec else f"recording #{subject.id}"
    source = session.get(Source, subject.id)
    return f"source {source.uri}" if source else f"source #{subject.id}"


def event_subject(event: ConsentEvent) -> ConsentSubject:
    """The subject a stored event is about."""
    if event.party_id is not None:
        return ConsentSubject("party", event.party_id)
    if event.recording_id is not None:
        return ConsentSubject("recording", event.recording_id)
    assert event.source_id is not None
    return ConsentSubject("source", event.source_id)


# Ids per IN (...) list: below SQLite's oldest limit of 999 bound variables.
_IN_CHUNK = 900


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    size = _IN_CHUNK
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _applicable_by(
    session: Session,
    column: InstrumentedAttribute[int | None],
    ids: Sequence[int],
    purposes: tuple[str, ...],
    at: dt.datetime,
) -> dict[int, list[_EventFacts]]:
    """The applicable events of each subject in ``ids`` (by ``column``), grouped by subject."""
    grouped: dict[int, list[_EventFacts]] = {}
    for chunk in _chunks(ids):
        rows = session.execute(
            select(
                column,
                ConsentEvent.id,
                ConsentEvent.action,
                ConsentEvent.effective_at,
            ).where(
                column.in_(chunk),
                ConsentEvent.purpose.in_(purposes),
                ConsentEvent.effective_at <= at,
            )
        )
        for subject_id, event_id, action, effective_at in rows:
            grouped.setdefault(subject_id, []).append(_EventFacts(event_id, action, effective_at))
    return grouped


def current_consent_of_recordings(
    session: Session,
    recording_ids: Iterable[int],
    purpose: str,
    *,
    at: dt.datetime | None = None,
) -> dict[int, ConsentState]:
    """:func:`current_consent` for many recordings at once: recording id → state.

    The same rules (module doc) and the same answers, from a handful of
    set-based queries per 900 recordings instead of several queries per
    recording. Raises ``ValueError`` naming a recording id that does not exist.
    """
    purposes = covering_purposes(purpose)
    at = at or utcnow()
    _require_aware(at, "at")
    ids = sorted(set(recording_ids))
    source_of: dict[int, int | None] = {}
    parties_of: dict[int, set[int]] = {}
    for chunk in _chunks(ids):
        source_of.update(
            session.execute(
                select(Recording.id, Recording.source_id).where(Recording.id.in_(chunk))
            )
            .tuples()
            .all()
        )
        for recording_id, party_id in session.execute(
            select(Credit.recording_id, Credit.party_id).where(Credit.recording_id.in_(chunk))
        ):
            parties_of.setdefault(recording_id, set()).add(party_id)
    missing = [rid for rid in ids if rid not in source_of]
    if missing:
        raise ValueError(f"no recording with id {missing[0]}")

    by_recording = _applicable_by(session, ConsentEvent.recording_id, ids, purposes, at)
    party_ids = sorted({pid for pids in parties_of.values() for pid in pids})
    by_party = _applicable_by(session, ConsentEvent.party_id, party_ids, purposes, at)
    source_ids = sorted({sid for sid in source_of.values() if sid is not None})
    by_source = _applicable_by(session, ConsentEvent.source_id, source_ids, purposes, at)
    # Each subject's deciding event; a subject listed here has at least one applicable event.
    party_decision = {pid: _decide(events) for pid, events in by_party.items()}
    source_decision = {sid: _decide(events) for sid, events in by_source.items()}

    states: dict[int, ConsentState] = {}
    for rid in ids:
        decided = _decide(by_recording.get(rid, []))
        if decided is not None:
            states[rid] = _state(decided, "recording", "recording")
            continue
        deciding_parties = [
            (pid, deciding)
            for pid in sorted(parties_of.get(rid, ()))
            if (deciding := party_decision.get(pid)) is not None
        ]
        # Any opted-out party decides (the lowest id); else the lowest party with an event.
        opted_out = [(pid, ev) for pid, ev in deciding_parties if ev.action == "opt_out"]
        if opted_out or deciding_parties:
            pid, deciding = (opted_out or deciding_parties)[0]
            states[rid] = _state(deciding, "party", f"party={pid}")
            continue
        source_id = source_of[rid]
        by_source_event = source_decision.get(source_id) if source_id is not None else None
        states[rid] = (
            _state(by_source_event, "source", f"source={source_id}")
            if by_source_event is not None
            else NO_CONSENT_EVENT
        )
    return states
