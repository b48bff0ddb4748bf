"""Tainted checkpoints: members whose consent or licence no longer supports the training.

A checkpoint is tainted when any member of its snapshot has since received an
opt-out covering the run's training purpose, or a licence re-assessment that
the run's policy would now reject.

Consent can only have changed for a member if some consent event about it
(its recording, a credited party, or its source) was recorded or became
effective after the snapshot. The same holds for licences: only members with
an assertion newer than the snapshot can have changed. So the audit starts
from the ledger, not from the members:

1. the consent events and licence assertions newer than the oldest snapshot
   (found through the indexes on their timestamps), each traced to the
   recordings it concerns, keeping each recording's latest change;
2. the members of the audited runs among those recordings;
3. per run, the members whose latest change is after that run's snapshot:
   their consent is re-resolved with
   :func:`~provenance.consent.current_consent_of_recordings` (the rules of
   :func:`~provenance.consent.current_consent`, for many at once), their
   licence re-evaluated with the assertion in force now.

Every other member's consent and licence are, by construction, what they were
at the snapshot. The work grows with what changed since the snapshots, not
with the number of members, which keeps the audit fast at a million recordings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit.rows import core_rows
from provenance.consent import ConsentState, current_consent_of_recordings
from provenance.eligibility import licence_reasons
from provenance.licences import NOASSERTION
from provenance.models import (
    Checkpoint,
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
# Ids per IN (...) list: below SQLite's oldest limit of 999 bound variables.
_IN_CHUNK = 900


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


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _IN_CHUNK):
        yield ids[start : start + _IN_CHUNK]


def _keep_latest(latest: dict[int, dt.datetime], key: int, when: dt.datetime) -> None:
    if key not in latest or when > latest[key]:
        latest[key] = when


def _consent_changes(
    session: Session, since: dt.datetime, now: dt.datetime
) -> dict[int, dt.datetime]:
    """Recording id → latest time a consent event about it changed, for changes after ``since``.

    An event changes things at the later of its recording and its effective
    time; only events that apply at ``now`` count. Events about a party reach
    every recording crediting it, events about a source every recording from it.
    """
    by_recording: dict[int, dt.datetime] = {}
    by_party: dict[int, dt.datetime] = {}
    by_source: dict[int, dt.datetime] = {}
    events = core_rows(
        session,
        select(
            ConsentEvent.recording_id,
            ConsentEvent.party_id,
            ConsentEvent.source_id,
            ConsentEvent.recorded_at,
            ConsentEvent.effective_at,
        ).where((ConsentEvent.recorded_at > since) | (ConsentEvent.effective_at > since)),
    )
    for recording_id, party_id, source_id, recorded_at, effective_at in events:
        # Filtered here, not in SQL: given `effective_at <= now` too, SQLite ranges over
        # the effective_at index for that bound, which holds nearly every event.
        if effective_at > now:
            continue
        changed_at = max(recorded_at, effective_at)
        if recording_id is not None:
            _keep_latest(by_recording, recording_id, changed_at)
        elif party_id is not None:
            _keep_latest(by_party, party_id, changed_at)
        elif source_id is not None:
            _keep_latest(by_source, source_id, changed_at)
    for chunk in _chunks(sorted(by_party)):
        for recording_id, party_id in core_rows(
            session, select(Credit.recording_id, Credit.party_id).where(Credit.party_id.in_(chunk))
        ):
            _keep_latest(by_recording, recording_id, by_party[party_id])
    for chunk in _chunks(sorted(by_source)):
        for recording_id, source_id in core_rows(
            session, select(Recording.id, Recording.source_id).where(Recording.source_id.in_(chunk))
        ):
            _keep_latest(by_recording, recording_id, by_source[source_id])
    return by_recording


def _licence_changes(session: Session, since: dt.datetime) -> dict[int, dt.datetime]:
    """Recording id → its newest licence assertion time, for recordings asserted after ``since``."""
    latest: dict[int, dt.datetime] = {}
    for recording_id, asserted_at in core_rows(
        session,
        select(LicenceAssertion.recording_id, LicenceAssertion.asserted_at).where(
            LicenceAssertion.asserted_at > since
        ),
    ):
        _keep_latest(latest, recording_id, asserted_at)
    return latest


def _members_among(
    session: Session, run_ids: Sequence[int], recording_ids: Sequence[int]
) -> dict[int, dict[int, str]]:
    """Run id → {recording id: sha256} of the members of ``run_ids`` among ``recording_ids``."""
    found: dict[int, dict[int, str]] = {run_id: {} for run_id in run_ids}
    for chunk in _chunks(sorted(recording_ids)):
        query = select(
            TrainingRunMember.training_run_id,
            TrainingRunMember.recording_id,
            TrainingRunMember.sha256,
        ).where(TrainingRunMember.recording_id.in_(chunk))
        if len(run_ids) == 1:
            query = query.where(TrainingRunMember.training_run_id == run_ids[0])
        for run_id, recording_id, sha256 in core_rows(session, query):
            if run_id in found:
                found[run_id][recording_id] = sha256
    return found


def _licences_now(
    session: Session, recording_ids: Sequence[int], now: dt.datetime
) -> dict[int, tuple[int, str]]:
    """Recording id → (assertion id, concluded) of the assertion in force at ``now``.

    As :func:`provenance.licences.current_licence`: the newest asserted no later
    than ``now`` (ties broken by the higher id). Recordings without one are absent.
    """
    newest: dict[int, tuple[dt.datetime, int, str]] = {}
    for chunk in _chunks(sorted(recording_ids)):
        for recording_id, assertion_id, concluded, asserted_at in core_rows(
            session,
            select(
                LicenceAssertion.recording_id,
                LicenceAssertion.id,
                LicenceAssertion.concluded,
                LicenceAssertion.asserted_at,
            ).where(LicenceAssertion.recording_id.in_(chunk), LicenceAssertion.asserted_at <= now),
        ):
            seen = newest.get(recording_id)
            if seen is None or (asserted_at, assertion_id) > seen[:2]:
                newest[recording_id] = (asserted_at, assertion_id, concluded)
    return {rid: (aid, concluded) for rid, (_, aid, concluded) in newest.items()}


def _finding(
    findings: dict[int, MemberTaint], shas: dict[int, str], recording_id: int
) -> MemberTaint:
    if recording_id not in findings:
        findings[recording_id] = MemberTaint(recording_id, shas[recording_id], [])
    return findings[recording_id]


def runs_taint(
    session: Session,
    runs: Sequence[tuple[TrainingRun, Policy]],
    *,
    now: dt.datetime | None = None,
) -> list[RunTaint]:
    """Re-check the members of each (run, policy) against the record as it stands at ``now``.

    One pass over what changed since the oldest snapshot serves every run; the
    result has one :class:`RunTaint` per run, in the order given.
    """
    now = now or utcnow()
    if not runs:
        return []
    oldest = min(run.snapshot_at for run, _ in runs)
    consent_changed = _consent_changes(session, oldest, now)
    licence_changed = _licence_changes(session, oldest)
    members = _members_among(
        session,
        [run.id for run, _ in runs],
        sorted(consent_changed.keys() | licence_changed.keys()),
    )

    consent_candidates: dict[int, list[int]] = {}
    licence_candidates: dict[int, list[int]] = {}
    for run, _ in runs:
        run_members = members[run.id]
        consent_candidates[run.id] = sorted(
            rid
            for rid in run_members
            if consent_changed.get(rid, run.snapshot_at) > run.snapshot_at
        )
        licence_candidates[run.id] = sorted(
            rid
            for rid in run_members
            if licence_changed.get(rid, run.snapshot_at) > run.snapshot_at
        )

    # Consent now does not depend on the run, only on the purpose its policy asks about.
    consent_now: dict[str, dict[int, ConsentState]] = {}
    for purpose in sorted({policy.consent_purpose for _, policy in runs}):
        wanted = {
            rid
            for run, policy in runs
            if policy.consent_purpose == purpose
            for rid in consent_candidates[run.id]
        }
        consent_now[purpose] = current_consent_of_recordings(session, wanted, purpose, at=now)
    licence_now = _licences_now(
        session, sorted({rid for rids in licence_candidates.values() for rid in rids}), now
    )

    results = []
    for run, policy in runs:
        findings: dict[int, MemberTaint] = {}
        states = consent_now[policy.consent_purpose]
        run_consent: dict[int, str] = {}
        for recording_id in consent_candidates[run.id]:
            state = states[recording_id]
            run_consent[recording_id] = state.state
            if state.state == "opted_out":
                taint = _finding(findings, members[run.id], recording_id)
                taint.reasons.append(f"opted_out_since_snapshot:{state.level}")
                if state.event_id is not None:
                    taint.event_ids.append(state.event_id)
        reasons_of: dict[str, list[str]] = {}
        for recording_id in licence_candidates[run.id]:
            in_force = licence_now.get(recording_id)
            assertion_id, concluded = in_force if in_force else (None, NOASSERTION)
            if concluded not in reasons_of:
                reasons_of[concluded] = [
                    r
                    for r in licence_reasons(concluded, policy)
                    if r.startswith(LICENCE_REASON_PREFIXES)
                ]
            if reasons_of[concluded]:
                taint = _finding(findings, members[run.id], recording_id)
                taint.reasons.extend(f"licence_reassessed:{r}" for r in reasons_of[concluded])
                if assertion_id is not None:
                    taint.assertion_ids.append(assertion_id)
        results.append(
            RunTaint(
                training_run_id=run.id,
                policy=run.policy_name,
                members=[findings[k] for k in sorted(findings)],
                consent_now=run_consent,
            )
        )
    return results


def run_taint(
    session: Session,
    run: TrainingRun,
    *,
    now: dt.datetime | None = None,
    policy: Policy | None = None,
) -> RunTaint:
    """Re-check one training run's members against the record as it stands at ``now``."""
    (taint,) = runs_taint(session, [(run, policy or load_policy(run.policy_name))], now=now)
    return taint


