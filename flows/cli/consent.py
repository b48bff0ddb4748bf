"""`fairchord consent`: record, import and list consent events (append-only)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from flows.cli.common import (
    EXIT_BAD_INPUT,
    console,
    fail,
    print_json,
    print_table,
    session_scope,
    terminal_safe,
)
from provenance.models.rights import CONSENT_PURPOSES

consent_app = typer.Typer(
    help="Consent: record opt-ins and opt-outs, import files, list the ledger, sync registries.",
    no_args_is_help=True,
)


def _parse_time(value: str | None) -> dt.datetime:
    from provenance.consent_terms import parse_effective_at
    from provenance.models import utcnow

    if value is None:
        return utcnow()
    try:
        return parse_effective_at(value)
    except ValueError:
        fail(
            f"bad --effective-at {value!r}: expected ISO 8601, e.g. 2026-01-31T12:00Z",
            EXIT_BAD_INPUT,
        )


@consent_app.command("add")
def add(
    party: str | None = typer.Option(None, "--party", help="A party's name or alias."),
    recording: str | None = typer.Option(None, "--recording", help="A recording's sha256."),
    source: str | None = typer.Option(None, "--source", help="A source's uri."),
    opt_out: bool = typer.Option(False, "--opt-out", help="Record an opt-out."),
    opt_in: bool = typer.Option(False, "--opt-in", help="Record an opt-in."),
    purpose: str = typer.Option(
        "training", "--purpose", help=f"One of {', '.join(CONSENT_PURPOSES)}."
    ),
    effective_at: str | None = typer.Option(
        None, "--effective-at", help="ISO 8601 time it takes effect (default: now)."
    ),
    evidence: str | None = typer.Option(None, "--evidence", help="Where the statement came from."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Record one consent event about exactly one subject (origin: cli)."""
    from provenance.consent import ConsentSubject, describe_subject, record_consent
    from provenance.consent_statements import ConsentImportError, ConsentRow
    from provenance.consent_sync import resolve_subject

    subjects = [
        (k, v) for k, v in (("party", party), ("recording", recording), ("source", source)) if v
    ]
    if len(subjects) != 1:
        fail("give exactly one of --party, --recording, --source", EXIT_BAD_INPUT)
    if opt_in == opt_out:
        fail("give exactly one of --opt-out, --opt-in", EXIT_BAD_INPUT)
    if purpose not in CONSENT_PURPOSES:
        fail(
            f"unknown --purpose {purpose!r}; allowed: {', '.join(CONSENT_PURPOSES)}",
            EXIT_BAD_INPUT,
        )
    kind, value = subjects[0]
    when = _parse_time(effective_at)
    action = "opt_in" if opt_in else "opt_out"
    with session_scope() as session:
        row = ConsentRow(1, kind, value, action, purpose, when, evidence)
        try:
            subject: ConsentSubject = resolve_subject(session, row)
        except ConsentImportError as exc:
            fail(terminal_safe(str(exc).removeprefix("line 1: ")), EXIT_BAD_INPUT)
        event = record_consent(
            session,
            subject=subject,
            action=action,
            purpose=purpose,
            effective_at=when,
            origin="cli",
            evidence=evidence,
        )
        assert event is not None
        label = describe_subject(session, subject)
        info = {
            "event_id": event.id,
            "subject": label,
            "action": action,
            "purpose": purpose,
            "effective_at": when.isoformat(),
        }
    if as_json:
        print_json(info)
    else:
        console.print(
            f"recorded consent event {info['event_id']}: "
            f"{terminal_safe(label)} {terminal_safe(action)} {terminal_safe(purpose)}"
        )


@consent_app.command("import")
def import_file(
    file: Path = typer.Argument(
        ..., help="CSV or JSON file (see `provenance.consent_statements`)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Import consent statements from FILE. Every row is validated first; any bad row
    aborts the import with a one-line error naming the line, and nothing is written.

    CSV header: subject_kind,subject,action,purpose,effective_at,evidence"""
    from provenance.consent_statements import ConsentImportError
    from provenance.consent_sync import import_consent_file

    if not file.is_file():
        fail(f"no such file: {file}", EXIT_BAD_INPUT)
    try:
        with session_scope() as session:
            result = import_consent_file(session, file)
    except ConsentImportError as exc:
        fail(terminal_safe(f"{file}: {exc}"), EXIT_BAD_INPUT)
    if as_json:
        print_json(
            {
                "rows": result.rows,
                "recorded": result.recorded,
                "already_recorded": result.already_recorded,
                "event_ids": result.event_ids,
            }
        )
    else:
        console.print(
            f"{terminal_safe(file)}: {result.rows} rows, {result.recorded} recorded, "
            f"{result.already_recorded} already recorded"
        )


@consent_app.command("list")
def list_events(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """List every consent event, oldest effective first."""
    from provenance.consent_ledger import consent_ledger

    with session_scope() as session:
        rows: list[dict[str, Any]] = [entry.to_dict() for entry in consent_ledger(session)]
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} consent events")
    for column in ("id", "subject", "action", "purpose", "effective", "origin", "evidence"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["id"]),
            terminal_safe(r["subject"]),
            r["action"],
            r["purpose"],
            r["effective_at"],
            terminal_safe(r["origin"]),
            terminal_safe(r["evidence"] or ""),
        )
    print_table(table)


def register(app: typer.Typer) -> None:
    app.add_typer(consent_app, name="consent")
