"""`fairchord audit`: what a checkpoint learned from, whether it still holds, tamper checks."""

from __future__ import annotations

import csv
import io
import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from flows.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    console,
    err_console,
    fail,
    print_json,
    print_table,
    session_scope,
    terminal_safe,
)
from provenance.csv_safety import safe_row

if TYPE_CHECKING:
    from provenance.audit.licence_report import LicenceReport
    from provenance.audit_log import ChainHead

audit_app = typer.Typer(
    help="Audit training data: licences, consent, taint, attribution, export, integrity.",
    no_args_is_help=True,
)

# `audit taint` exits with this when any checkpoint is tainted, so schedulers can alert.
EXIT_TAINTED = 4


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    html = "html"


def _reports(session: Session, checkpoint: str | None, all_: bool) -> list[LicenceReport]:
    from provenance.audit.licence_report import build_licence_report
    from provenance.audit.members import UnknownCheckpoint, checkpoints_to_report

    try:
        ckpts = checkpoints_to_report(session, checkpoint, every=all_)
    except UnknownCheckpoint as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    return [build_licence_report(session, c) for c in ckpts]


def _witness_reports(reports: list[LicenceReport], what: str) -> None:
    """Note each report's chain head in the home's witness log (provenance.audit.anchors)."""
    from provenance.audit.anchors import parse_anchor, witness
    from provenance.settings import fairchord_home

    for r in reports:
        head = parse_anchor(r.audit_head)
        if head is not None:
            witness(fairchord_home(), head, f"{what} for checkpoint {r.checkpoint_id}")


@audit_app.command("licenses")
def licenses(
    checkpoint: str | None = typer.Option(
        None, "--checkpoint", help="Checkpoint id or sha256 prefix (default: the newest)."
    ),
    all_: bool = typer.Option(False, "--all", help="Every checkpoint."),
    fmt: ReportFormat = typer.Option(ReportFormat.table, "--format", help="Output format."),
    json_output: bool = typer.Option(
        False, "--json", help="Same as --format json: one JSON document."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Write to this file instead of stdout. With --format csv the gate detectors go "
        "to a second file beside it: --out report.csv also writes report.gate-detectors.csv.",
    ),
) -> None:
    """Every member of a checkpoint's snapshot with its licence and consent (then and now),
    totals, obligations and the verdict: clean, or tainted with reasons.

    Every format also says what the gate itself learned from: the similarity gate's
    detector (the pretrained embedder, its training data, licence, source package and
    weights sha256) and the outside-music cohort it is calibrated against, or that the
    checkpoint's gate is not calibrated. JSON has it under "gate_detectors" (and a
    one-sentence "gate_summary"); HTML in its own section. CSV keeps one row per member,
    so the detectors (one row each, or a "not calibrated" row per checkpoint) go to a
    second CSV beside --out (report.csv, report.gate-detectors.csv); without --out only the
    members are written to stdout and the gate summary goes to stderr."""
    if json_output:
        if fmt not in (ReportFormat.table, ReportFormat.json):
            fail(f"--json is --format json; it cannot go with --format {fmt.value}", EXIT_BAD_INPUT)
        fmt = ReportFormat.json
    with session_scope() as session:
        reports = _reports(session, checkpoint, all_)
        if fmt is ReportFormat.html:
            from provenance.audit.html_report import render_html

            if len(reports) != 1:
                fail("--format html takes one checkpoint; drop --all", EXIT_BAD_INPUT)
            text = render_html(session, reports[0])
        elif fmt is ReportFormat.json:
            from provenance.audit.licence_report import reports_json

            text = reports_json(reports)
        elif fmt is ReportFormat.csv:
            from provenance.audit.licence_report import reports_csv

            text = reports_csv(reports)
        else:
            text = ""
    if fmt is not ReportFormat.table:
        _witness_reports(reports, f"audit licenses --format {fmt.value}")
    if fmt is ReportFormat.table:
        for r in reports:
            _print_table(r)
        return
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")
    else:
        typer.echo(text, nl=False)
    if fmt is ReportFormat.csv:
        _write_gate_detectors_csv(reports, out)


def gate_detectors_csv_path(out: Path) -> Path:
    """Where ``--format csv --out OUT`` writes the gate detectors: beside OUT."""
    return out.with_name(f"{out.stem}.gate-detectors.csv")