def tainted_runs(session: Session, *, now: dt.datetime | None = None) -> list[RunTaint]:
    """Every training run whose snapshot no longer holds, oldest first."""
    policies: dict[str, Policy] = {}
    runs = []
    for run in session.execute(select(TrainingRun).order_by(TrainingRun.id)).scalars():
        if run.policy_name not in policies:
            policies[run.policy_name] = load_policy(run.policy_name)
        runs.append((run, policies[run.policy_name]))
    return [taint for taint in runs_taint(session, runs, now=now) if taint.tainted]


def tainted_checkpoints(
    session: Session, *, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """:func:`tainted_runs` as plain data: each run with its checkpoints (id, sha256) and its
    tainted members with their reasons and the consent events and licence assertions behind
    them."""
    out: list[dict[str, Any]] = []
    for finding in tainted_runs(session, now=now):
        ckpts = session.execute(
            select(Checkpoint.id, Checkpoint.sha256).where(
                Checkpoint.training_run_id == finding.training_run_id
            )
        ).all()
        out.append(
            {
                "training_run_id": finding.training_run_id,
                "policy": finding.policy,
                "checkpoints": [{"id": i, "sha256": s} for i, s in ckpts],
                "members": [
                    {
                        "recording_id": m.recording_id,
                        "sha256": m.sha256,
                        "reasons": m.reasons,
                        "consent_event_ids": m.event_ids,
                        "licence_assertion_ids": m.assertion_ids,
                    }
                    for m in finding.members
                ],
            }
        )
    return out
