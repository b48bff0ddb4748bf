"""The member table of a training snapshot, joined with titles, artists and licences."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.models import (
    Checkpoint,
    Credit,
    LicenceAssertion,
    Party,
    Recording,
    Source,
    TrainingRun,
    TrainingRunMember,
)


class UnknownCheckpoint(LookupError):
    """No checkpoint matches the id or sha256 prefix given."""


@dataclass
class MemberRow:
    recording_id: int
    sha256: str
    title: str | None
    artists: list[str]
    source_uri: str | None
    source_url: str | None
    object_uri: str | None
    codec: str | None
    minutes: float
    declared_licence: str | None
    concluded_at_snapshot: str
    concluded_now: str | None
    consent_at_snapshot: str
    consent_event_at_snapshot: int | None
    consent_now: str = "unknown"
    taint_reasons: list[str] = field(default_factory=list)


def resolve_checkpoint(session: Session, ref: str | int) -> Checkpoint:
    """A checkpoint by numeric id or by (a prefix of at least 8 hex chars of) its sha256."""
    text = str(ref).strip()
    if text.isdigit():
        ckpt = session.get(Checkpoint, int(text))
        if ckpt is not None:
            return ckpt
    if len(text) >= 8:
        rows = (
            session.execute(select(Checkpoint).where(Checkpoint.sha256.startswith(text.lower())))
            .scalars()
            .all()
        )
        if len(rows) == 1:
            return rows[0]
        if len(rows) > 1:
            raise UnknownCheckpoint(f"checkpoint prefix {text!r} is ambiguous ({len(rows)} match)")
    known = session.execute(select(Checkpoint.id).order_by(Checkpoint.id)).scalars().all()
    raise UnknownCheckpoint(
        f"no checkpoint {text!r}; known checkpoint ids: {list(known) or 'none'}"
    )


def latest_checkpoint(session: Session) -> Checkpoint:
    ckpt = session.execute(
        select(Checkpoint).order_by(Checkpoint.is_final.desc(), Checkpoint.id.desc()).limit(1)
    ).scalar_one_or_none()
    if ckpt is None:
        raise UnknownCheckpoint("no checkpoints recorded yet: run `fairchord train` first")
    return ckpt


def member_rows(session: Session, run: TrainingRun) -> list[MemberRow]:
    """Every member of ``run`` with its facts, in one pass of set-based queries."""
    members = session.execute(
        select(
            TrainingRunMember,
            Recording.title,
            Recording.duration_s,
            Recording.source_url,
            Recording.object_uri,
            Recording.codec,
            Source.uri,
        )
        .join(Recording, Recording.id == TrainingRunMember.recording_id)
        .outerjoin(Source, Source.id == Recording.source_id)
        .where(TrainingRunMember.training_run_id == run.id)
        .order_by(TrainingRunMember.recording_id)
    ).all()
    member_ids = select(TrainingRunMember.recording_id).where(
        TrainingRunMember.training_run_id == run.id
    )
    artists: dict[int, list[str]] = defaultdict(list)
    for recording_id, name in session.execute(
        select(Credit.recording_id, Party.name)
        .join(Party, Party.id == Credit.party_id)
        .where(Credit.recording_id.in_(member_ids), Credit.role == "artist")
        .order_by(Credit.recording_id, Party.name)
    ):
        artists[recording_id].append(name)
    # The newest assertion per recording is the one in force now.
    newest: dict[int, LicenceAssertion] = {}
    for assertion in session.execute(
        select(LicenceAssertion)
        .where(LicenceAssertion.recording_id.in_(member_ids))
        .order_by(LicenceAssertion.recording_id, LicenceAssertion.asserted_at, LicenceAssertion.id)
    ).scalars():
        newest[assertion.recording_id] = assertion
    declared_at_snapshot: dict[int, str] = {}
    snapshot_assertion_ids = [m.licence_assertion_id for m, *_ in members if m.licence_assertion_id]
    if snapshot_assertion_ids:
        for aid, declared in session.execute(
            select(LicenceAssertion.id, LicenceAssertion.declared).where(
                LicenceAssertion.id.in_(snapshot_assertion_ids)
            )
        ):
            declared_at_snapshot[aid] = declared
    rows = []
    for member, title, duration_s, source_url, object_uri, codec, source_uri in members:
        now = newest.get(member.recording_id)
        rows.append(
            MemberRow(
                recording_id=member.recording_id,
                sha256=member.sha256,
                title=title,
                artists=artists.get(member.recording_id, []),
                source_uri=source_uri,
                source_url=source_url,
                object_uri=object_uri,
                codec=codec,
                minutes=(duration_s or 0.0) / 60.0,
                declared_licence=declared_at_snapshot.get(member.licence_assertion_id or -1),
                concluded_at_snapshot=member.concluded_licence,
                concluded_now=now.concluded if now else None,
                consent_at_snapshot=member.consent_state,
                consent_event_at_snapshot=member.consent_event_id,
            )
        )
    return rows
