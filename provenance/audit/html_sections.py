"""The sections of the HTML licence audit: members, taint, totals, gate, how to verify."""

from __future__ import annotations

from html import escape
from typing import Any

from sqlalchemy.orm import Session

from provenance.audit.detectors import NOT_CALIBRATED, SECTION_TITLE, joined
from provenance.audit.licence_report import LicenceReport, licence_ids, licence_url
from provenance.audit.signers import SECTION_TITLE as SIGNERS_TITLE
from provenance.models import ConsentEvent


def _table(
    headers: list[str],
    rows: list[list[str]],
    *,
    table_id: str,
    row_classes: list[str] | None = None,
) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    classes = row_classes or [""] * len(rows)
    body = "".join(
        (f'<tr class="{c}">' if c else "<tr>") + "".join(f"<td>{x}</td>" for x in row) + "</tr>"
        for c, row in zip(classes, rows, strict=True)
    )
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


def gate_section(report: LicenceReport) -> str:
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


def _licence_cell(expression: str) -> str:
    urls = [u for u in (licence_url(i) for i in licence_ids(expression)) if u]
    links = "".join(f'<br><span class="url">{escape(u)}</span>' for u in urls)
    return f"{escape(expression)}{links}"


def members_table(report: LicenceReport) -> str:
    """Every member: full sha256, title, credit, licences with their URLs, source, consent
    then and now, minutes, taint. Tainted rows are highlighted."""
    rows = [
        [
            f'<code class="sha">{escape(m.sha256)}</code>',
            escape(m.title or "(untitled)"),
            escape(", ".join(m.artists) or "(no named artist)"),
            escape(m.declared_licence or ""),
            _licence_cell(m.concluded_at_snapshot),
            f'<span class="url">{escape(m.source_url or m.source_uri or "")}</span>',
            escape(m.consent_at_snapshot),
            escape(m.consent_now),
            f"{m.minutes:.2f}",
            escape("; ".join(m.taint_reasons)),
        ]
        for m in report.members
    ]
    headers = [
        "sha256",
        "title",
        "credit",
        "declared licence",
        "concluded licence",
        "source",
        "consent at snapshot",
        "consent now",
        "minutes",
        "taint",
    ]
    classes = ["tainted-row" if m.taint_reasons else "" for m in report.members]
    return _table(headers, rows, table_id="members", row_classes=classes)


def totals_table(report: LicenceReport) -> str:
    rows = [
        [escape(name), f"{int(v.get('recordings', 0))}", f"{v.get('minutes', 0.0):.2f}"]
        for name, v in sorted(report.totals_by_licence.items())
    ]
    total_minutes = sum(v.get("minutes", 0.0) for v in report.totals_by_licence.values())
    rows.append(["<b>all</b>", f"<b>{len(report.members)}</b>", f"<b>{total_minutes:.2f}</b>"])
    return _table(["concluded licence", "recordings", "minutes"], rows, table_id="totals")


def taint_section(session: Session, report: LicenceReport) -> str:
    """Each tainted member with its title and artist, the consent events behind it (date,
    origin, evidence), and what follows."""
    if not report.taint.members:
        return ""
    by_id = {m.recording_id: m for m in report.members}
    rows = []
    for t in report.taint.members:
        member = by_id.get(t.recording_id)
        events = [session.get(ConsentEvent, i) for i in t.event_ids]
        event_text = "<br>".join(
            f"event {e.id}: {escape(e.action)} for {escape(e.purpose)}, effective "
            f"{escape(e.effective_at.isoformat())}, origin {escape(e.origin)}"
            + (f", evidence: {escape(e.evidence)}" if e.evidence else "")
            for e in events
            if e is not None
        )
        rows.append(
            [
                f'<code class="sha">{escape(t.sha256)}</code>',
                escape((member.title if member else None) or "(untitled)"),
                escape(", ".join(member.artists) if member else "") or "(no named artist)",
                escape("; ".join(t.reasons)),
                event_text or "—",
                escape(", ".join(map(str, t.assertion_ids))) or "—",
            ]
        )
    table = _table(
        ["recording", "title", "artist", "reasons", "consent events", "licence assertions"],
        rows,
        table_id="taint",
        row_classes=["tainted-row"] * len(rows),
    )
    follows = (
        "<p><b>What follows:</b> <code>fairchord generate</code> refuses this checkpoint "
        "(exit 8) unless a research policy allows it explicitly; retrain without these "
        "recordings (<code>fairchord train</code> freezes a new snapshot under today's "
        "consent and licences) and calibrate the new checkpoint's gate.</p>"
    )
    return f'<h2 id="tainted">Why it is tainted</h2>{table}{follows}'


def verify_section(report: LicenceReport, *, head: str, policy_sha256: str) -> str:
    """How a reader checks this report against the record it came from."""
    return f"""<h2 id="verify">How to verify this report</h2>
<ol>
<li>On the machine that holds the provenance database, run
<code>fairchord audit verify --expect-head {escape(head)}</code>: it re-walks the audit
chain, re-hashes every object, shard, checkpoint and gate file, and confirms that the chain
still contains the head printed in this report.</li>
<li>Regenerate the data of this report with
<code>fairchord audit licenses --checkpoint {report.checkpoint_id} --json</code> and
compare the members and verdict.</li>
<li>Check the checkpoint file: its sha256 must be
<code>{escape(report.checkpoint_sha256)}</code>, and its header names the snapshot digest
<code>{escape(report.snapshot_digest or "")}</code>.</li>
<li>The policy file the snapshot was frozen under has sha256
<code>{escape(policy_sha256)}</code> (<code>fairchord policy show {escape(report.policy)}</code>
prints the current one).</li>
</ol>"""


def signers_section(report: LicenceReport) -> str:
    """The certificates that signed the checkpoint's generated files, with fingerprints."""
    signed = report.output_signers or {}
    rows = "".join(
        f"<tr><td>{escape(str(s['subject']))}</td>"
        f'<td><code class="sha">{escape(str(s["sha256"]))}</code></td>'
        f"<td>{s['files']}</td></tr>"
        for s in signed.get("signers", [])
    )
    unsigned = signed.get("unsigned", 0)
    table = (
        '<table id="output-signers"><tr><th>certificate subject</th>'
        "<th>sha256 fingerprint (DER)</th><th>files signed</th></tr>"
        f"{rows}</table>"
        if rows
        else '<p id="output-signers">No signed generated file is recorded.</p>'
    )
    note = (
        f"<p>{unsigned} generated file(s) were written without a credential "
        "(no signing keys were configured).</p>"
        if unsigned
        else ""
    )
    return (
        f"<h2>{escape(SIGNERS_TITLE)}</h2>{table}{note}"
        '<p class="muted">Check one file with <code>fairchord verify-output FILE</code>. '
        "A credential proves who signed the file and that its audio is unchanged since; "
        "it does not survive re-encoding.</p>"
    )
