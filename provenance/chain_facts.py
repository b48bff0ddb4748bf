"""Facts kept in editable rows, checked against the audit event that recorded them.

Some rows change by design and so cannot be append-only: a gate index's
``thresholds`` (set at calibration; they also hold the search mode and recall),
and a training run's status. The facts in them that decide what the gate blocks
or what a run was trained on are recorded in the hash chain when they are set,
and whoever uses them compares first:

- a gate index's thresholds against the newest ``gate_index.built`` /
  ``gate_index.calibrated`` event for it (the gate refuses on a mismatch);
- a training run's policy, config, feature set and snapshot digest against its
  ``training_run.snapshotted`` event;
- each shipped policy file against the sha256 the chain recorded for its name
  and version (a file edited without a version bump).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit_log import canonical_json
from provenance.models import AuditEvent, EmbeddingIndex, TrainingRun

CALIBRATION_ACTIONS = ("gate_index.built", "gate_index.calibrated")
SNAPSHOT_ACTION = "training_run.snapshotted"
# Run columns and the snapshot event's payload keys that record them.
RUN_FACTS = {
    "policy_name": "policy",
    "policy_version": "policy_version",
    "policy_sha256": "policy_sha256",
    "config_name": "config_name",
    "feature_set_id": "feature_set_id",
    "members_digest": "members_digest",
    "member_count": "member_count",
}


def thresholds_sha256(thresholds: dict[str, Any] | None) -> str | None:
    """The digest of a thresholds object (canonical JSON); ``None`` for no thresholds."""
    if not thresholds:
        return None
    return hashlib.sha256(canonical_json(thresholds).encode("utf-8")).hexdigest()


def _payload(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def recorded_thresholds(session: Session, index_id: int) -> tuple[int | None, str | None]:
    """The newest event setting an index's thresholds, and the digest it recorded."""
    row = session.execute(
        select(AuditEvent.id, AuditEvent.payload)
        .where(
            AuditEvent.action.in_(CALIBRATION_ACTIONS),
            AuditEvent.entity == "embedding_index",
            AuditEvent.entity_id == str(index_id),
        )
        .order_by(AuditEvent.id.desc())
        .limit(1)
    ).one_or_none()
    if row is None:
        return None, None
    payload = _payload(row[1])
    recorded = payload.get("thresholds_sha256")
    if not isinstance(recorded, str):
        recorded = thresholds_sha256(payload.get("thresholds"))
    return int(row[0]), recorded


def thresholds_problem(session: Session, index: EmbeddingIndex) -> str | None:
    """Why an index's stored thresholds cannot be trusted, or ``None`` when the chain
    recorded exactly these."""
    actual = thresholds_sha256(index.thresholds)
    event_id, recorded = recorded_thresholds(session, index.id)
    if actual == recorded:
        return None
    if recorded is None:
        return (
            f"gate index {index.id} has thresholds that no audit event recorded "
            f"(sha256 {actual[:12] if actual else None})"
        )
    return (
        f"gate index {index.id}'s thresholds (sha256 {actual[:12] if actual else None}) "
        f"differ from those audit event {event_id} recorded ({recorded[:12]})"
    )


def threshold_problems(session: Session) -> tuple[int, list[tuple[str, str]]]:
    """Every gate index's thresholds against the chain: (indexes checked, (ref, detail)s)."""
    problems = []
    indexes = list(session.execute(select(EmbeddingIndex).order_by(EmbeddingIndex.id)).scalars())
    for index in indexes:
        problem = thresholds_problem(session, index)
        if problem:
            problems.append((f"gate index {index.id}", problem))
    return len(indexes), problems


def run_problems(session: Session) -> tuple[int, list[tuple[str, str]]]:
    """Every training run's recorded facts against its snapshot event."""
    events: dict[str, dict[str, Any]] = {}
    for entity_id, payload in session.execute(
        select(AuditEvent.entity_id, AuditEvent.payload)
        .where(AuditEvent.action == SNAPSHOT_ACTION)
        .order_by(AuditEvent.id)
    ):
        events.setdefault(str(entity_id), _payload(payload))
    problems = []
    runs = list(session.execute(select(TrainingRun).order_by(TrainingRun.id)).scalars())
    for run in runs:
        payload = events.get(str(run.id))
        if payload is None:
            problems.append((f"training run {run.id}", "no snapshot event records it"))
            continue
        for column, key in RUN_FACTS.items():
            stored = getattr(run, column)
            if key in payload and _same(stored, payload[key]):
                continue
            if key not in payload:
                continue  # an older event that did not record this fact
            problems.append(
                (
                    f"training run {run.id}",
                    f"{column} is {stored!r}, the snapshot event recorded {payload[key]!r}",
                )
            )
    return len(runs), problems


def _same(stored: Any, recorded: Any) -> bool:
    if stored is None or recorded is None:
        return stored is None and recorded is None
    return str(stored) == str(recorded)


def policy_file_problems(session: Session) -> tuple[int, list[tuple[str, str]]]:
    """Each shipped policy file whose name and version the chain recorded with other bytes."""
    from provenance.policies import PolicyError, load_policy

    recorded: dict[tuple[str, str], str] = {}
    for (payload,) in session.execute(
        select(AuditEvent.payload).where(AuditEvent.action == SNAPSHOT_ACTION)
    ):
        data = _payload(payload)
        name, version, sha = (
            data.get("policy"),
            data.get("policy_version"),
            data.get("policy_sha256"),
        )
        if isinstance(name, str) and isinstance(sha, str):
            recorded.setdefault((name, str(version)), sha)
    problems = []
    for (name, version), sha in sorted(recorded.items()):
        try:
            policy = load_policy(name)
        except (PolicyError, OSError):
            continue  # retired policy: nothing shipped to compare
        if str(policy.version) == version and policy.sha256 != sha:
            problems.append(
                (
                    f"policy {name} v{version}",
                    f"file sha256 {policy.sha256[:12]} differs from {sha[:12]} recorded at "
                    "snapshot: edited without a version bump",
                )
            )
    return len(recorded), problems
