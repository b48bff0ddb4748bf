"""A generated file's Content Credential, held against this database (``verify-output``).

:func:`check_output` takes a credential that already validated (signature and hash
binding: :func:`provenance.content_credentials.read_credential`) and asks the record:

- is the file's generation known: by the manifest label recorded when it was signed,
  else by the similarity-gate decision the credential names;
- does the checkpoint with the credential's sha256 exist, and is it the generation's?
- does the gate decision exist, for this generation, with the same verdict (an allow:
  a blocked clip is never written)? does the snapshot digest match the run's?
- does the audit chain still hold the head the credential carries (it was not cut or
  rewritten since)? was the file signed by the certificate recorded for it?
- is the checkpoint's training run tainted *now* (:func:`provenance.audit.taint.run_taint`):
  a member opted out, or its licence was re-assessed, since the snapshot?

The outcome is ``matches``, ``unknown`` (this database has no such checkpoint or
generation), ``contradicts`` (it has them, and they say otherwise) or ``tainted``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit.anchors import head_problem, parse_anchor
from provenance.audit.taint import run_taint
from provenance.content_credentials import CredentialReading
from provenance.credential_rows import credential_by_label
from provenance.models import Checkpoint, ContentCredential, GateDecision, Generation
from provenance.training_runs import run_of_checkpoint

OUTCOMES = ("matches", "unknown", "contradicts", "tainted")
GATE_STAGE = "similarity_gate"


@dataclass
class OutputCheck:
    """What the record says about one credential's claims."""

    outcome: str  # one of OUTCOMES
    generation_id: int | None = None
    checkpoint_id: int | None = None
    training_run_id: int | None = None
    gate_decision_id: int | None = None
    unknown: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tainted_members: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "generation_id": self.generation_id,
            "checkpoint_id": self.checkpoint_id,
            "training_run_id": self.training_run_id,
            "gate_decision_id": self.gate_decision_id,
            "unknown": list(self.unknown),
            "problems": list(self.problems),
            "tainted_members": [dict(m) for m in self.tainted_members],
        }


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _checkpoint(session: Session, sha256: Any) -> Checkpoint | None:
    if not isinstance(sha256, str):
        return None
    return session.execute(
        select(Checkpoint).where(Checkpoint.sha256 == sha256.lower())
    ).scalar_one_or_none()


def check_output(
    session: Session, reading: CredentialReading, *, file_sha256: str | None = None
) -> OutputCheck:
    """Hold a validated credential's fairchord claims against the record (see the module).

    ``file_sha256`` (the file's bytes as read) is compared with the sha256 recorded when
    the file was signed.
    """
    claims = reading.generation or {}
    gate = _mapping(claims.get("gate"))
    ckpt_claim = _mapping(claims.get("checkpoint"))
    check = OutputCheck(outcome="unknown", gate_decision_id=_int(gate.get("decision_id")))
    if not claims:
        check.unknown.append("the credential has no org.fairchord.generation assertion")
        return check

    ckpt = _checkpoint(session, ckpt_claim.get("sha256"))
    if ckpt is None:
        check.unknown.append(f"no checkpoint with sha256 {ckpt_claim.get('sha256')}")
    else:
        check.checkpoint_id, check.training_run_id = ckpt.id, ckpt.training_run_id
    row: ContentCredential | None = None
    if reading.manifest_label:
        row = credential_by_label(session, reading.manifest_label)
    decision = (
        session.get(GateDecision, check.gate_decision_id)
        if check.gate_decision_id is not None
        else None
    )
    if row is not None:
        check.generation_id = row.generation_id
    elif decision is not None and decision.generation_id is not None:
        check.generation_id = decision.generation_id
    generation = (
        session.get(Generation, check.generation_id) if check.generation_id is not None else None
    )
    if generation is None:
        check.unknown.append(
            f"no generation signed as {reading.manifest_label} or gated by decision "
            f"{check.gate_decision_id}"
        )
    if check.unknown:
        return check
    assert ckpt is not None and generation is not None

    problems = check.problems
    _check_generation(problems, claims, generation, ckpt)
    _check_credential_row(problems, reading, row, generation, file_sha256)
    _check_decision(problems, gate, decision, generation)
    run = run_of_checkpoint(session, ckpt)
    if run is None:
        problems.append(f"training run {ckpt.training_run_id} of checkpoint {ckpt.id} is gone")
    elif claims.get("snapshot_digest") != run.members_digest:
        problems.append(
            f"snapshot digest {claims.get('snapshot_digest')} is not training run {run.id}'s "
            f"{run.members_digest}"
        )
    head = parse_anchor(claims.get("audit_head"))
    if head is None:
        problems.append(f"audit head {claims.get('audit_head')!r} is not SEQ:HASH")
    else:
        why = head_problem(session, head)
        if why is not None:
            problems.append(f"audit head {head}: {why}")

    if run is not None:
        taint = run_taint(session, run)
        check.tainted_members = [
            {"recording_id": m.recording_id, "sha256": m.sha256, "reasons": list(m.reasons)}
            for m in taint.members
        ]
    if problems:
        check.outcome = "contradicts"
    elif check.tainted_members:
        check.outcome = "tainted"
    else:
        check.outcome = "matches"
    return check


def _check_generation(
    problems: list[str], claims: dict[str, Any], generation: Generation, ckpt: Checkpoint
) -> None:
    claimed_id = _int(claims.get("generation_id"))
    if claimed_id is not None and claimed_id != generation.id:
        problems.append(f"the credential names generation {claimed_id}, the record {generation.id}")
    if generation.checkpoint_id != ckpt.id:
        problems.append(
            f"generation {generation.id} used checkpoint {generation.checkpoint_id}, not {ckpt.id}"
        )
    if generation.status != "allowed":
        problems.append(f"generation {generation.id} is recorded as {generation.status}")
    if _int(claims.get("seed")) is not None and claims.get("seed") != generation.seed:
        problems.append(f"seed {claims.get('seed')} is recorded as {generation.seed}")


def _check_credential_row(
    problems: list[str],
    reading: CredentialReading,
    row: ContentCredential | None,
    generation: Generation,
    file_sha256: str | None,
) -> None:
    if row is None:
        problems.append(
            f"generation {generation.id}'s file was not recorded as signed with manifest "
            f"{reading.manifest_label}"
        )
        return
    if row.signer != reading.signer:
        problems.append(f"signed by {reading.signer}, recorded as signed by {row.signer}")
    serial = (row.claims or {}).get("signer_serial")
    if serial and reading.signer_serial and serial != reading.signer_serial:
        problems.append(f"signing certificate serial {reading.signer_serial}, recorded {serial}")
    if file_sha256 is not None and row.file_sha256 and file_sha256 != row.file_sha256:
        problems.append(f"file sha256 {file_sha256}, recorded {row.file_sha256}")


def _check_decision(
    problems: list[str],
    gate: dict[str, Any],
    decision: GateDecision | None,
    generation: Generation,
) -> None:
    verdict = gate.get("verdict")
    if verdict != "allow":
        problems.append(f"the credential's gate verdict is {verdict!r}, not 'allow'")
    if decision is None:
        problems.append(f"gate decision {gate.get('decision_id')} is not in the record")
        return
    if decision.generation_id != generation.id or decision.stage != GATE_STAGE:
        problems.append(
            f"gate decision {decision.id} is the {decision.stage} decision of generation "
            f"{decision.generation_id}, not the similarity gate's of {generation.id}"
        )
    if decision.verdict != verdict:
        problems.append(
            f"gate decision {decision.id} is recorded as {decision.verdict!r}, "
            f"the credential says {verdict!r}"
        )
