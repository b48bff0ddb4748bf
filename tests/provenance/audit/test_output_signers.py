"""The audit names the certificates that signed a checkpoint's generated files."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from provenance.audit.croissant import croissant_snapshot
from provenance.audit.html_report import render_html
from provenance.audit.licence_report import build_licence_report
from provenance.audit.signers import output_signers, signers_summary
from provenance.models import ContentCredential, Generation
from provenance.signing_keys import init_keys
from tests.common.ledger import build_recorded_run


def _generation(session: Session, checkpoint_id: int) -> Generation:
    row = Generation(checkpoint_id=checkpoint_id, prompt="a tune", status="allowed", params={})
    session.add(row)
    session.flush()
    return row


def test_signers_are_named_with_subject_and_fingerprint(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    facts = init_keys(tmp_path / "keys").leaf
    checkpoint_id = recorded.checkpoint.id
    for status in ("signed", "signed", "unsigned"):
        signed = status == "signed"
        session.add(
            ContentCredential(
                generation_id=_generation(session, checkpoint_id).id,
                status=status,
                signer=facts.subject if signed else None,
                signer_sha256=facts.sha256 if signed else None,
                claims={},
                validation={},
            )
        )
    session.flush()

    found = output_signers(session, checkpoint_id)
    assert found["unsigned"] == 1
    assert [(s["subject"], s["sha256"], s["files"]) for s in found["signers"]] == [
        (facts.subject, facts.sha256, 2)
    ]
    assert facts.sha256 in signers_summary(found) and "1 file(s) written unsigned" in (
        signers_summary(found)
    )

    report = build_licence_report(session, recorded.checkpoint)
    html = render_html(session, report)
    section = html.split('id="output-signers"')[1]
    assert facts.subject.split(",")[0] in section and facts.sha256 in section
    assert "1 generated file(s) were written without a credential" in html
    croissant = croissant_snapshot(report)["contentCredentials"]
    assert croissant["unsignedFiles"] == 1
    assert croissant["signers"][0]["sha256"] == facts.sha256
    assert croissant["signers"][0]["filesSigned"] == 2


def test_no_generation_says_so(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    report = build_licence_report(session, recorded.checkpoint)
    assert report.output_signers == {"signers": [], "unsigned": 0}
    assert "No signed generated file is recorded." in render_html(session, report)
    assert signers_summary(report.output_signers) == "no generated files recorded"
