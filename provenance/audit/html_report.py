"""One self-contained HTML file for a checkpoint's licence audit, charts embedded."""

from __future__ import annotations

from collections import Counter
from html import escape

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit.charts import barh, consent_timeline, data_uri
from provenance.audit.html_sections import (
    gate_section,
    members_table,
    signers_section,
    taint_section,
    totals_table,
    verify_section,
)
from provenance.audit.licence_report import LicenceReport
from provenance.eligibility import eligibility_table
from provenance.models import ConsentEvent, Party, TrainingRun
from provenance.policies import load_policy

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222}
h1{margin-bottom:.2rem} .muted{color:#666}
.verdict{display:inline-block;padding:.2rem .6rem;border-radius:4px;font-weight:600}
.clean{background:#d4edda;color:#155724} .tainted{background:#f8d7da;color:#721c24}
table{border-collapse:collapse;font-size:.85rem;margin:1rem 0}
th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3} code{font-size:.8rem}
code.sha{word-break:break-all;user-select:all}
.url{color:#555;font-size:.75rem;word-break:break-all}
tr.tainted-row td{background:#fdecea}
.charts{display:flex;flex-wrap:wrap;gap:1rem} .charts img{max-width:100%;border:1px solid #eee}
@media print{
 body{margin:1cm;font-size:10pt} .charts{display:block} .charts img{max-width:48%;display:inline}
 table{font-size:8pt;page-break-inside:auto} tr{page-break-inside:avoid}
 thead{display:table-header-group} h2{page-break-after:avoid}
 tr.tainted-row td{background:#fdecea !important;-webkit-print-color-adjust:exact;
  print-color-adjust:exact}
}
"""


def _head_text(report: LicenceReport) -> str:
    head = report.audit_head or {}
    return f"{head.get('seq', '')}:{head.get('hash', '')}" if head else ""


def _subject(session: Session, event: ConsentEvent) -> str:
    """Who or what a consent event is about, as a reader knows it."""
    if event.party_id is not None:
        party = session.get(Party, event.party_id)
        return party.name if party is not None else f"party {event.party_id}"
    if event.recording_id is not None:
        return f"recording {event.recording_id}"
    return f"source {event.source_id}"


def _charts(session: Session, report: LicenceReport) -> list[bytes]:
    policy = load_policy(report.policy)
    reasons: Counter[str] = Counter()
    verdicts = eligibility_table(session, policy, report.snapshot_at)
    for verdict in verdicts:
        for reason in verdict.reasons or ["eligible"]:
            reasons[reason.split(":", 1)[0] if reason.startswith("opted_out") else reason] += 1
    events = [
        (e.effective_at, e.action, _subject(session, e))
        for e in session.execute(select(ConsentEvent).order_by(ConsentEvent.effective_at)).scalars()
    ]
    return [
        barh(
            {k: v["minutes"] for k, v in report.totals_by_licence.items()},
            title="Minutes of training audio by concluded licence",
            xlabel="minutes",
        ),
        barh(
            dict(reasons),
            title=f"Reasons under '{report.policy}' at snapshot ({len(verdicts)} recordings)",
            xlabel="reasons counted (one recording can have several; eligible ones count once)",
        ),
        barh(
            {k: v["minutes"] for k, v in report.totals_by_artist.items()},
            title="Minutes of training audio per artist",
            xlabel="minutes",
        ),
        consent_timeline(events, snapshot_at=report.snapshot_at),
    ]


def render_html(session: Session, report: LicenceReport) -> str:
    run = session.get(TrainingRun, report.training_run_id)
    policy_sha256 = run.policy_sha256 if run is not None else ""
    head = _head_text(report)
    obligations = "".join(
        f"<li><code>{escape(k)}</code>: {len(v)} recording(s)</li>"
        for k, v in report.obligations.items()
    )
    total_minutes = sum(m.minutes for m in report.members)
    images = "".join(f'<img alt="chart" src="{data_uri(png)}">' for png in _charts(session, report))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="fairchord-audit-head" content="{escape(head)}">
<title>fairchord licence audit — checkpoint {report.checkpoint_id}</title>
<style>{_STYLE}</style></head><body>
<h1>Licence audit: checkpoint {report.checkpoint_id}</h1>
<p class="muted">checkpoint sha256 <code class="sha">{escape(report.checkpoint_sha256)}</code><br>
training run {report.training_run_id}, policy <b>{escape(report.policy)}</b>
v{escape(report.policy_version_at_snapshot)} (now v{escape(report.policy_version_now)}),
policy file sha256 <code class="sha" id="policy-sha256">{escape(policy_sha256)}</code>,
snapshot {escape(report.snapshot_at.isoformat())}, digest
<code class="sha">{escape(report.snapshot_digest or "")}</code><br>
generated {escape(report.generated_at.isoformat())}, audit chain head
<code class="sha" id="audit-head">{escape(head)}</code></p>
<p>Verdict: <span class="verdict {report.verdict}" id="verdict">{report.verdict}</span>
— {len(report.members)} recordings, {total_minutes:.1f} minutes of audio.</p>
{taint_section(session, report)}
<h2>Charts</h2><div class="charts">{images}</div>
<h2>Totals by licence</h2>
{totals_table(report)}
<h2>Obligations</h2><ul>{obligations or "<li>none</li>"}</ul>
{gate_section(report)}
{signers_section(report)}
<h2>Members</h2>
{members_table(report)}
{verify_section(report, head=head, policy_sha256=policy_sha256)}
</body></html>
"""
