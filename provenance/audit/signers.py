"""Who signed a checkpoint's outputs: the certificates behind their Content Credentials.

Every file ``fairchord generate`` writes carries a C2PA manifest signed with one
certificate (or is recorded as unsigned when no keys were configured). An auditor who
receives a generated file asks which certificate vouches for it; the audit names each
certificate's subject and sha256 fingerprint (of its DER bytes), and how many of the
checkpoint's files it signed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provenance.models import ContentCredential, Generation

SECTION_TITLE = "Content Credentials on this checkpoint's outputs"


def output_signers(session: Session, checkpoint_id: int) -> dict[str, Any]:
    """``{"signers": [{subject, sha256, files, first, last}], "unsigned": n}`` for the files
    written from ``checkpoint_id``, signers ordered by subject."""
    rows = session.execute(
        select(
            ContentCredential.status,
            ContentCredential.signer,
            ContentCredential.signer_sha256,
            func.count(),
            func.min(ContentCredential.created_at),
            func.max(ContentCredential.created_at),
        )
        .join(Generation, Generation.id == ContentCredential.generation_id)
        .where(Generation.checkpoint_id == checkpoint_id)
        .group_by(
            ContentCredential.status, ContentCredential.signer, ContentCredential.signer_sha256
        )
    ).all()
    signers = []
    unsigned = 0
    for status, signer, sha256, count, first, last in rows:
        if status != "signed":
            unsigned += int(count)
            continue
        signers.append(
            {
                "subject": signer,
                "sha256": sha256,
                "files": int(count),
                "first": first.isoformat() if first is not None else None,
                "last": last.isoformat() if last is not None else None,
            }
        )
    signers.sort(key=lambda s: (str(s["subject"]), str(s["sha256"])))
    return {"signers": signers, "unsigned": unsigned}


def signers_summary(signed: dict[str, Any]) -> str:
    """One sentence: which certificates signed how many files, and how many went unsigned."""
    parts = [
        f"{s['files']} file(s) signed by {s['subject']} (sha256 {s['sha256']})"
        for s in signed.get("signers", [])
    ]
    if signed.get("unsigned"):
        parts.append(f"{signed['unsigned']} file(s) written unsigned")
    return "; ".join(parts) or "no generated files recorded"