def _write_gate_detectors_csv(reports: list[LicenceReport], out: Path | None) -> None:
    from provenance.audit.detectors import CSV_COLUMNS, csv_rows

    if out is None:
        for r in reports:
            err_console.print(
                f"checkpoint {r.checkpoint_id}, what the gate itself learned from: "
                f"{terminal_safe(r.gate_summary)} (--out also writes them as CSV)",
                highlight=False,
            )
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, restval="")
    writer.writeheader()
    for r in reports:
        writer.writerows(safe_row(row) for row in csv_rows(r.checkpoint_id, r.gate_detectors))
    path = gate_detectors_csv_path(out)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    console.print(f"wrote {path}")


def _print_table(report: LicenceReport) -> None:
    colour = "green" if report.verdict == "clean" else "red"
    table = Table(
        title=(
            f"checkpoint {report.checkpoint_id} · run {report.training_run_id} · policy "
            f"{terminal_safe(report.policy)} v{terminal_safe(report.policy_version_at_snapshot)} · "
            f"[{colour}]{report.verdict}[/{colour}]"
        )
    )
    for column in ("sha256", "title", "artists", "licence", "consent then", "consent now", "min"):
        table.add_column(column)
    table.add_column("taint", style="red")
    for m in report.members:
        table.add_row(
            m.sha256[:12],
            terminal_safe(m.title or ""),
            terminal_safe(", ".join(m.artists) or "—"),
            terminal_safe(m.concluded_at_snapshot),
            terminal_safe(m.consent_at_snapshot),
            terminal_safe(m.consent_now),
            f"{m.minutes:.1f}",
            terminal_safe("; ".join(m.taint_reasons)),
        )
    print_table(table)
    console.print(
        "by licence: "
        + ", ".join(
            f"{terminal_safe(k)} {v['minutes']:.1f} min"
            for k, v in report.totals_by_licence.items()
        )
    )
    console.print("obligations: " + terminal_safe(", ".join(report.obligations) or "none"))
    _print_gate_detectors(report)
    _print_output_signers(report)


def _print_output_signers(report: LicenceReport) -> None:
    from provenance.audit.signers import SECTION_TITLE, signers_summary

    summary = signers_summary(report.output_signers)
    console.print(f"{SECTION_TITLE}: {terminal_safe(summary)}", highlight=False)


def _print_gate_detectors(report: LicenceReport) -> None:
    from provenance.audit.detectors import NOT_CALIBRATED, SECTION_TITLE, joined

    if not report.gate_detectors:
        console.print(f"{SECTION_TITLE}: {NOT_CALIBRATED}", highlight=False)
        return
    for d in report.gate_detectors:
        name = terminal_safe(d["name"] or d["kind"])
        table = Table(title=f"{SECTION_TITLE}: {name}", show_header=False)
        table.add_column("fact", style="bold")
        table.add_column("value", overflow="fold")
        cohort = d["cohort"] or {}
        artist_model = d["gate_index"]["artist_model"] or {}
        for fact, value in (
            ("embedder sha256", d["embedder_sha256"]),
            ("kind", d["kind"]),
            ("task", d["task"]),
            ("trained on", d["training_data"]),
            ("licence", d["licence"]),
            ("authors", d["authors"]),
            ("reference", d["reference"]),
            ("source package", d["source_package"]),
            ("weights sha256", joined(d["weights_sha256"])),
            ("gate index sha256", d["gate_index"]["sha256"]),
            ("artist model", joined(artist_model) if artist_model else "none"),
            ("cohort sha256", cohort.get("sha256")),
            ("cohort tracks", joined(cohort.get("tracks"))),
            ("cohort artists", joined(cohort.get("artists"))),
            ("cohort seconds", joined(cohort.get("seconds"))),
            ("cohort licences", joined(cohort.get("licences"))),
            ("cohort packages", joined(cohort.get("packages"))),
        ):
            table.add_row(fact, "" if value is None else terminal_safe(value))
        print_table(table)


