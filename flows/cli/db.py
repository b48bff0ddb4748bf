"""`fairchord db`: create and migrate the provenance database."""

from __future__ import annotations

from collections.abc import Callable

import typer
from sqlalchemy import Engine

from flows.cli.common import EXIT_BAD_INPUT, console, fail, print_json
from provenance import migrate
from provenance.db import make_engine

db_app = typer.Typer(
    help="Create, migrate and inspect the provenance database.", no_args_is_help=True
)


def _migrate(step: Callable[[Engine, str], object], engine: Engine, revision: str) -> None:
    """Run one migration step; an unknown revision is a one-line usage error (exit 2)."""
    from alembic.util.exc import CommandError

    try:
        step(engine, revision)
    except CommandError as exc:
        fail(f"{exc}; see `fairchord db current` for the revisions", EXIT_BAD_INPUT)


@db_app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    engine = make_engine()
    _migrate(migrate.upgrade, engine, revision)
    console.print(
        f"database {engine.url.render_as_string(hide_password=True)} "
        f"at revision {migrate.current_revision(engine)}"
    )


@db_app.command("downgrade")
def downgrade(revision: str = typer.Argument(..., help="Target revision, or 'base'.")) -> None:
    """Revert migrations down to REVISION."""
    engine = make_engine()
    _migrate(migrate.downgrade, engine, revision)
    console.print(f"database at revision {migrate.current_revision(engine) or 'base'}")


@db_app.command("current")
def current(as_json: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """Show the database URL, its revision and the newest revision available."""
    engine = make_engine()
    info = {
        "url": engine.url.render_as_string(hide_password=True),
        "current": migrate.current_revision(engine),
        "head": migrate.head_revision(engine),
    }
    if as_json:
        print_json(info)
    else:
        console.print(f"{info['url']}: current {info['current']}, head {info['head']}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
