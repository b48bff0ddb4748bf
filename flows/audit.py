"""The scheduled `audit` flow: find newly tainted training runs, log them, publish an artifact."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.local_runs import publish, run_logger, step
from flows.sessions import engine_sessions, transaction
from provenance.audit.integrity import verify_everything
from provenance.audit.taint import tainted_runs
from provenance.audit.taint_log import record_new_taint


@step
def find_and_log_taint(db_url: str | None) -> list[dict[str, Any]]:
    with transaction(db_url) as session:
        findings = tainted_runs(session)
        new = {f.training_run_id for f in record_new_taint(session, findings)}
        return [
            {
                "training_run_id": f.training_run_id,
                "policy": f.policy,
                "tainted_members": len(f.members),
                "new": f.training_run_id in new,
                "reasons": "; ".join(sorted({r for m in f.members for r in m.reasons})),
            }
            for f in findings
        ]


@step
def check_integrity(db_url: str | None) -> list[str]:
    # Read only: a plain session, rolled back when it closes; nothing to commit.
    with engine_sessions(db_url) as sessions, sessions() as session:
        return [str(d) for d in verify_everything(session).discrepancies]


@flow(name="audit")
def audit_flow(db_url: str | None = None, verify: bool = True) -> dict[str, Any]:
    """Re-check every training run against today's consent and licences; log new taint."""
    logger = run_logger("audit")
    rows = find_and_log_taint(db_url)
    problems = check_integrity(db_url) if verify else []
    publish(
        create_table_artifact,
        key="tainted-training-runs",
        table=rows or [{"training_run_id": "-", "policy": "-", "tainted_members": 0}],
        description=f"{len(rows)} tainted training run(s); {len(problems)} integrity problem(s)",
    )
    for row in rows:
        logger.warning(
            "training run %s is tainted (%s member(s)): %s",
            row["training_run_id"],
            row["tainted_members"],
            row["reasons"],
        )
    for problem in problems:
        logger.error("integrity: %s", problem)
    logger.info("audit done: %d tainted run(s), %d integrity problem(s)", len(rows), len(problems))
    return {"tainted": rows, "integrity_problems": problems}
