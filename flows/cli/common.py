"""Helpers every CLI module shares: sessions, errors with exit codes, JSON output, safe text."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from provenance import migrate
from provenance.db import make_engine, session_factory

console = Console()
err_console = Console(stderr=True)

# Exit codes (documented in the README): 0 ok; 1 failure or check failed;
# 2 usage or bad input; 3 database not initialised. Commands with safeguards
# add their own (see `fairchord generate --help`).
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_INITIALISED = 3

# C0 controls except tab and newline, DEL, and C1 controls: ESC (0x1b) starts the
# sequences that recolour, retitle or rewrite a terminal; 0x9b is its one-byte CSI.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(value: object) -> str:
    """Stored text ready for a Rich table or message: shown literally, never interpreted.

    Titles, names, licences and evidence come from manifests and registries, so
    Rich markup in them is escaped and control characters are removed.
    """
    return escape(_CONTROL_CHARACTERS.sub("", str(value)))


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print a one-line reason on stderr and exit with ``code``.

    ``message`` is Rich markup: pass stored text through :func:`terminal_safe` first.
    Control characters are removed here in any case.
    """
    message = _CONTROL_CHARACTERS.sub("", message)
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


DASK_ADDRESS_ENV = "FAIRCHORD_DASK_ADDRESS"


def dask_address_option() -> Any:
    """``--dask-address`` (or ``$FAIRCHORD_DASK_ADDRESS``): the scheduler of an existing
    Dask cluster to run a command's per-item tasks on. (Prefect is not imported here:
    options are built at import, before the CLI sets Prefect's log level.)"""
    return typer.Option(
        None,
        "--dask-address",
        envvar=DASK_ADDRESS_ENV,
        help="Run per-item tasks on the existing Dask cluster whose scheduler is at this "
        "address (tcp://HOST:PORT); its workers read and write only the object store and "
        "the database this command names. Without it, --dask starts a local cluster.",
    )


def checked_dask_address(address: str | None) -> str | None:
    """The scheduler address, once something answers there; exits 2 with the reason if not."""
    if address is None:
        return None
    from flows.local_runs import dask_address

    try:
        return dask_address(address)
    except ValueError as exc:
        fail(f"--dask-address: {exc}", EXIT_BAD_INPUT)


def print_table(table: Table) -> None:
    """A table on stdout: fitted to a terminal; piped or redirected, at its full natural
    width, so no value is cut short (Rich prints no colour when stdout is not a terminal)."""
    if console.is_terminal:
        console.print(table)
        return
    wide = console.options.update(width=1_000_000)
    width = console.measure(table, options=wide).maximum
    Console(width=max(width, console.width), no_color=True).print(table)


def print_json(value: Any) -> None:
    """One JSON document on stdout (indented)."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def print_json_line(value: Any) -> None:
    """One compact JSON object on its own line of stdout (JSON Lines)."""
    sys.stdout.write(json.dumps(value, sort_keys=True, default=str, separators=(",", ":")) + "\n")


def migrated_engine() -> Engine:
    """The configured database, refusing to run against an unmigrated schema."""
    engine = make_engine()
    current = migrate.current_revision(engine)
    head = migrate.head_revision(engine)
    if current != head:
        fail(
            f"database {engine.url.render_as_string(hide_password=True)} is at revision "
            f"{current or 'none'}, expected {head}: run `fairchord db upgrade`",
            EXIT_NOT_INITIALISED,
        )
    return engine


@contextmanager
def session_scope() -> Iterator[Session]:
    """One transaction on the configured, migrated database: commit on success."""
    engine = migrated_engine()
    try:
        with session_factory(engine).begin() as session:
            yield session
    finally:
        engine.dispose()


@contextmanager
def released_session_scope() -> Iterator[Session]:
    """A session the block may commit midway (to end a transaction before long work):
    committed at the end on success, rolled back on an exception."""
    engine = migrated_engine()
    try:
        with session_factory(engine)() as session:
            try:
                yield session
            except BaseException:
                session.rollback()
                raise
            session.commit()
    finally:
        engine.dispose()
