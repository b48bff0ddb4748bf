"""`fairchord verify-output FILE...`: a generated file's Content Credential, checked.

For each file: read and validate its C2PA manifest with the library (claim signature,
hash binding of the audio bytes), then hold its claims against the database
(:func:`provenance.output_checks.check_output`): the checkpoint, the generation, the
gate decision and its verdict, the snapshot digest, the audit chain head, the signing
certificate recorded for the file, and whether the checkpoint is tainted now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from flows.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    console,
    err_console,
    fail,
    print_json,
    session_scope,
    terminal_safe,
)

EXIT_NO_CREDENTIAL = 10
EXIT_INVALID = 11
EXIT_UNKNOWN = 12
EXIT_TAINTED = 13
EXIT_CONTRADICTS = 14
# Several files: the command exits with the worst code, in this order (worst first).
WORST_FIRST = (EXIT_INVALID, EXIT_CONTRADICTS, EXIT_TAINTED, EXIT_UNKNOWN, EXIT_NO_CREDENTIAL, 0)
RESULTS = {
    0: "valid",
    EXIT_NO_CREDENTIAL: "no_credential",
    EXIT_INVALID: "invalid",
    EXIT_UNKNOWN: "unknown",
    EXIT_TAINTED: "tainted",
    EXIT_CONTRADICTS: "contradicts",
}
_BY_OUTCOME = {
    "matches": 0,
    "unknown": EXIT_UNKNOWN,
    "tainted": EXIT_TAINTED,
    "contradicts": EXIT_CONTRADICTS,
}

HELP = (
    "Check the Content Credentials (C2PA) of generated audio files against this database.\n\n"
    "Each file's manifest is validated with the C2PA library (signature, and the hash "
    "binding of the audio bytes: one changed sample invalidates it), then its claims are "
    "looked up: the checkpoint exists and is not tainted now, the gate decision exists "
    "with the same verdict, the audit chain still holds the head it carries, and the file "
    "was signed with the certificate recorded for it. Signers are trusted when they chain "
    "to FAIRCHORD_TRUST_ANCHORS or the home's development CA (`fairchord keys init`); "
    "trust is reported, not required.\n\n"
    "Exit codes (several files: the worst, in the order 11, 14, 13, 12, 10):\n\n"
    "- 0 every credential is valid and matches the record;\n"
    "- 2 bad input (a file that does not exist);\n"
    "- 3 database not initialised;\n"
    "- 10 no credential: the file carries no C2PA manifest;\n"
    "- 11 invalid: the signature does not verify or the audio changed since signing;\n"
    "- 12 valid, but unknown to this database (no such checkpoint or generation);\n"
    "- 13 valid and matching, but the checkpoint is tainted since (a member opted out or "
    "its licence was re-assessed after the snapshot);\n"
    "- 14 valid, but the record contradicts it (another verdict or signer, a chain head "
    "the audit log no longer holds)."
)


def _verify(paths: list[Path]) -> list[dict[str, Any]]:
    from provenance.content_credentials import CredentialError, read_credential
    from provenance.hashing import sha256_file
    from provenance.signing_keys import SigningKeyError, trust_anchors_pem

    try:
        anchors = trust_anchors_pem()
    except SigningKeyError as exc:
        fail(terminal_safe(str(exc)), EXIT_BAD_INPUT)
    results: list[dict[str, Any]] = []
    for path in paths:
        try:
            reading = read_credential(path, trust_anchors_pem=anchors)
        except CredentialError as exc:
            fail(terminal_safe(str(exc)), EXIT_FAILED)
        results.append(
            {
                "file": str(path),
                "sha256": sha256_file(path),
                "credential": reading.to_dict() if reading is not None else None,
                "record": None,
                "_reading": reading,
            }
        )
    if any(r["_reading"] is not None and r["_reading"].valid for r in results):
        from provenance.output_checks import check_output

        with session_scope() as session:
            for result in results:
                reading = result["_reading"]
                if reading is not None and reading.valid:
                    check = check_output(session, reading, file_sha256=result["sha256"])
                    result["record"] = check.to_dict()
    for result in results:
        reading = result.pop("_reading")
        if reading is None:
            code = EXIT_NO_CREDENTIAL
        elif not reading.valid:
            code = EXIT_INVALID
        else:
            code = _BY_OUTCOME[result["record"]["outcome"]]
        result["exit_code"], result["result"] = code, RESULTS[code]
    return results


def worst(codes: list[int]) -> int:
    """The exit code of several files: the first of :data:`WORST_FIRST` among them."""
    return next((code for code in WORST_FIRST if code in codes), 0)


def _print(result: dict[str, Any]) -> None:
    name = terminal_safe(result["file"])
    code = result["exit_code"]
    credential = result["credential"] or {}
    record = result["record"] or {}
    if code == EXIT_NO_CREDENTIAL:
        console.print(f"{name}: [yellow]no credential[/yellow]", highlight=False)
        return
    if code == EXIT_INVALID:
        failures = terminal_safe(", ".join(credential.get("failures") or []) or "unknown")
        console.print(
            f"{name}: [red]invalid[/red]: the signature does not verify or the audio changed "
            f"since signing ({failures})",
            highlight=False,
            soft_wrap=True,
        )
        return
    signer = terminal_safe(credential.get("signer") or "unknown signer")
    trust = (
        "chains to a trust anchor given here"
        if credential.get("trusted")
        else "no trust anchor given here vouches for it"
    )
    head = f"{name}: signed by {signer} ({trust})"
    if code == 0:
        console.print(
            f"{head}: [green]valid[/green], matches generation {record['generation_id']} "
            f"(checkpoint {record['checkpoint_id']}, gate decision "
            f"{record['gate_decision_id']})",
            highlight=False,
            soft_wrap=True,
        )
        return
    if code == EXIT_TAINTED:
        members = ", ".join(
            f"recording {m['recording_id']} ({'; '.join(m['reasons'])})"
            for m in record["tainted_members"]
        )
        detail = f"checkpoint {record['checkpoint_id']} is tainted since: {members}"
        label = "[red]tainted[/red]"
    elif code == EXIT_UNKNOWN:
        detail = "; ".join(record["unknown"])
        label = "[yellow]unknown to this database[/yellow]"
    else:
        detail = "; ".join(record["problems"])
        label = "[red]contradicted by the record[/red]"
    console.print(
        f"{head}: valid, but {label}: {terminal_safe(detail)}", highlight=False, soft_wrap=True
    )


def _newest_output() -> Path:
    """The newest generated file the database records (``--latest``)."""
    from urllib.parse import unquote, urlparse

    from provenance.generations import newest_output_uri

    with session_scope() as session:
        uri = newest_output_uri(session)
    if uri is None:
        fail("--latest: no generated file is recorded in this database", EXIT_BAD_INPUT)
    return Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else Path(uri)


def register(app: typer.Typer) -> None:
    @app.command("verify-output", help=HELP)
    def verify_output(
        files: list[Path] = typer.Argument(None, help="Generated audio files (WAV or FLAC)."),
        latest: bool = typer.Option(
            False, "--latest", help="Also check the newest file `fairchord generate` wrote."
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print one JSON document: a list, one object per file."
        ),
    ) -> None:
        files = list(files or [])
        if latest:
            files.append(_newest_output())
        if not files:
            fail("give one or more files, or --latest", EXIT_BAD_INPUT)
        missing = [p for p in files if not p.is_file()]
        if missing:
            fail(
                terminal_safe(f"{', '.join(str(p) for p in missing)}: not a file"),
                EXIT_BAD_INPUT,
            )
        results = _verify(files)
        if as_json:
            print_json(results)
        else:
            for result in results:
                _print(result)
        code = worst([r["exit_code"] for r in results])
        if code and len(results) > 1 and not as_json:
            err_console.print(f"exit {code} ({RESULTS[code]})", highlight=False)
        raise typer.Exit(code)
