"""`fairchord policy`: show a licence policy and the eligibility table under it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from provenance.policies import Policy

policy_app = typer.Typer(help="Licence policies and eligibility.", no_args_is_help=True)


def _load(name: str) -> Policy:
    from provenance.policies import PolicyError, load_policy, policy_names

    try:
        return load_policy(name)
    except PolicyError:
        fail(f"unknown policy {name!r}; available: {', '.join(policy_names())}", EXIT_BAD_INPUT)


@policy_app.command("show")
def show(
    name: str = typer.Argument(..., help="Policy name, e.g. commercial or research."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Print a policy: version, allowed licences, consent requirement, obligations."""
    policy = _load(name)
    info = {
        "name": policy.name,
        "version": policy.version,
        "sha256": policy.sha256,
        "description": policy.description,
        "consent_requirement": policy.consent_requirement,
        "consent_purpose": policy.consent_purpose,
        "require_named_artist": policy.require_named_artist,
        "attribution_ok": policy.attribution_ok,
        "share_alike_ok": policy.share_alike_ok,
        "allowed_licences": list(policy.allowed_licences),
    }
    if as_json:
        print_json(info)
        return
    for key, value in info.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        console.print(f"[bold]{key}[/bold]: {terminal_safe(shown)}", highlight=False)


@policy_app.command("check")
def check(
    policy_name: str = typer.Option(..., "--policy", help="Policy name."),
    at: str | None = typer.Option(
        None, "--at", help="Evaluate at this ISO 8601 time (default: now)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """The eligibility table: every accepted recording with its verdict and reasons."""
    from provenance.consent_terms import parse_effective_at
    from provenance.eligibility import eligibility_rows

    policy = _load(policy_name)
    when = None
    if at is not None:
        try:
            when = parse_effective_at(at)
        except ValueError:
            fail(f"bad --at {at!r}: expected ISO 8601", EXIT_BAD_INPUT)
    with session_scope() as session:
        rows: list[dict[str, Any]] = [
            row.to_dict() for row in eligibility_rows(session, policy, when)
        ]
    if as_json:
        print_json({"policy": policy.name, "version": policy.version, "recordings": rows})
        return
    included = sum(r["eligible"] for r in rows)
    table = Table(
        title=f"policy {terminal_safe(policy.name)} v{terminal_safe(policy.version)}: "
        f"{included} of {len(rows)} eligible"
    )
    for column in ("id", "title", "artists", "licence", "consent", "decision", "reasons"):
        table.add_column(column)
    for r in rows:
        colour = "green" if r["eligible"] else "red"
        table.add_row(
            str(r["recording_id"]),
            terminal_safe(r["title"] or ""),
            terminal_safe(", ".join(r["artists"]) or "—"),
            terminal_safe(r["licence"]),
            terminal_safe(r["consent"]),
            f"[{colour}]{r['decision']}[/{colour}]",
            terminal_safe("; ".join(r["reasons"])),
        )
    print_table(table)


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