@audit_app.command("taint")
def taint(as_json: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """List tainted checkpoints: members opted out of training since the snapshot, or whose
    licence was re-assessed to one the run's policy now rejects. Exits 4 when any is tainted."""
    from provenance.audit.taint import tainted_checkpoints

    with session_scope() as session:
        out = tainted_checkpoints(session)
    if as_json:
        print_json(out)
    elif not out:
        console.print("no tainted checkpoints")
    else:
        for item in out:
            ids = ", ".join(str(c["id"]) for c in item["checkpoints"]) or "none yet"
            console.print(
                f"[red]tainted[/red]: training run {item['training_run_id']} "
                f"(policy {terminal_safe(item['policy'])}), checkpoints {ids}"
            )
            for m in item["members"]:
                console.print(
                    f"  recording {m['recording_id']} {m['sha256'][:12]}: "
                    f"{terminal_safe('; '.join(m['reasons']))}"
                    f" (consent events {m['consent_event_ids']}, "
                    f"licence assertions {m['licence_assertion_ids']})"
                )
    if out:
        raise typer.Exit(EXIT_TAINTED)


@audit_app.command("attribution")
def attribution(
    checkpoint: str | None = typer.Option(None, "--checkpoint", help="Checkpoint id or sha256."),
    out: Path | None = typer.Option(None, "--out", help="Write the credits file here."),
) -> None:
    """Write a credits file (title, artist, licence + URL, source) for every member whose
    licence requires attribution."""
    from provenance.audit.attribution import attribution_text

    with session_scope() as session:
        (report,) = _reports(session, checkpoint, False)
        text = attribution_text(report)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")
    else:
        typer.echo(text, nl=False)


@audit_app.command("export")
def export(
    checkpoint: str | None = typer.Option(None, "--checkpoint", help="Checkpoint id or sha256."),
    fmt: str = typer.Option("croissant", "--format", help="Export format (croissant)."),
    out: Path | None = typer.Option(None, "--out", help="Write the JSON-LD here."),
) -> None:
    """Describe the training snapshot as Croissant 1.1 JSON-LD (per-file sha256 and
    contentUrl, SPDX licence URLs, PROV provenance, a record set of members), and in the
    extension field "gateDetectors" what the similarity gate itself learned from."""
    from provenance.audit.croissant import croissant_snapshot

    if fmt != "croissant":
        fail(f"unknown export format {fmt!r}; allowed: croissant", EXIT_BAD_INPUT)
    with session_scope() as session:
        (report,) = _reports(session, checkpoint, False)
        doc = croissant_snapshot(report)
    _witness_reports([report], "audit export --format croissant")
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")
    else:
        typer.echo(text, nl=False)


@audit_app.command("head")
def head(as_json: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """Print the audit chain's head as SEQ:HASH (the newest row's id and hash). Keep it
    outside the system (a ticket, an email, a transparency log): `audit verify
    --expect-head SEQ:HASH` later proves the chain still holds that row, so the newest rows
    were not removed and the chain was not rewritten. The head is also noted in the
    home's witness log, which `audit verify` checks."""
    from provenance.audit.anchors import witness
    from provenance.audit_log import chain_head
    from provenance.settings import fairchord_home

    with session_scope() as session:
        current = chain_head(session)
    witness(fairchord_home(), current, "fairchord audit head")
    if as_json:
        print_json({**current.to_dict(), "head": str(current)})
    else:
        typer.echo(str(current))


def _expected_head(value: str | None) -> ChainHead | None:
    from provenance.audit_log import ChainHead

    if value is None:
        return None
    try:
        return ChainHead.parse(value)
    except ValueError as exc:
        fail(str(exc), EXIT_BAD_INPUT)


@audit_app.command("verify")
def verify(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    expect_head: str | None = typer.Option(
        None,
        "--expect-head",
        metavar="SEQ:HASH",
        help="A head printed earlier by `audit head`: the chain must still contain that row "
        "with that hash.",
    ),
) -> None:
    """Check the audit log's hash chain against itself and every head anchored outside it
    (reports, exports, sidecars and checkpoints in the home, the witness log,
    --expect-head); every ledger row (consent, licences, credits, aliases, parties, gate
    decisions, snapshot members, embedders, indexes) against the digest the chain
    recorded; gate thresholds, training runs and policy files against the events that set
    them; every stored object, every shard against its manifest, and every checkpoint and
    index against its recorded digest. Exit 1 naming each problem."""
    from provenance.audit.integrity import verify_everything
    from provenance.settings import fairchord_home

    expected = _expected_head(expect_head)
    with session_scope() as session:
        report = verify_everything(session, home=fairchord_home(), expect_head=expected)
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "checked": report.checked,
                "problems": [str(d) for d in report.discrepancies],
            }
        )
    else:
        console.print(
            "checked: " + ", ".join(f"{count} {kind}" for kind, count in report.checked.items())
        )
        if report.ok:
            console.print("[green]everything matches its recorded digest[/green]")
    for problem in report.discrepancies:
        err_console.print(f"[red]{terminal_safe(problem)}[/red]", highlight=False)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
