"""Serving the schedules: one Prefect deployment per job of a validated schedules file
(:mod:`flows.schedule_config`), and the Prefect server's own home apart from the provenance DB.

Flow runs take their database from the environment of the serving process
(``FAIRCHORD_DB_URL`` or ``$FAIRCHORD_HOME``), so no credentials live in the schedules file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.schedule_jobs import ConsentSyncJob, IngestJob, ServeConfig
from provenance.settings import fairchord_home

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

SCHEDULE_TAG = "fairchord-scheduled"
PREFECT_DB_NAME = "prefect.db"


def build_deployments(config: ServeConfig) -> list[RunnerDeployment]:
    """One Prefect deployment per job, with its schedule and parameters."""
    from prefect.deployments.runner import EntrypointType

    from flows.audit import audit_flow
    from flows.consent_sync import consent_sync_flow
    from flows.ingest import ingest_source_flow

    deployments = []
    for job in config.jobs():
        if isinstance(job, IngestJob):
            flow: Any = ingest_source_flow
            description = f"Ingest {job.source}, {job.schedule.describe()}."
        elif isinstance(job, ConsentSyncJob):
            flow = consent_sync_flow
            description = f"Sync opt-outs from {len(job.files)} file(s), {job.schedule.describe()}."
        else:
            flow = audit_flow
            description = f"Audit training runs for taint, {job.schedule.describe()}."
        deployments.append(
            flow.to_deployment(
                name=job.name,
                schedules=[job.schedule.to_prefect()],
                parameters=job.parameters(),
                description=description,
                tags=[SCHEDULE_TAG],
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return deployments


def serve_schedules(config: ServeConfig) -> None:
    """Register the deployments with the Prefect server and run their flow runs until stopped."""
    from prefect import serve

    serve(
        *build_deployments(config),
        limit=config.limit,
        pause_on_shutdown=config.pause_on_shutdown,
    )


# --- the Prefect server's own home ----------------------------------------------------------


def prefect_server_home() -> Path:
    """``$FAIRCHORD_HOME/prefect``: the Prefect server's home and database, apart from ours."""
    return fairchord_home() / "prefect"


def prefect_server_environment(home: Path | None = None) -> dict[str, str]:
    """The variables that point ``prefect server start`` at its own home and SQLite file."""
    home = home or prefect_server_home()
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / PREFECT_DB_NAME}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
