"""`fairchord keys`: the keys that sign generated audio's Content Credentials."""

from __future__ import annotations

from typing import Any

import typer

from flows.cli.common import EXIT_BAD_INPUT, console, fail, print_json, terminal_safe

UNTRUSTED_NOTE = (
    "This is a self-signed development chain: credentials signed with it verify "
    "cryptographically, and `fairchord verify-output` trusts its CA, but public C2PA "
    "validators show them as from an untrusted, unknown signer. For published audio set "
    "FAIRCHORD_SIGNING_CERT and FAIRCHORD_SIGNING_KEY to a certificate from a CA they trust."
)

keys_app = typer.Typer(
    help="Signing keys for the Content Credentials (C2PA) of generated audio.",
    no_args_is_help=True,
)


def _describe(keys: Any) -> dict[str, Any]:
    from provenance.signing_keys import CA_NAME

    ca = keys.chain_path.parent / CA_NAME
    leaf = keys.leaf
    return {
        "origin": keys.origin,
        "certificate_chain": str(keys.chain_path),
        "private_key": str(keys.key_path),
        "trust_anchor": str(ca) if keys.origin == "home" and ca.exists() else None,
        "certificate": leaf.to_dict(),
        "development": leaf.self_issued_chain,
    }


def _print(info: dict[str, Any]) -> None:
    cert = info["certificate"]
    for key, value in (
        ("certificate chain", info["certificate_chain"]),
        ("private key", info["private_key"]),
        ("trust anchor (CA)", info["trust_anchor"] or "—"),
        ("subject", cert["subject"]),
        ("sha256", cert["sha256"]),
        ("expires", cert["not_after"]),
    ):
        console.print(
            f"[bold]{key}[/bold]: {terminal_safe(value)}", highlight=False, soft_wrap=True
        )
    if info["development"]:
        console.print(f"[yellow]note:[/yellow] {UNTRUSTED_NOTE}", highlight=False)


@keys_app.command("init")
def init(
    force: bool = typer.Option(False, "--force", help="Replace existing keys."),
    if_missing: bool = typer.Option(
        False, "--if-missing", help="Keep existing keys and show them (exit 0) instead of failing."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Create a development ES256 key and a self-signed certificate chain in the home.

    They live in $FAIRCHORD_HOME/keys: signer.key (the private key, mode 0600),
    signer.pem (the signer's certificate and the CA's) and ca.pem (the CA). A
    self-signed signer verifies cryptographically but is untrusted by public validators.
    """
    from provenance.signing_keys import KEY_NAME, SigningKeyError, init_keys, keys_dir, load_keys

    created = True
    try:
        if if_missing and not force and (keys_dir() / KEY_NAME).exists():
            keys, created = load_keys(keys_dir()), False
        else:
            keys = init_keys(force=force)
    except SigningKeyError as exc:
        fail(terminal_safe(str(exc)), EXIT_BAD_INPUT)
    info = _describe(keys)
    if as_json:
        print_json({**info, "created": created, "note": UNTRUSTED_NOTE})
        return
    if created:
        console.print("[green]created[/green] development signing keys", highlight=False)
    else:
        console.print("development signing keys already exist; kept them", highlight=False)
    _print(info)


@keys_app.command("show")
def show(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Which keys `fairchord generate` signs with: FAIRCHORD_SIGNING_CERT/_KEY, else the
    home's, else none (the audio is then written unsigned)."""
    from provenance.signing_keys import SigningKeyError, find_signing_keys

    try:
        keys = find_signing_keys()
    except SigningKeyError as exc:
        fail(terminal_safe(str(exc)), EXIT_BAD_INPUT)
    if keys is None:
        if as_json:
            print_json({"origin": None})
            return
        console.print(
            "no signing keys: generated audio is written unsigned "
            "(run `fairchord keys init`, or set FAIRCHORD_SIGNING_CERT and "
            "FAIRCHORD_SIGNING_KEY)",
            highlight=False,
        )
        return
    info = _describe(keys)
    if as_json:
        print_json(info)
        return
    console.print(f"[bold]origin[/bold]: {info['origin']}", highlight=False)
    _print(info)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
