"""Training snapshots: the frozen, provable membership of one training run.

:func:`freeze_snapshot` asks :func:`provenance.eligibility.eligible_recordings`
which recordings are eligible under a policy *at the snapshot time* and
writes one append-only ``training_run_members`` row per member with the
recording's sha256, the concluded licence and the licence assertion it came
from, and the consent state and the consent event in force. The run stores
``members_digest``, a Merkle root over the members' sorted leaf hashes, so:

- one member's inclusion can be proven to someone holding only the digest
  (:func:`merkle_proof` / :func:`verify_proof`), e.g. in a checkpoint header;
- any change to any member row (or an added/removed member) changes the digest
  (:func:`verify_snapshot` recomputes it from the rows).

Consent recorded after the snapshot does not change the run: the rows are
append-only (database triggers) and the next snapshot is where it applies.

When a feature set is given, members are the eligible recordings that have
featurized segments in it (the run can only read those); eligible recordings
without features are named in the audit event, not silently dropped.

Leaf and node hashing follow RFC 6962 (Certificate Transparency): leaves are
``sha256(0x00 || canonical JSON of the member facts)``, inner nodes
``sha256(0x01 || left || right)``, an odd node is promoted unchanged to the
next level (never duplicated, which would let two member lists share a root).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit_log import append_event, chain_head
from provenance.models import (
    FeatureSet,
    FeatureSetRecording,
    Recording,
    TrainingRun,
    TrainingRunMember,
    utcnow,
)

if TYPE_CHECKING:
    from provenance.policies import Policy

logger = logging.getLogger(__name__)

EMPTY_ROOT = hashlib.sha256(b"").hexdigest()
RUN_STATUSES = ("snapshotted", "training", "finished", "failed", "interrupted")


# --- Merkle tree -------------------------------------------------------------------------------


def leaf_hash(
    *,
    recording_id: int,
    sha256: str,
    concluded_licence: str,
    licence_assertion_id: int | None,
    consent_state: str,
    consent_event_id: int | None,
) -> str:
    """The member's leaf: ``sha256(0x00 || canonical JSON of its snapshot facts)`` (hex)."""
    facts = {
        "recording_id": int(recording_id),
        "sha256": sha256,
        "concluded_licence": concluded_licence,
        "licence_assertion_id": licence_assertion_id,
        "consent_state": consent_state,
        "consent_event_id": consent_event_id,
    }
    body = json.dumps(facts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(b"\x00" + body.encode("utf-8")).hexdigest()


def _node(left: str, right: str) -> str:
    return hashlib.sha256(b"\x01" + bytes.fromhex(left) + bytes.fromhex(right)).hexdigest()


def _levels(leaves: Sequence[str]) -> list[list[str]]:
    level = sorted(leaves)
    if len(set(level)) != len(level):
        raise ValueError("duplicate leaf hashes: a member appears twice")
    levels = [level]
    while len(level) > 1:
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])  # promote the odd node unchanged
        levels.append(nxt)
        level = nxt
    return levels


def merkle_root(leaves: Sequence[str]) -> str:
    """Root over the *sorted* leaf hashes (order-independent); ``sha256(b"")`` when empty."""
    if not leaves:
        return EMPTY_ROOT
    return _levels(leaves)[-1][0]


ProofStep = tuple[Literal["L", "R"], str]


def merkle_proof(leaves: Sequence[str], leaf: str) -> list[ProofStep]:
    """The audit path proving ``leaf`` is in the tree: (side of the sibling, sibling hash) steps."""
    levels = _levels(leaves)
    try:
        index = levels[0].index(leaf)
    except ValueError:
        raise ValueError(f"leaf {leaf[:12]}… is not a member of this tree") from None
    proof: list[ProofStep] = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(("L" if sibling < index else "R", level[sibling]))
        index //= 2
    return proof


def verify_proof(leaf: str, proof: Sequence[ProofStep | list[str]], root: str) -> bool:
    """True when ``proof`` leads from ``leaf`` to ``root``."""
    node = leaf
    try:
        for side, sibling in proof:
            if side == "L":
                node = _node(sibling, node)
            elif side == "R":
                node = _node(node, sibling)
            else:
                return False
    except ValueError:  # a sibling that is not hex
        return False
    return node == root


# --- snapshots ---------------------------------------------------------------------------------


