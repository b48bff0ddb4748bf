"""`fairchord audit`: prove what the record says, and that nobody rewrote it."""

from __future__ import annotations

import typer

from flows.cli.common import EXIT_FAILED, console, err_console, print_json, session_scope
from provenance.audit_log import verify_chain

audit_app = typer.Typer(help="Audit the provenance record.", no_args_is_help=True)


@audit_app.command("verify")
def verify(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Walk the hash chain of the audit log; exit 1 naming every bad row."""
    with session_scope() as session:
        rows, problems = verify_chain(session)
    if as_json:
        print_json({"audit_log_rows": rows, "problems": [str(p) for p in problems]})
    elif not problems:
        console.print(f"audit log: {rows} rows, chain intact")
    for problem in problems:
        err_console.print(f"[red]{problem}[/red]", highlight=False)
    if problems:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
