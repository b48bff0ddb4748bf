"""The member table of a training snapshot, joined with titles, artists and licences."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from provenance.audit.rows import core_rows
from provenance.checkpoints import newest_checkpoint
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

    def to_dict(self) -> dict[str, Any]:
        """The fields in order, as :func:`dataclasses.asdict` gives them, without its deep copy."""
        out = dict(self.__dict__)
        out["artists"] = list(self.artists)
        out["taint_reasons"] = list(self.taint_reasons)
        return out


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


def checkpoints_to_report(
    session: Session, ref: str | None = None, *, every: bool = False
) -> list[Checkpoint]:
    """Every checkpoint by id (``every``), the one ``ref`` names (:func:`resolve_checkpoint`),
    or the newest final one (else the newest); raises :class:`UnknownCheckpoint`."""
    if every:
        return list(session.execute(select(Checkpoint).order_by(Checkpoint.id)).scalars())
    if ref:
        return [resolve_checkpoint(session, ref)]
    ckpt = newest_checkpoint(session)
    if ckpt is None:
        raise UnknownCheckpoint("no checkpoints recorded yet: run `fairchord train` first")
    return [ckpt]


def member_rows(session: Session, run: TrainingRun) -> list[MemberRow]:
    """Every member of ``run`` with its facts, ordered by recording id.

    Three set-based queries, each driven by the run's members through the
    ``(training_run_id, recording_id)`` index: the members with their recording,
    source and snapshot assertion; every licence assertion of the members
    (the newest, by asserted time then id, is the one in force now); and the
    artists credited on them.
    """
    snapshot_assertion = aliased(LicenceAssertion)
    members = core_rows(
        session,
        select(
            TrainingRunMember.recording_id,
            TrainingRunMember.sha256,
            TrainingRunMember.concluded_licence,
            TrainingRunMember.consent_state,
            TrainingRunMember.consent_event_id,
            Recording.title,
            Recording.duration_s,
            Recording.source_url,
            Recording.object_uri,
            Recording.codec,
            Source.uri,
            snapshot_assertion.declared,
        )
        .join(Recording, Recording.id == TrainingRunMember.recording_id)
        .outerjoin(Source, Source.id == Recording.source_id)
        .outerjoin(
            snapshot_assertion, snapshot_assertion.id == TrainingRunMember.licence_assertion_id
        )
        .where(TrainingRunMember.training_run_id == run.id)
        .order_by(TrainingRunMember.recording_id),
    ).all()
    in_run = TrainingRunMember.training_run_id == run.id
    # Ordered oldest to newest per recording, so the last one seen is the one in force.
    concluded_now: dict[int, str] = {
        recording_id: concluded
        for recording_id, concluded in core_rows(
            session,
            select(LicenceAssertion.recording_id, LicenceAssertion.concluded)
            .join(
                TrainingRunMember, TrainingRunMember.recording_id == LicenceAssertion.recording_id
            )
            .where(in_run)
            .order_by(
                LicenceAssertion.recording_id, LicenceAssertion.asserted_at, LicenceAssertion.id
            ),
        ).all()
    }
    artists: dict[int, list[str]] = defaultdict(list)
    for recording_id, name in core_rows(
        session,
        select(Credit.recording_id, Party.name)
        .join(TrainingRunMember, TrainingRunMember.recording_id == Credit.recording_id)
        .join(Party, Party.id == Credit.party_id)
        .where(in_run, Credit.role == "artist")
        .order_by(Credit.recording_id, Party.name),
    ).all():
        artists[recording_id].append(name)
    return [
        MemberRow(
            recording_id=recording_id,
            sha256=sha256,
            title=title,
            artists=artists.get(recording_id, []),
            source_uri=source_uri,
            source_url=source_url,
            object_uri=object_uri,
            codec=codec,
            minutes=(duration_s or 0.0) / 60.0,
            declared_licence=declared,
            concluded_at_snapshot=concluded_licence,
            concluded_now=concluded_now.get(recording_id),
            consent_at_snapshot=consent_state,
            consent_event_at_snapshot=consent_event_id,
        )
        for (
            recording_id,
            sha256,
            concluded_licence,
            consent_state,
            consent_event_id,
            title,
            duration_s,
            source_url,
            object_uri,
            codec,
            source_uri,
            declared,
        ) in members
    ]
