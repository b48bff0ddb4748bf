"""Record newly found taint in the audit log, once per distinct finding."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit.taint import RunTaint
from provenance.audit_log import append_event, canonical_json
from provenance.models import AuditEvent

TAINT_ACTION = "training_run.tainted"


def finding_key(finding: RunTaint) -> str:
    body = canonical_json(
        {
            "run": finding.training_run_id,
            "members": [[m.recording_id, sorted(m.reasons)] for m in finding.members],
        }
    )
    return hashlib.sha256(body.encode()).hexdigest()


def record_new_taint(session: Session, findings: list[RunTaint]) -> list[RunTaint]:
    """Append an audit event for each finding not already logged; return the new ones."""
    logged = set()
    for payload in session.execute(
        select(AuditEvent.payload).where(AuditEvent.action == TAINT_ACTION)
    ).scalars():
        logged.add(json.loads(payload).get("finding_key"))
    new = []
    for finding in findings:
        key = finding_key(finding)
        if key in logged:
            continue
        append_event(
            session,
            TAINT_ACTION,
            entity="training_run",
            entity_id=finding.training_run_id,
            payload={
                "finding_key": key,
                "policy": finding.policy,
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
            },
        )
        new.append(finding)
    return new
