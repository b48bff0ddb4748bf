"""`fairchord server` and `fairchord serve`: a Prefect server, and the scheduled flows on it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from flows.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    console,
    err_console,
    fail,
    migrated_engine,
)

# Besides the shared codes (0 ok, 1 failed, 2 bad input, 3 DB not initialised):
EXIT_NO_SERVER = 4  # no Prefect server configured, or it does not answer


def _api_url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/api"


def _check_server(api_url: str) -> None:
    import httpx

    try:
        response = httpx.get(f"{api_url.rstrip('/')}/health", timeout=10.0)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        fail(
            f"the Prefect server at {api_url} does not answer ({type(exc).__name__}: {exc}); "
            "start it with `fairchord server`",
            EXIT_NO_SERVER,
        )


def register(app: typer.Typer) -> None:
    @app.command("server")
    def server(
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
        port: int = typer.Option(4200, "--port", help="Port to listen on."),
        ui: bool = typer.Option(True, "--ui/--no-ui", help="Serve the Prefect web UI too."),
    ) -> None:
        """Start the Prefect server that `fairchord serve` schedules flow runs on.

        Runs `prefect server start` in the foreground.
        Its home and SQLite database are under $FAIRCHORD_HOME/prefect, apart from the
        provenance database (PREFECT_HOME, PREFECT_API_DATABASE_CONNECTION_URL).
        Prints the PREFECT_API_URL that `fairchord serve` needs.
        Stop it with Ctrl-C or SIGTERM, after stopping `fairchord serve`.
        """
        from flows.serve import prefect_server_environment, prefect_server_home
        from provenance.settings import database_url

        if not 0 < port < 65536:
            fail(f"--port must be between 1 and 65535, got {port}", EXIT_BAD_INPUT)
        home = prefect_server_home()
        home.mkdir(parents=True, exist_ok=True)
        env = prefect_server_environment(home)
        prefect_db = env["PREFECT_API_DATABASE_CONNECTION_URL"].split(":///", 1)[1]
        ours = database_url()
        if (
            ours.startswith("sqlite")
            and Path(ours.split(":///", 1)[-1]).resolve() == Path(prefect_db).resolve()
        ):
            fail(
                f"FAIRCHORD_DB_URL points at the Prefect server's own database {prefect_db}",
                EXIT_BAD_INPUT,
            )
        api_url = _api_url_for(host, port)
        console.print(
            f"Prefect server for fairchord: home {home}, database {prefect_db}\n"
            f"API {api_url}; in the shell that runs `fairchord serve`:\n"
            f"  export PREFECT_API_URL={api_url}\n"
            "Use this export, not the `prefect config set PREFECT_API_URL=...` that Prefect's "
            "banner below suggests: that writes your global Prefect profile, which every "
            "other Prefect project on this account would then use.",
            highlight=False,
            soft_wrap=True,
        )
        sys.stdout.flush()
        command = [sys.executable, "-m", "prefect", "server", "start"]
        command += ["--host", host, "--port", str(port), "--ui" if ui else "--no-ui"]
        # The server replaces this process, so signals reach it directly.
        os.execve(sys.executable, command, {**os.environ, **env})

    @app.command("serve")
    def serve(
        config: Path = typer.Argument(
            ...,
            help="Schedules file (TOML); see configs/schedules.example.toml.",
            dir_okay=False,
        ),
        check: bool = typer.Option(
            False,
            "--check",
            help="Validate the file and list the deployments it makes, then exit; needs no server.",
        ),
    ) -> None:
        """Register the scheduled deployments of CONFIG with the Prefect server and run
        their flow runs until stopped: `ingest-source` for each ingest source,
        `consent-sync` and `audit`, each on its cron or interval schedule.

        Needs a running server (`fairchord server`) and PREFECT_API_URL set to it.
        Schedules never run on Prefect's ephemeral server.
        Flow runs take the provenance database from this process's environment.
        Ctrl-C or SIGTERM stops serving and, by default, pauses the schedules.

        Exit codes: 0 stopped; 1 serving failed;
        2 bad schedules file, or a path it names does not exist;
        3 database not initialised; 4 no Prefect server configured or reachable.
        """
        from flows.schedule_config import (
            ScheduleConfigError,
            load_schedule_config,
            missing_local_paths,
        )

        try:
            parsed = load_schedule_config(config)
        except ScheduleConfigError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        missing = missing_local_paths(parsed)
        for job in parsed.jobs():
            console.print(
                f"{job.flow_name}/{job.name}: {job.schedule.describe()}",
                highlight=False,
                soft_wrap=True,
            )
        if missing:
            fail(f"{config}: no such path: " + "; ".join(missing), EXIT_BAD_INPUT)
        if check:
            return

        migrated_engine().dispose()  # exits with a clear message on an unmigrated DB
        from prefect.settings import PREFECT_API_URL

        api_url = PREFECT_API_URL.value()
        if not api_url:
            fail(
                "PREFECT_API_URL is not set: schedules need a Prefect server. Start one with "
                "`fairchord server` and export the PREFECT_API_URL it prints",
                EXIT_NO_SERVER,
            )
        _check_server(api_url)
        err_console.print(f"serving {len(parsed.jobs())} deployment(s) on {api_url}")

        from flows.serve import serve_schedules

        try:
            serve_schedules(parsed)
        except Exception as exc:
            fail(f"serving failed: {type(exc).__name__}: {exc}", EXIT_FAILED)
