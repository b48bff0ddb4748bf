"""`fairchord db`: create and migrate the provenance database."""

from __future__ import annotations

import typer

from flows.cli.common import console, print_json
from provenance import migrate
from provenance.db import make_engine

db_app = typer.Typer(
    help="Create, migrate and inspect the provenance database.", no_args_is_help=True
)


@db_app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    engine = make_engine()
    migrate.upgrade(engine, revision)
    console.print(
        f"database {engine.url.render_as_string(hide_password=True)} "
        f"at revision {migrate.current_revision(engine)}"
    )


@db_app.command("downgrade")
def downgrade(revision: str = typer.Argument(..., help="Target revision, or 'base'.")) -> None:
    """Revert migrations down to REVISION."""
    engine = make_engine()
    migrate.downgrade(engine, revision)
    console.print(f"database at revision {migrate.current_revision(engine) or 'base'}")


@db_app.command("current")
def current(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
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
