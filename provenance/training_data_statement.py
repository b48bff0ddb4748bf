"""What a generated file says about the data its model was trained on.

:func:`training_data_statement` summarises one training run's frozen snapshot for the
``org.fairchord.training-data`` assertion of a Content Credential: the policy the
snapshot was taken under, its Merkle digest, how many recordings and hours under
which licences, and the consent states in force when the snapshot was taken (the
snapshot checks consent for every member; :mod:`provenance.snapshot`).

Only counts and identifiers leave: no titles, artists or file names.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit.rows import core_rows
from provenance.models import Recording, TrainingRun, TrainingRunMember
from provenance.policies import PolicyError, load_policy

FORMAT = "fairchord-training-data/1"


@dataclass(frozen=True)
class LicenceShare:
    """The members under one concluded licence (SPDX expression)."""

    licence: str
    recordings: int
    hours: float


@dataclass(frozen=True)
class TrainingDataStatement:
    """One training run's snapshot in counts: licences, recordings, hours and consent."""

    training_run_id: int
    policy_name: str
    policy_version: str
    policy_sha256: str
    snapshot_digest: str | None
    snapshot_at: dt.datetime
    recordings: int
    hours: float
    licences: list[LicenceShare] = field(default_factory=list)
    consent_states: dict[str, int] = field(default_factory=dict)
    consent_purpose: str | None = None
    consent_requirement: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The assertion's data (JSON-ready; times in ISO 8601 UTC)."""
        return {
            "format": FORMAT,
            "training_run_id": self.training_run_id,
            "policy": {
                "name": self.policy_name,
                "version": self.policy_version,
                "sha256": self.policy_sha256,
            },
            "snapshot": {
                "merkle_root": self.snapshot_digest,
                "taken_at": _iso(self.snapshot_at),
            },
            "recordings": self.recordings,
            "hours": self.hours,
            "licences": [
                {"licence": s.licence, "recordings": s.recordings, "hours": s.hours}
                for s in self.licences
            ],
            "consent": {
                "checked_at_snapshot": True,
                "checked_at": _iso(self.snapshot_at),
                "purpose": self.consent_purpose,
                "requirement": self.consent_requirement,
                "states": dict(sorted(self.consent_states.items())),
            },
        }


def _iso(when: dt.datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")


def training_data_statement(session: Session, run: TrainingRun) -> TrainingDataStatement:
    """The statement for ``run``'s snapshot members (see the module docstring)."""
    members = core_rows(
        session,
        select(
            TrainingRunMember.concluded_licence,
            TrainingRunMember.consent_state,
            Recording.duration_s,
        )
        .join(Recording, Recording.id == TrainingRunMember.recording_id)
        .where(TrainingRunMember.training_run_id == run.id),
    ).all()
    counts: Counter[str] = Counter()
    seconds: dict[str, float] = defaultdict(float)
    consent: Counter[str] = Counter()
    for licence, consent_state, duration_s in members:
        counts[licence] += 1
        seconds[licence] += float(duration_s or 0.0)
        consent[consent_state] += 1
    purpose: str | None
    requirement: str | None
    try:
        policy = load_policy(run.policy_name)
        purpose, requirement = policy.consent_purpose, policy.consent_requirement
    except PolicyError:  # a policy file since removed: the run's own columns still say which
        purpose = requirement = None
    return TrainingDataStatement(
        training_run_id=run.id,
        policy_name=run.policy_name,
        policy_version=str(run.policy_version),
        policy_sha256=run.policy_sha256,
        snapshot_digest=run.members_digest,
        snapshot_at=run.snapshot_at,
        recordings=len(members),
        hours=round(sum(seconds.values()) / 3600.0, 3),
        licences=[
            LicenceShare(licence, counts[licence], round(seconds[licence] / 3600.0, 3))
            for licence in sorted(counts, key=lambda name: (-counts[name], name))
        ],
        consent_states=dict(consent),
        consent_purpose=purpose,
        consent_requirement=requirement,
    )
