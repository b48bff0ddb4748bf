"""Licence report, taint, attribution, Croissant export and the HTML report on a recorded run."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from provenance.audit.attribution import attribution_text
from provenance.audit.croissant import CROISSANT_1_1, croissant_snapshot
from provenance.audit.html_report import render_html
from provenance.audit.licence_report import build_licence_report, obligations
from provenance.audit.taint import run_taint, tainted_runs
from provenance.audit.taint_log import record_new_taint
from provenance.consent import ConsentSubject, record_consent
from provenance.licences import record_licence
from provenance.parties import find_party
from tests.common.ledger import build_recorded_run


def _later(seconds: int = 5) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def test_clean_run_report(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    report = build_licence_report(session, recorded.checkpoint)
    assert report.verdict == "clean"
    assert [m.title for m in report.members] == ["Caribbean", "Ivory Tower", "Breaking the Chains"]
    assert report.totals_by_licence["CC-BY-SA-3.0"]["recordings"] == 2
    assert report.totals_by_artist["Will Savino"]["minutes"] == pytest.approx((62.3 + 63.8) / 60)
    assert "attribution:CC-BY-SA-3.0" in report.obligations
    assert "share_alike:GPL-2.0-or-later" in report.obligations
    assert all(m.consent_now == m.consent_at_snapshot for m in report.members)


def test_obligations_follow_licence_ids() -> None:
    assert obligations("CC-BY-4.0") == ["attribution:CC-BY-4.0"]
    assert obligations("MIT OR CC0-1.0") == ["attribution:MIT"]
    assert obligations("LicenseRef-Drascula") == []


def test_party_opt_out_after_snapshot_taints(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    party = find_party(session, "Will Savino")
    assert party is not None
    event = record_consent(
        session,
        subject=ConsentSubject("party", party.id),
        action="opt_out",
        purpose="training",
        effective_at=dt.datetime.now(dt.UTC),
        origin="cli",
        evidence="email from the artist",
    )
    assert event is not None
    findings = tainted_runs(session, now=_later())
    assert [f.training_run_id for f in findings] == [recorded.run.id]
    tainted = {m.recording_id: m for m in findings[0].members}
    assert set(tainted) == {recorded.recordings[0].id, recorded.recordings[1].id}
    assert all(event.id in m.event_ids for m in tainted.values())
    report = build_licence_report(session, recorded.checkpoint, now=_later())
    assert report.verdict == "tainted"
    assert report.members[0].consent_now == "opted_out"
    assert report.members[2].consent_now == report.members[2].consent_at_snapshot
    # Logged once; the same finding is not logged again.
    assert len(record_new_taint(session, findings)) == 1
    assert record_new_taint(session, tainted_runs(session, now=_later())) == []


def test_opt_out_for_another_purpose_does_not_taint(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    party = find_party(session, "Mattias Westlund")
    assert party is not None
    record_consent(
        session,
        subject=ConsentSubject("party", party.id),
        action="opt_out",
        purpose="style_imitation",
        effective_at=dt.datetime.now(dt.UTC),
        origin="cli",
    )
    assert not run_taint(session, recorded.run, now=_later()).tainted


def test_backdated_opt_out_recorded_later_taints(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    rec = recorded.recordings[2]
    record_consent(
        session,
        subject=ConsentSubject("recording", rec.id),
        action="opt_out",
        purpose="any",
        effective_at=recorded.run.snapshot_at - dt.timedelta(days=1),
        origin="registry_import",
    )
    taint = run_taint(session, recorded.run, now=_later())
    assert [m.recording_id for m in taint.members] == [rec.id]


def test_licence_reassessment_taints(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    rec = recorded.recordings[2]
    record_licence(
        session,
        recording_id=rec.id,
        declared="LicenseRef-All-Rights-Reserved",
        asserted_by="rights review",
    )
    taint = run_taint(session, recorded.run, now=_later())
    assert [m.recording_id for m in taint.members] == [rec.id]
    assert any(r.startswith("licence_reassessed:") for r in taint.members[0].reasons)


def test_attribution_lists_every_member_needing_credit(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    text = attribution_text(build_licence_report(session, recorded.checkpoint))
    assert '"Caribbean" by Will Savino' in text
    assert "https://spdx.org/licenses/CC-BY-SA-3.0.html" in text
    assert '"Breaking the Chains" by Mattias Westlund' in text
    assert "Share-alike notices" in text


REQUIRED_DATASET_FIELDS = (
    "@context",
    "@type",
    "name",
    "description",
    "conformsTo",
    "license",
    "url",
    "distribution",
    "recordSet",
)


def test_croissant_export_is_valid(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    doc = croissant_snapshot(build_licence_report(session, recorded.checkpoint))
    for key in REQUIRED_DATASET_FIELDS:
        assert key in doc, key
    assert doc["conformsTo"] == CROISSANT_1_1
    assert {d["sha256"] for d in doc["distribution"]} == {r.sha256 for r in recorded.recordings}
    assert all(d["contentUrl"] for d in doc["distribution"])
    assert "https://spdx.org/licenses/CC-BY-SA-3.0.html" in doc["license"]
    assert doc["prov:wasGeneratedBy"]["@id"] == f"training-run-{recorded.run.id}"
    assert len(doc["recordSet"][0]["data"]) == 3
    mlc = pytest.importorskip("mlcroissant")
    mlc.Dataset(jsonld=json.loads(json.dumps(doc)))  # raises ValidationError when invalid


def test_html_report_is_self_contained(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    html = render_html(session, build_licence_report(session, recorded.checkpoint))
    assert html.count('src="data:image/png;base64,') == 4
    assert not re.search(r'(src|href)="(https?:)?//', html), "report must not load anything"
    assert 'id="members"' in html and "Breaking the Chains" in html


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed")
def test_html_report_renders_in_chromium(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    page = tmp_path / "report.html"
    page.write_text(render_html(session, build_licence_report(session, recorded.checkpoint)))
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert '<table id="members">' in dom
    assert dom.count("<tr>") >= 4  # header + three members
    assert "Breaking the Chains" in dom
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
