"""When recording one item fails, or a whole run does: what is written instead.

Recording an item runs in its own transaction. If it raises for a reason
that is not the database being unreachable (a value the database refuses,
a bug met only by this item's facts), the transaction is rolled back and
the item gets a ``record_failed`` quarantine entry in a fresh one, so the
run goes on with the next item; a rerun meets the same entry and moves on
again. An object such an item had already stored is not deleted here (a
concurrent run may be about to name the same bytes); it is an orphan that
:func:`provenance.object_store.sweep_orphan_objects` removes once it is old. If the
run itself stops (the object store fails, the process is
interrupted), its row is marked ``failed`` with the counts so far, so no run
is left ``running``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from sqlalchemy.exc import OperationalError

from provenance.sources.text import clean_text

logger = logging.getLogger(__name__)


def record_or_quarantine(
    sessions: Any,
    *,
    source_id: int,
    run_id: int,
    prepared: Any,
    limits: Any,
) -> Any:
    """:func:`provenance.ingest_record.record_prepared` in its own transaction; on failure, a
    ``record_failed`` quarantine entry. :class:`OperationalError` (the database is
    unreachable, a deadlock) is raised for the caller to retry."""
    from provenance.ingest_record import record_prepared

    try:
        with sessions.begin() as session:
            return record_prepared(
                session, source_id=source_id, run_id=run_id, prepared=prepared, limits=limits
            )
    except OperationalError:
        raise
    except Exception as exc:
        logger.exception("recording %s failed; it is quarantined", prepared.item.locator)
        return quarantine_failed_record(
            sessions, source_id=source_id, run_id=run_id, prepared=prepared, error=exc
        )


def quarantine_failed_record(
    sessions: Any, *, source_id: int, run_id: int, prepared: Any, error: BaseException
) -> Any:
    """A ``record_failed`` quarantine entry for an item whose rows could not be written."""
    from provenance.ingest_record import record_refused_input

    detail = clean_text(f"{type(error).__name__}: {error}")
    if prepared.sha256:
        detail = f"sha256 {prepared.sha256}: {detail}"
    failed = replace(
        prepared, sha256=None, reason_code="record_failed", reason_detail=(detail or "")[:1000]
    )
    with sessions.begin() as session:
        return record_refused_input(session, source_id, run_id, failed)


def mark_run_failed(
    sessions: Any, *, run_id: int, outcomes: list[Any], error: BaseException
) -> None:
    """Mark a run that stopped early ``failed``, with the counts of what it did. Never
    raises: the error that stopped the run is the one the caller reports."""
    from provenance.ingest_runs import finish_run, summarize

    message = clean_text(f"{type(error).__name__}: {error}") or type(error).__name__
    try:
        with sessions.begin() as session:
            finish_run(
                session,
                run_id=run_id,
                counts=summarize(outcomes) | {"error": message[:2000]},
                status="failed",
            )
    except Exception:
        logger.exception("could not mark ingestion run %s failed", run_id)
