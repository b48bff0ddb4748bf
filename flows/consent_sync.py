"""The `consent-sync` flow: import opt-outs from do-not-train lists and TDMRep files.

Each file is read and parsed by a task (retried on I/O errors only), then its
opt-outs are recorded in one transaction by
:func:`provenance.consent_sync.apply_consent_list`. Reruns add nothing: every
event carries a deterministic dedupe key.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.local_runs import publish, retry_on, run_logger, step
from flows.sessions import transaction
from provenance.consent_lists import DEFAULT_PURPOSE, ConsentList, parse_consent_file
from provenance.consent_sync import SyncReport, apply_consent_list


@step(retries=2, retry_delay_seconds=1, retry_condition_fn=retry_on(OSError), cache_policy=NO_CACHE)
def read_consent_file(path: str, purpose: str, origin: str | None) -> ConsentList:
    return parse_consent_file(path, purpose=purpose, origin=origin)


@step(cache_policy=NO_CACHE)
def record_consent_file(
    db_url: str | None, parsed: ConsentList, create_parties: bool
) -> dict[str, Any]:
    with transaction(db_url) as session:
        report: SyncReport = apply_consent_list(session, parsed, create_parties=create_parties)
    return report.to_dict()


@flow(name="consent-sync")
def consent_sync_flow(
    files: list[str],
    db_url: str | None = None,
    purpose: str = DEFAULT_PURPOSE,
    origin: str | None = None,
    create_parties: bool = False,
) -> list[dict[str, Any]]:
    """Record the opt-outs of every file in ``files``; return one report per file."""
    logger = run_logger("consent_sync")
    reports: list[dict[str, Any]] = []
    for path in files:
        parsed = read_consent_file(path, purpose, origin)
        report = record_consent_file(db_url, parsed, create_parties)
        reports.append(report)
        logger.info(
            "%s (%s): %d opt-out(s) recorded, %d already recorded, %d unknown, %d invalid",
            path,
            report["format"],
            report["recorded"],
            report["already_recorded"],
            len(report["unknown"]),
            len(report["invalid"]),
        )
        for unknown in report["unknown"]:
            logger.warning("%s: unknown entry %s", path, unknown)
        for invalid in report["invalid"]:
            logger.warning("%s: invalid %s", path, invalid)
    publish(
        create_table_artifact,
        key="consent-sync",
        table=[
            {
                "file": r["path"],
                "format": r["format"],
                "recorded": r["recorded"],
                "already_recorded": r["already_recorded"],
                "unknown": len(r["unknown"]),
                "invalid": len(r["invalid"]),
            }
            for r in reports
        ]
        or [{"file": "-", "format": "-", "recorded": 0}],
        description=f"consent sync of {len(files)} file(s)",
    )
    return reports
