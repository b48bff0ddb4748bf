"""One self-contained HTML file for a checkpoint's licence audit, charts embedded."""

from __future__ import annotations

from collections import Counter
from html import escape
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit.charts import barh, consent_timeline, data_uri
from provenance.audit.detectors import NOT_CALIBRATED, SECTION_TITLE, joined
from provenance.audit.licence_report import LicenceReport
from provenance.eligibility import eligibility_table
from provenance.models import ConsentEvent
from provenance.policies import load_policy

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222}
h1{margin-bottom:.2rem} .muted{color:#666}
.verdict{display:inline-block;padding:.2rem .6rem;border-radius:4px;font-weight:600}
.clean{background:#d4edda;color:#155724} .tainted{background:#f8d7da;color:#721c24}
table{border-collapse:collapse;font-size:.85rem;margin:1rem 0}
th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3} code{font-size:.8rem}
.charts{display:flex;flex-wrap:wrap;gap:1rem} .charts img{max-width:100%;border:1px solid #eee}
"""


def _table(headers: list[str], rows: list[list[str]], *, table_id: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cohort_text(cohort: dict[str, Any] | None) -> str:
    if not cohort:
        return "no outside cohort recorded"
    tracks = cohort.get("tracks") or {}
    return (
        f"{sum(tracks.values())} tracks ({joined(tracks)}) by {cohort.get('artists', '?')} "
        f"artists, {cohort.get('seconds', '?')} s; licences: {joined(cohort.get('licences'))}; "
        f"packages: {joined(cohort.get('packages'))}; sha256 {cohort.get('sha256', '')}"
    )


def _gate_section(report: LicenceReport) -> str:
    """The detector(s) behind the checkpoint's similarity gate and what each learned from."""
    title = f'<h2 id="gate">{escape(SECTION_TITLE)}</h2>'
    if not report.gate_detectors:
        return f'{title}<p id="gate-detectors">{escape(NOT_CALIBRATED)}.</p>'
    rows = []
    for d in report.gate_detectors:
        artist_model = d["gate_index"]["artist_model"] or {}
        rows.append(
            [
                f"<b>{escape(d['name'] or d['kind'])}</b> ({escape(d['kind'])})<br>"
                f"<code>{escape(d['embedder_sha256'])}</code>",
                escape(d["task"] or ""),
                escape(d["training_data"] or "not recorded"),
                escape(d["licence"] or "not recorded"),
                escape("; ".join(x for x in (d["authors"], d["reference"]) if x)),
                f"{escape(d['source_package'] or '')}<br>"
                + "<br>".join(
                    f"{escape(name)} <code>{escape(str(sha))}</code>"
                    for name, sha in (d["weights_sha256"] or {}).items()
                ),
                escape(_cohort_text(d["cohort"])),
                f"<code>{escape(d['gate_index']['sha256'])}</code><br>"
                + escape(
                    f"artist model {artist_model.get('method')}, "
                    f"threshold {artist_model.get('threshold')}"
                    if artist_model
                    else "no artist model"
                ),
            ]
        )
    return title + _table(
        [
            "detector",
            "task",
            "trained on",
            "licence",
            "authors, reference",
            "source package, weights sha256",
            "calibrated against (outside music)",
            "gate index",
        ],
        rows,
        table_id="gate-detectors",
    )


def _head_text(report: LicenceReport) -> str:
    head = report.audit_head or {}
    return f"{head.get('seq', '')}:{head.get('hash', '')}" if head else ""


def render_html(session: Session, report: LicenceReport) -> str:
    policy = load_policy(report.policy)
    reasons: Counter[str] = Counter()
    for verdict in eligibility_table(session, policy, report.snapshot_at):
        for reason in verdict.reasons or ["eligible"]:
            reasons[reason.split(":", 1)[0] if reason.startswith("opted_out") else reason] += 1
    events = [
        (e.effective_at, e.action, str(e.party_id or e.recording_id or e.source_id))
        for e in session.execute(select(ConsentEvent).order_by(ConsentEvent.effective_at)).scalars()
    ]
    charts = [
        barh(
            {k: v["minutes"] for k, v in report.totals_by_licence.items()},
            title="Minutes of training audio by concluded licence",
            xlabel="minutes",
        ),
        barh(
            dict(reasons),
            title=f"Eligibility under '{report.policy}' at snapshot (all recordings)",
            xlabel="recordings",
        ),
        barh(
            {k: v["minutes"] for k, v in report.totals_by_artist.items()},
            title="Minutes of training audio per artist",
            xlabel="minutes",
        ),
        consent_timeline(events, snapshot_at=report.snapshot_at),
    ]
    member_rows = [
        [
            f"<code>{escape(m.sha256[:16])}…</code>",
            escape(m.title or ""),
            escape(", ".join(m.artists) or "—"),
            escape(m.declared_licence or ""),
            escape(m.concluded_at_snapshot),
            escape(m.consent_at_snapshot),
            escape(m.consent_now),
            f"{m.minutes:.2f}",
            escape("; ".join(m.taint_reasons) or ""),
        ]
        for m in report.members
    ]
    taint_html = ""
    if report.taint.members:
        taint_html = "<h2>Why it is tainted</h2>" + _table(
            ["recording", "reasons", "consent events", "licence assertions"],
            [
                [
                    f"<code>{escape(t.sha256[:16])}…</code>",
                    escape("; ".join(t.reasons)),
                    escape(", ".join(map(str, t.event_ids))),
                    escape(", ".join(map(str, t.assertion_ids))),
                ]
                for t in report.taint.members
            ],
            table_id="taint",
        )
    obligations = "".join(
        f"<li><code>{escape(k)}</code>: {len(v)} recording(s)</li>"
        for k, v in report.obligations.items()
    )
    total_minutes = sum(m.minutes for m in report.members)
    images = "".join(f'<img alt="chart" src="{data_uri(png)}">' for png in charts)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="fairchord-audit-head" content="{escape(_head_text(report))}">
<title>fairchord licence audit — checkpoint {report.checkpoint_id}</title>
<style>{_STYLE}</style></head><body>
<h1>Licence audit: checkpoint {report.checkpoint_id}</h1>
<p class="muted">checkpoint sha256 <code>{escape(report.checkpoint_sha256)}</code><br>
training run {report.training_run_id}, policy <b>{escape(report.policy)}</b>
v{escape(report.policy_version_at_snapshot)} (now v{escape(report.policy_version_now)}),
snapshot {escape(report.snapshot_at.isoformat())}, digest
<code>{escape(report.snapshot_digest or "")}</code><br>
generated {escape(report.generated_at.isoformat())}, audit chain head
<code id="audit-head">{escape(_head_text(report))}</code></p>
<p>Verdict: <span class="verdict {report.verdict}" id="verdict">{report.verdict}</span>
— {len(report.members)} recordings, {total_minutes:.1f} minutes of audio.</p>
{taint_html}
<h2>Charts</h2><div class="charts">{images}</div>
<h2>Obligations</h2><ul>{obligations or "<li>none</li>"}</ul>
{_gate_section(report)}
<h2>Members</h2>
{
        _table(
            [
                "sha256",
                "title",
                "artists",
                "declared licence",
                "concluded licence",
                "consent at snapshot",
                "consent now",
                "minutes",
                "taint",
            ],
            member_rows,
            table_id="members",
        )
    }
</body></html>
"""
