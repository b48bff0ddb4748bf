"""The ``fairchord`` command line.

Every module in this package that defines ``register(app)`` adds its commands;
heavy libraries are imported inside commands so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from typing import Any

import typer

app = typer.Typer(
    name="fairchord",
    help="Consent-first audio diffusion: ingest licensed audio, audit it, train, generate safely.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    add_completion=False,
)

_SKIP = {"common"}


def _show_flags_as_flags() -> None:
    """Typer's help prints a flag as ``--json <bool>``, as if it took a value (and
    ``--json true`` is refused); print flags bare, as click does."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    setattr(TyperOption, "display_type_rich", display_type_rich)  # noqa: B010


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"fairchord {version('fairchord')}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Consent-first audio diffusion: ingest licensed audio, audit it, train, generate safely."""
    from provenance.store_settings import configured_store_url

    try:
        configured_store_url()
    except ValueError as exc:
        # A bad store URL would otherwise surface as a traceback from deep in a command.
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in _SKIP or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_show_flags_as_flags()
_register_all()


DEBUG_ENV = "FAIRCHORD_DEBUG"


def main() -> None:
    """The ``fairchord`` entry point. Prefect's per-run INFO lines are debug detail here:
    they are shown only with FAIRCHORD_DEBUG=1 (warnings and errors always are)."""
    if os.environ.get(DEBUG_ENV, "").lower() not in ("1", "true", "yes"):
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    app()
