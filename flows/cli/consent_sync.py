"""`fairchord consent sync`: import opt-outs from do-not-train lists and TDMRep files.

The command joins the `consent` group defined in :mod:`flows.cli.consent`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    console,
    fail,
    migrated_engine,
    print_json,
    terminal_safe,
)
from flows.cli.consent import consent_app


@consent_app.command("sync")
def sync(
    files: list[Path] = typer.Argument(
        ...,
        help="Do-not-train lists (CSV with a header, or JSON) of party names/aliases, "
        "recording sha256s or source urls, and/or TDMRep tdmrep.json files.",
    ),
    purpose: str = typer.Option(
        "training",
        "--purpose",
        help="Purpose of list entries that name none: any, training, commercial_training, "
        "style_imitation (TDMRep reservations always mean training).",
    ),
    origin: str = typer.Option(
        None,
        "--origin",
        help="The site a tdmrep.json belongs to (https://example.org); inferred from a "
        "path like .../example.org/.well-known/tdmrep.json.",
    ),
    create_parties: bool = typer.Option(
        False,
        "--create-parties",
        help="Create a party for a listed name that matches none, so the opt-out covers "
        "its recordings ingested later.",
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Print the per-file reports as one JSON document."
    ),
) -> None:
    """Record an opt-out (consent_events, with evidence) for every entry of each FILE that
    matches a party, recording or source. Safe to repeat: a statement already recorded
    adds nothing. Unknown and invalid entries are reported.

    Runs the `consent-sync` Prefect flow. Exit codes: 0 synced; 1 the sync failed; 2 a file
    is not a readable list; 3 database not initialised.
    """
    from provenance.consent_lists import ConsentListError, parse_consent_file

    # Read every file first, so a bad one stops the sync before anything is recorded.
    try:
        for f in files:
            parsed = parse_consent_file(f, purpose=purpose, origin=origin)
            if parsed.format == "tdmrep" and parsed.origin is None:
                if not any("://" in rule.location for rule in parsed.rules):
                    raise ConsentListError(
                        f"TDMRep file {f}: its locations are paths; give the site with "
                        "--origin https://example.org"
                    )
    except (ConsentListError, ValueError) as exc:
        fail(terminal_safe(exc), EXIT_BAD_INPUT)
    migrated_engine().dispose()  # exits with a clear message on an unmigrated DB

    from flows.consent_sync import consent_sync_flow
    from flows.local_runs import run_flow

    try:
        reports = run_flow(
            consent_sync_flow,
            files=[str(f) for f in files],
            purpose=purpose,
            origin=origin,
            create_parties=create_parties,
        )
    except Exception as exc:
        fail(terminal_safe(f"consent sync failed: {type(exc).__name__}: {exc}"), EXIT_FAILED)
    if json_output:
        print_json(reports)
        return
    for report in reports:
        console.print(
            f"{terminal_safe(report['path'])} ({report['format']}): "
            f"[bold]{report['recorded']}[/bold] "
            f"opt-out(s) recorded, {report['already_recorded']} already recorded, "
            f"{len(report['unknown'])} unknown, {len(report['invalid'])} invalid",
            highlight=False,
        )
        for entry in report["unknown"]:
            console.print(f"  [yellow]unknown[/yellow] {terminal_safe(entry)}", highlight=False)
        for problem in report["invalid"]:
            console.print(f"  [red]invalid[/red] {terminal_safe(problem)}", highlight=False)