def freeze_snapshot(
    session: Session,
    *,
    policy: Policy,
    config_name: str,
    config: dict[str, Any],
    feature_set_id: int | None,
    at: dt.datetime | None = None,
) -> TrainingRun:
    """Create a training run and its frozen members (eligible at ``at``, default now).

    Does not commit (the caller owns the transaction). Writes one audit event
    ``training_run.snapshotted`` with the digest and the member count. Raises
    :class:`provenance.audit.coverage.LedgerTampered` when a consent, licence, credit,
    party or alias row differs from the audit chain.
    """
    from provenance.audit.coverage import ELIGIBILITY_TABLES, require_covered
    from provenance.eligibility import eligible_recordings

    at = at or utcnow()
    if at.tzinfo is None:
        raise ValueError(f"snapshot time must be timezone-aware UTC, got naive {at.isoformat()}")
    # Fail closed: eligibility must be decided on the consent, licences and credits the
    # chain recorded, not on rows an administrator edited behind the triggers.
    require_covered(session, ELIGIBILITY_TABLES, purpose="the snapshot")
    verdicts = [v for v in eligible_recordings(session, policy, at) if v.eligible]
    unfeaturized: list[int] = []
    if feature_set_id is not None:
        covered = set(
            session.execute(
                select(FeatureSetRecording.recording_id).where(
                    FeatureSetRecording.feature_set_id == feature_set_id,
                    FeatureSetRecording.segments > 0,
                )
            ).scalars()
        )
        unfeaturized = sorted(v.recording_id for v in verdicts if v.recording_id not in covered)
        verdicts = [v for v in verdicts if v.recording_id in covered]
        if unfeaturized:
            logger.warning(
                "%d eligible recordings have no features in feature set %d and are not members",
                len(unfeaturized),
                feature_set_id,
            )

    run = TrainingRun(
        policy_name=policy.name,
        policy_version=str(policy.version),
        policy_sha256=policy.sha256,
        config_name=config_name,
        config=config,
        feature_set_id=feature_set_id,
        snapshot_at=at,
        status="snapshotted",
    )
    session.add(run)
    session.flush()

    shas: dict[int, str] = {
        rid: sha
        for rid, sha in session.execute(
            select(Recording.id, Recording.sha256).where(
                Recording.id.in_([v.recording_id for v in verdicts])
            )
        ).tuples()
    }
    leaves = []
    for v in sorted(verdicts, key=lambda v: v.recording_id):
        leaf = leaf_hash(
            recording_id=v.recording_id,
            sha256=shas[v.recording_id],
            concluded_licence=v.concluded_licence,
            licence_assertion_id=v.licence_assertion_id,
            consent_state=v.consent_state,
            consent_event_id=v.consent_event_id,
        )
        leaves.append(leaf)
        session.add(
            TrainingRunMember(
                training_run_id=run.id,
                recording_id=v.recording_id,
                sha256=shas[v.recording_id],
                concluded_licence=v.concluded_licence,
                licence_assertion_id=v.licence_assertion_id,
                consent_state=v.consent_state,
                consent_event_id=v.consent_event_id,
                leaf_hash=leaf,
            )
        )
    run.members_digest = merkle_root(leaves)
    run.member_count = len(leaves)
    session.flush()
    # The chain's head before this run's event: checkpoints carry it out of the database.
    run.audit_head = str(chain_head(session))
    append_event(
        session,
        "training_run.snapshotted",
        entity="training_run",
        entity_id=run.id,
        payload={
            "policy": policy.name,
            "policy_version": str(policy.version),
            "policy_sha256": policy.sha256,
            "config_name": config_name,
            "feature_set_id": feature_set_id,
            "snapshot_at": at.isoformat(),
            "members_digest": run.members_digest,
            "member_count": run.member_count,
            "eligible_without_features": unfeaturized,
        },
    )
    logger.info(
        "training run %d: %d members under %s v%s, digest %s",
        run.id,
        run.member_count,
        policy.name,
        policy.version,
        run.members_digest[:12],
    )
    return run


def run_members(session: Session, training_run_id: int) -> list[TrainingRunMember]:
    return list(
        session.execute(
            select(TrainingRunMember)
            .where(TrainingRunMember.training_run_id == training_run_id)
            .order_by(TrainingRunMember.recording_id)
        ).scalars()
    )


def member_recordings(session: Session, training_run_id: int) -> list[Recording]:
    """The snapshot's recordings, by recording id."""
    return list(
        session.execute(
            select(Recording)
            .join(TrainingRunMember, TrainingRunMember.recording_id == Recording.id)
            .where(TrainingRunMember.training_run_id == training_run_id)
            .order_by(Recording.id)
        ).scalars()
    )


def member_sha256s(session: Session, training_run_id: int) -> dict[int, str]:
    """The snapshot as the data loader needs it: recording id → sha256."""
    return {m.recording_id: m.sha256 for m in run_members(session, training_run_id)}


