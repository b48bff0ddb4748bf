"""What the HTML audit gives the person who signs it: whole digests, licence and source
URLs, credits, highlighted taint with its events, totals, the policy file's digest, how to
verify, and a print stylesheet."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy.orm import Session

from provenance.audit.charts import consent_timeline
from provenance.audit.html_report import render_html
from provenance.audit.licence_report import build_licence_report
from provenance.models import TrainingRun
from tests.common.ledger import build_recorded_run, party_opt_out


def _later() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)


def test_clean_report_names_everything_an_auditor_asks_for(
    session: Session, tmp_path: Path
) -> None:
    recorded = build_recorded_run(session, tmp_path)
    report = build_licence_report(session, recorded.checkpoint)
    html = render_html(session, report)
    for member in report.members:
        assert f'<code class="sha">{member.sha256}</code>' in html  # whole, copyable
        if member.source_url:
            assert member.source_url in html
    assert "https://spdx.org/licenses/CC-BY-SA-3.0.html" in html  # as text, not a link
    assert "Will Savino" in html
    run = session.get(TrainingRun, recorded.run.id)
    assert run is not None and f'id="policy-sha256">{run.policy_sha256}<' in html
    assert 'id="totals"' in html and "<b>3</b>" in html  # all three members in the totals
    assert 'id="verify"' in html and "fairchord audit verify --expect-head" in html
    assert "@media print" in html
    assert "tainted-row" not in html.split("<style>")[1].split("</style>")[1]
    assert 'id="tainted"' not in html


def test_tainted_report_highlights_rows_and_says_why_and_what_follows(
    session: Session, tmp_path: Path
) -> None:
    recorded = build_recorded_run(session, tmp_path)
    event = party_opt_out(session, "Will Savino")
    report = build_licence_report(session, recorded.checkpoint, now=_later())
    html = render_html(session, report)
    taint = html.split('id="tainted"')[1].split("<h2>")[0]
    assert "Caribbean" in taint and "Will Savino" in taint
    assert f"event {event.id}: opt_out for training" in taint
    assert event.effective_at.isoformat() in taint
    assert "origin cli" in taint and "email from the artist" in taint
    assert "refuses this checkpoint" in taint and "retrain without" in taint
    members = html.split('id="members"')[1]
    assert members.count('<tr class="tainted-row">') == 2  # the two Will Savino recordings


def test_consent_chart_without_events_says_so() -> None:
    png = consent_timeline([], snapshot_at=dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    assert png.startswith(b"\x89PNG")
    one = consent_timeline(
        [(dt.datetime(2026, 6, 2, tzinfo=dt.UTC), "opt_out", "7")],
        snapshot_at=dt.datetime(2026, 6, 1, tzinfo=dt.UTC),
    )
    assert one.startswith(b"\x89PNG") and one != png
