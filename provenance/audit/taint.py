"""Tainted checkpoints: members whose consent or licence no longer supports the training.

A checkpoint is tainted when any member of its snapshot has since received an
opt-out covering the run's training purpose, or a licence re-assessment that
the run's policy would now reject.

Consent can only have changed for a member if some consent event about it
(its recording, a credited party, or its source) was recorded or became
effective after the snapshot. Those candidates are found with set-based
queries, and only they are re-resolved with :func:`current_consent`; every
other member's consent is, by construction, what it was at the snapshot. The
same holds for licences: only members with an assertion newer than the
snapshot are re-evaluated. This keeps the audit fast at a million recordings.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import or_, select, union
from sqlalchemy.orm import Session

from provenance.consent import ConsentSubject, current_consent
from provenance.eligibility import eligibility
from provenance.models import (
    ConsentEvent,
    Credit,
    LicenceAssertion,
    Recording,
    TrainingRun,
    TrainingRunMember,
    utcnow,
)
from provenance.policies import Policy, load_policy

LICENCE_REASON_PREFIXES = ("licence_not_allowed", "noassertion")


@dataclass
class MemberTaint:
    recording_id: int
    sha256: str
    reasons: list[str]
    event_ids: list[int] = field(default_factory=list)
    assertion_ids: list[int] = field(default_factory=list)


@dataclass
class RunTaint:
    training_run_id: int
    policy: str
    members: list[MemberTaint]
    consent_now: dict[int, str]

    @property
    def tainted(self) -> bool:
        return bool(self.members)


def _consent_candidates(session: Session, run: TrainingRun, now: dt.datetime) -> set[int]:
    """Member recording ids with a consent event recorded or effective after the snapshot."""
    changed = (ConsentEvent.recorded_at > run.snapshot_at) | (
        ConsentEvent.effective_at > run.snapshot_at
    )
    applies = ConsentEvent.effective_at <= now
    members = select(TrainingRunMember.recording_id).where(
        TrainingRunMember.training_run_id == run.id
    )
    by_recording = select(ConsentEvent.recording_id.label("rid")).where(
        ConsentEvent.recording_id.in_(members), changed, applies
    )
    by_party = (
        select(Credit.recording_id.label("rid"))
        .join(ConsentEvent, ConsentEvent.party_id == Credit.party_id)
        .where(Credit.recording_id.in_(members), changed, applies)
    )
    by_source = (
        select(Recording.id.label("rid"))
        .join(ConsentEvent, ConsentEvent.source_id == Recording.source_id)
        .where(Recording.id.in_(members), changed, applies)
    )
    return set(session.execute(union(by_recording, by_party, by_source)).scalars())


def _licence_candidates(session: Session, run: TrainingRun) -> set[int]:
    members = select(TrainingRunMember.recording_id).where(
        TrainingRunMember.training_run_id == run.id
    )
    return set(
        session.execute(
            select(LicenceAssertion.recording_id)
            .where(
                LicenceAssertion.recording_id.in_(members),
                or_(LicenceAssertion.asserted_at > run.snapshot_at),
            )
            .distinct()
        ).scalars()
    )


def run_taint(
    session: Session,
    run: TrainingRun,
    *,
    now: dt.datetime | None = None,
    policy: Policy | None = None,
) -> RunTaint:
    """Re-check one training run's members against the record as it stands at ``now``."""
    now = now or utcnow()
    policy = policy or load_policy(run.policy_name)
    sha_by_recording: dict[int, str] = {
        rid: sha
        for rid, sha in session.execute(
            select(TrainingRunMember.recording_id, TrainingRunMember.sha256).where(
                TrainingRunMember.training_run_id == run.id
            )
        )
    }
    findings: dict[int, MemberTaint] = {}
    consent_now: dict[int, str] = {}

    def finding(recording_id: int) -> MemberTaint:
        if recording_id not in findings:
            findings[recording_id] = MemberTaint(recording_id, sha_by_recording[recording_id], [])
        return findings[recording_id]

    for recording_id in sorted(_consent_candidates(session, run, now)):
        state = current_consent(
            session,
            ConsentSubject("recording", recording_id),
            policy.consent_purpose,
            at=now,
        )
        consent_now[recording_id] = state.state
        if state.state == "opted_out":
            taint = finding(recording_id)
            taint.reasons.append(f"opted_out_since_snapshot:{state.level}")
            if state.event_id is not None:
                taint.event_ids.append(state.event_id)
    for recording_id in sorted(_licence_candidates(session, run)):
        verdict = eligibility(session, recording_id, policy, now)
        licence_reasons = [r for r in verdict.reasons if r.startswith(LICENCE_REASON_PREFIXES)]
        if licence_reasons:
            taint = finding(recording_id)
            taint.reasons.extend(f"licence_reassessed:{r}" for r in licence_reasons)
            if verdict.licence_assertion_id is not None:
                taint.assertion_ids.append(verdict.licence_assertion_id)
    return RunTaint(
        training_run_id=run.id,
        policy=run.policy_name,
        members=[findings[k] for k in sorted(findings)],
        consent_now=consent_now,
    )


def tainted_runs(session: Session, *, now: dt.datetime | None = None) -> list[RunTaint]:
    """Every training run whose snapshot no longer holds, oldest first."""
    now = now or utcnow()
    results = []
    for run in session.execute(select(TrainingRun).order_by(TrainingRun.id)).scalars():
        taint = run_taint(session, run, now=now)
        if taint.tainted:
            results.append(taint)
    return results
