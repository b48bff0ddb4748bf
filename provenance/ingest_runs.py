"""Ingestion runs: the source and run rows, a run's counts, and the sequential driver.

:func:`ingest_source` ingests every item of a source one transaction at a time,
without Prefect (``flows.ingest`` does the same with Prefect and Dask, from the same
parts). A run records the host and process that started it, so a later run of the
same source can tell a run whose process was killed (:func:`mark_interrupted_runs`).
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provenance.audit_log import append_event
from provenance.ingest import OUTCOME_STATUSES, IngestOutcome
from provenance.ingest_prepare import DEFAULT_LIMITS, IngestLimits, PreparedItem, prepare_item
from provenance.ingest_record import record_refused_input
from provenance.models import IngestionRun, Source, utcnow
from provenance.object_store import ObjectStore, crash_point, pid_alive
from provenance.sources.base import SourceAdapter, SourceItem


def get_or_create_source(session: Session, adapter: SourceAdapter) -> Source:
    """The ``sources`` row for ``adapter`` (keyed by its uri); safe under concurrent runs."""
    existing = session.execute(select(Source).where(Source.uri == adapter.uri)).scalar_one_or_none()
    if existing is not None:
        return existing
    try:
        with session.begin_nested():
            source = Source(uri=adapter.uri, kind=adapter.kind, config=adapter.config)
            session.add(source)
            session.flush()
    except IntegrityError:
        return session.execute(select(Source).where(Source.uri == adapter.uri)).scalar_one()
    append_event(
        session,
        "source.registered",
        entity="source",
        entity_id=source.id,
        payload={"uri": source.uri, "kind": source.kind, "config": source.config},
    )
    return source


def start_run(session: Session, *, source_id: int, prefect_flow_run_id: str | None) -> IngestionRun:
    """A new ``running`` run; earlier runs of this source whose process on this host is gone
    (killed) are marked ``interrupted`` first."""
    mark_interrupted_runs(session, source_id=source_id)
    run = IngestionRun(
        source_id=source_id,
        prefect_flow_run_id=prefect_flow_run_id,
        status="running",
        started_at=utcnow(),
        counts={"host": socket.gethostname(), "pid": os.getpid()},
    )
    session.add(run)
    session.flush()
    return run


def mark_interrupted_runs(session: Session, *, source_id: int) -> list[int]:
    """Mark ``running`` runs of ``source_id`` started by a dead process on this host."""
    marked = []
    for run in session.scalars(
        select(IngestionRun).where(
            IngestionRun.source_id == source_id, IngestionRun.status == "running"
        )
    ):
        owner = run.counts or {}
        if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
            continue
        if owner["pid"] == os.getpid() or pid_alive(owner["pid"]):
            continue
        run.status = "interrupted"
        run.finished_at = utcnow()
        marked.append(run.id)
        append_event(
            session,
            "ingest.run_interrupted",
            entity="ingestion_run",
            entity_id=run.id,
            payload={"source_id": source_id, "pid": owner["pid"]},
        )
    return marked


def finish_run(
    session: Session, *, run_id: int, counts: dict[str, Any], status: str = "completed"
) -> IngestionRun:
    run = session.get(IngestionRun, run_id)
    if run is None:
        raise ValueError(f"no ingestion run {run_id}")
    run.status = status
    run.finished_at = utcnow()
    run.counts = counts
    session.flush()
    append_event(
        session,
        "ingest.run_finished",
        entity="ingestion_run",
        entity_id=run.id,
        payload={
            "source_id": run.source_id,
            "status": status,
            "prefect_flow_run_id": run.prefect_flow_run_id,
            "counts": counts,
        },
    )
    return run


def summarize(outcomes: Iterable[IngestOutcome]) -> dict[str, Any]:
    """Counts for a run: by outcome status, quarantines by reason, flags, audio seconds."""
    outcomes = list(outcomes)
    by_status: Counter[str] = Counter(o.status for o in outcomes)
    reasons = Counter(o.reason_code for o in outcomes if o.status == "quarantined")
    flags = Counter(flag for o in outcomes for flag in o.flags)
    return {
        "items": len(outcomes),
        **{status: by_status.get(status, 0) for status in OUTCOME_STATUSES},
        "quarantined_by_reason": {str(k): v for k, v in sorted(reasons.items())},
        "flags": dict(sorted(flags.items())),
        "audio_seconds": round(sum(o.audio_seconds for o in outcomes), 3),
    }


@dataclass
class RunResult:
    source_id: int
    run_id: int
    outcomes: list[IngestOutcome] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, Any]:
        return summarize(self.outcomes)


def ingest_source(
    sessions: Any,
    adapter: SourceAdapter,
    store: ObjectStore,
    *,
    limits: IngestLimits = DEFAULT_LIMITS,
    prefect_flow_run_id: str | None = None,
) -> RunResult:
    """Ingest every item of ``adapter`` sequentially, without Prefect.

    ``sessions`` is a ``sessionmaker``; each item is its own transaction, so a bad
    item never rolls back good ones, and an item whose rows cannot be written is
    quarantined ``record_failed`` (:mod:`provenance.ingest_failures`). An empty
    manifest is recorded as a quarantine entry and re-raised
    (:class:`provenance.sources.EmptyManifestError`); a run stopped by anything else
    is marked ``failed`` before the error propagates.
    """
    from provenance.sources.base import SourceError

    with sessions.begin() as session:
        source = get_or_create_source(session, adapter)
        run = start_run(session, source_id=source.id, prefect_flow_run_id=prefect_flow_run_id)
        source_id, run_id = source.id, run.id
    store.remove_stale_tmp()
    result = RunResult(source_id=source_id, run_id=run_id)
    try:
        items = list(adapter.items())
    except SourceError as exc:
        record_source_failure(sessions, source_id=source_id, run_id=run_id, error=exc)
        raise
    from provenance.ingest_failures import mark_run_failed, record_or_quarantine

    try:
        for item in items:
            prepared = prepare_item(store, item, limits)
            outcome = record_or_quarantine(
                sessions, source_id=source_id, run_id=run_id, prepared=prepared, limits=limits
            )
            crash_point("after_commit")
            result.outcomes.append(outcome)
    except BaseException as exc:  # the run stops: it must not stay `running`
        mark_run_failed(sessions, run_id=run_id, outcomes=result.outcomes, error=exc)
        raise
    with sessions.begin() as session:
        finish_run(session, run_id=run_id, counts=result.counts)
    return result


def record_source_failure(sessions: Any, *, source_id: int, run_id: int, error: Exception) -> None:
    """A source that could not be listed: a quarantine entry for it, and a failed run."""
    code = getattr(error, "reason_code", "unreadable")
    with sessions.begin() as session:
        source = session.get(Source, source_id)
        locator = Path(source.uri).name if source is not None else "source"
        outcome = record_refused_input(
            session,
            source_id,
            run_id,
            PreparedItem(
                item=SourceItem(locator=locator, uri=None),
                reason_code=code,
                reason_detail=str(error),
            ),
        )
        finish_run(
            session,
            run_id=run_id,
            counts=summarize([outcome]) | {"error": str(error)},
            status="failed",
        )