def _member_leaf(member: TrainingRunMember) -> str:
    return leaf_hash(
        recording_id=member.recording_id,
        sha256=member.sha256,
        concluded_licence=member.concluded_licence,
        licence_assertion_id=member.licence_assertion_id,
        consent_state=member.consent_state,
        consent_event_id=member.consent_event_id,
    )


@dataclass(frozen=True)
class MembershipProof:
    """Everything needed to check one member's inclusion against a run's digest."""

    training_run_id: int
    recording_id: int
    leaf_hash: str
    proof: list[ProofStep]
    members_digest: str

    def verify(self) -> bool:
        return verify_proof(self.leaf_hash, self.proof, self.members_digest)


def membership_proof(session: Session, training_run_id: int, recording_id: int) -> MembershipProof:
    run = session.get(TrainingRun, training_run_id)
    if run is None:
        raise ValueError(f"no training run {training_run_id}")
    members = run_members(session, training_run_id)
    leaf = next((m.leaf_hash for m in members if m.recording_id == recording_id), None)
    if leaf is None:
        raise ValueError(f"recording {recording_id} is not a member of training run {run.id}")
    return MembershipProof(
        training_run_id=run.id,
        recording_id=recording_id,
        leaf_hash=leaf,
        proof=merkle_proof([m.leaf_hash for m in members], leaf),
        members_digest=run.members_digest or EMPTY_ROOT,
    )


def verify_snapshot(session: Session, training_run_id: int) -> list[str]:
    """Problems found recomputing every leaf and the root (empty when the snapshot is intact)."""
    run = session.get(TrainingRun, training_run_id)
    if run is None:
        return [f"no training run {training_run_id}"]
    problems = []
    members = run_members(session, training_run_id)
    for m in members:
        if _member_leaf(m) != m.leaf_hash:
            problems.append(
                f"member recording {m.recording_id}: leaf hash does not match its facts"
            )
    root = merkle_root([_member_leaf(m) for m in members])
    if root != run.members_digest:
        problems.append(f"members digest {run.members_digest} != recomputed {root}")
    if len(members) != run.member_count:
        problems.append(f"member_count {run.member_count} != {len(members)} member rows")
    return problems


def set_run_status(
    session: Session,
    run: TrainingRun,
    status: str,
    *,
    payload: dict[str, Any] | None = None,
) -> None:
    """Move a run to ``status`` (finished/failed/interrupted stamp ``finished_at``); audited."""
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}; expected one of {list(RUN_STATUSES)}")
    previous = run.status
    run.status = status
    if status in ("finished", "failed", "interrupted"):
        run.finished_at = utcnow()
    session.flush()
    append_event(
        session,
        f"training_run.{status}",
        entity="training_run",
        entity_id=run.id,
        payload={"from": previous, **(payload or {})},
    )


def snapshot_disagreements(
    session: Session,
    training_run_id: int,
    *,
    members: Mapping[int, str],
    members_digest: str,
    audit_head: str,
    mel_config_hash: str,
    mel_config: Mapping[str, Any],
) -> list[str]:
    """What a description of run ``training_run_id`` (a torchrun spec) says that the database
    does not: the snapshot must verify (:func:`verify_snapshot`), and the members (recording id
    → sha256), their digest, the audit head and the feature set's mel config must be the run's.
    Empty when they all agree."""
    run = session.get(TrainingRun, training_run_id)
    if run is None:
        return [f"no training run {training_run_id}"]
    problems = verify_snapshot(session, training_run_id)
    recorded = member_sha256s(session, training_run_id)
    given = {int(rid): sha for rid, sha in members.items()}
    if extra := sorted(set(given) - set(recorded)):
        problems.append(f"recordings {extra} are not members of training run {run.id}")
    if missing := sorted(set(recorded) - set(given)):
        problems.append(f"members {missing} of training run {run.id} are left out")
    for rid in sorted(set(given) & set(recorded)):
        if given[rid] != recorded[rid]:
            problems.append(
                f"recording {rid}: sha256 {given[rid]} is not the member row's {recorded[rid]}"
            )
    if members_digest != run.members_digest:
        problems.append(f"members digest {members_digest!r} is not the run's {run.members_digest}")
    if audit_head != (run.audit_head or ""):
        problems.append(f"audit head {audit_head!r} is not the run's {run.audit_head!r}")
    features = session.get(FeatureSet, run.feature_set_id) if run.feature_set_id else None
    if features is None:
        problems.append(f"training run {run.id} has no feature set")
    elif mel_config_hash != features.mel_config_hash or dict(mel_config) != features.mel_config:
        problems.append(
            f"mel config {mel_config_hash!r} is not the one of the run's feature set "
            f"({features.mel_config_hash})"
        )
    return problems
