"""The `ingest-source` flow: a folder, manifest or dataset dump → recordings in the provenance DB.

Per item, a task reads, hashes, validates and stores the bytes
(:func:`provenance.ingest_prepare.prepare_item`, no database); the flow then records
each result in its own transaction, strictly in listing order, so the thread
runner and a Dask cluster write identical rows. Tasks retry only on I/O
errors. Concurrency is bounded by the runner's workers and a window of
``in_flight`` submitted items; every task also carries the tag
``fairchord-ingest-io``, so an operator can cap all runs together with
``prefect concurrency-limit create fairchord-ingest-io N``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from flows.bounded import submit_bounded
from flows.local_runs import dask_task_runner, publish, retry_on, run_flow, run_logger, step
from provenance.db import make_engine, session_factory
from provenance.ingest import IngestOutcome
from provenance.ingest_failures import mark_run_failed, record_or_quarantine
from provenance.ingest_prepare import DEFAULT_LIMITS, IngestLimits, PreparedItem, prepare_item
from provenance.ingest_runs import (
    finish_run,
    get_or_create_source,
    record_source_failure,
    start_run,
    summarize,
)
from provenance.object_store import ObjectStore, crash_point, default_object_store
from provenance.settings import fairchord_home
from provenance.sources.base import EmptyManifestError, SourceError, SourceItem, open_source

IO_TAG = "fairchord-ingest-io"

ProgressCallback = Callable[[int, int, IngestOutcome], None]  # (done, total, outcome)
_progress_callbacks: list[ProgressCallback] = []


def add_progress_callback(callback: ProgressCallback) -> Callable[[], None]:
    """Call ``callback(done, total, outcome)`` as items are recorded; returns a remover."""
    _progress_callbacks.append(callback)
    return lambda: _progress_callbacks.remove(callback)


def _report_progress(done: int, total: int, outcome: IngestOutcome) -> None:
    # The flow calls this by name: Dask pickles the flow's function by value with the
    # globals it names, and the callbacks (a CLI's progress bar, with its locks) must not
    # be among them.
    for callback in list(_progress_callbacks):
        callback(done, total, outcome)


_engines: dict[str | None, Engine] = {}
_engines_lock = threading.Lock()


def _sessions(db_url: str | None) -> sessionmaker[Session]:
    with _engines_lock:
        engine = _engines.get(db_url)
        if engine is None:
            engine = _engines[db_url] = make_engine(db_url)
    return session_factory(engine)


def _dispose_engine(db_url: str | None) -> None:
    with _engines_lock:
        engine = _engines.pop(db_url, None)
    if engine is not None:
        engine.dispose()


@dataclass(frozen=True)
class ListedSource:
    """A source's identity and items, or why it could not be listed."""

    kind: str
    uri: str
    config: dict[str, Any]
    items: list[SourceItem]
    error_code: str | None = None
    error: str | None = None


@step(
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=retry_on(OSError),
    tags=[IO_TAG],
    cache_policy=NO_CACHE,
)
def list_source_items(
    source_uri: str,
    manifest: str | None,
    root: str | None,
    allowed_schemes: tuple[str, ...] = (),
) -> ListedSource:
    """Open the source and list its items; an unlistable source (an empty manifest, say)
    comes back with ``error`` set so the flow can record it."""
    adapter = open_source(source_uri, manifest=manifest, root=root, allowed_schemes=allowed_schemes)
    try:
        items = list(adapter.items())
    except SourceError as exc:
        return ListedSource(
            adapter.kind, adapter.uri, adapter.config, [], exc.reason_code, str(exc)
        )
    return ListedSource(adapter.kind, adapter.uri, adapter.config, items)


@step(
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=retry_on(OSError),
    tags=[IO_TAG],
    cache_policy=NO_CACHE,
)
def prepare_source_item(
    item: SourceItem, store_url: str, home: str, limits: dict[str, Any]
) -> PreparedItem:
    """Read, hash, validate and store one item (no database). The store's URL and the home
    its locations are recorded relative to are the flow's, so a Dask worker needs neither
    a fairchord home of its own nor the flow's working folder."""
    store = ObjectStore(store_url, home=home)
    return prepare_item(store, item, IngestLimits.from_dict(limits))


@step(
    retries=3,
    retry_delay_seconds=1,
    retry_condition_fn=retry_on(OperationalError),
    cache_policy=NO_CACHE,
)
def record_item(
    db_url: str | None, source_id: int, run_id: int, prepared: PreparedItem, limits: dict[str, Any]
) -> IngestOutcome:
    """One item's rows, in their own transaction; an item whose rows cannot be written is
    quarantined ``record_failed`` instead (the run goes on)."""
    outcome = record_or_quarantine(
        _sessions(db_url),
        source_id=source_id,
        run_id=run_id,
        prepared=prepared,
        limits=IngestLimits.from_dict(limits),
    )
    crash_point("after_commit")
    return outcome


class _Adapter:
    """The listed source's identity, for get_or_create_source (which wants an adapter)."""

    def __init__(self, kind: str, uri: str, config: dict[str, Any]) -> None:
        self.kind, self.uri, self._config = kind, uri, config

    @property
    def config(self) -> dict[str, Any]:
        return self._config

    def items(self) -> Any:  # pragma: no cover - never listed again
        return iter(())


@flow(name="ingest-source")
def ingest_source_flow(
    source_uri: str,
    manifest: str | None = None,
    root: str | None = None,
    db_url: str | None = None,
    store_uri: str | None = None,
    limits: dict[str, Any] | None = None,
    in_flight: int = 4,
    allowed_schemes: list[str] | None = None,
) -> dict[str, Any]:
    """Ingest every item of a source; return the run summary (counts and per-item outcomes).

    ``limits`` overrides fields of :class:`provenance.ingest_prepare.IngestLimits`;
    ``allowed_schemes`` lists the URL schemes a manifest's rows may name (none by default:
    rows name files inside the root). A source that cannot be listed (an empty manifest)
    is recorded as a failed run with a quarantine entry, then raises
    :class:`provenance.sources.SourceError`. A run stopped by an error is marked
    ``failed`` before the error propagates.
    """
    logger = run_logger("ingest")
    started = time.perf_counter()
    limit_values = IngestLimits.from_dict(limits or {}).to_dict()
    store = ObjectStore(store_uri) if store_uri else default_object_store()
    home = str(fairchord_home().resolve())
    listed = list_source_items(source_uri, manifest, root, tuple(allowed_schemes or ()))
    kind, uri, items = listed.kind, listed.uri, listed.items

    from prefect.runtime import flow_run

    flow_run_id = str(flow_run.id) if flow_run.id else None
    sessions = _sessions(db_url)
    with sessions.begin() as session:
        source = get_or_create_source(session, _Adapter(kind, uri, listed.config))
        run = start_run(session, source_id=source.id, prefect_flow_run_id=flow_run_id)
        source_id, run_id = source.id, run.id
    logger.info("ingestion run %s of source %s (%s) started", run_id, uri, kind)

    if listed.error is not None:
        error = (
            EmptyManifestError(listed.error)
            if listed.error_code == "empty_manifest"
            else (SourceError(listed.error))
        )
        record_source_failure(sessions, source_id=source_id, run_id=run_id, error=error)
        _publish(run_id, uri, {"status": "failed", "error": listed.error}, [], started)
        _dispose_engine(db_url)
        raise error

    removed = store.remove_stale_tmp()
    if removed:
        logger.info("removed %d temporary file(s) left by killed runs", len(removed))

    outcomes: list[IngestOutcome] = []

    def collect(prepared: PreparedItem) -> None:
        outcome = record_item(db_url, source_id, run_id, prepared, limit_values)
        outcomes.append(outcome)
        if outcome.status == "quarantined":
            logger.warning(
                "quarantined %s: %s (%s)", outcome.locator, outcome.reason_code, outcome.detail
            )
        _report_progress(len(outcomes), len(items), outcome)

    # A bounded window of submitted items; results are recorded in submission order.
    try:
        submit_bounded(
            lambda item: prepare_source_item.submit(item, store.url, home, limit_values),
            items,
            limit=in_flight,
            on_result=collect,
        )
    except BaseException as exc:  # the run stops: it must not stay `running`
        mark_run_failed(sessions, run_id=run_id, outcomes=outcomes, error=exc)
        _dispose_engine(db_url)
        raise

    counts = summarize(outcomes)
    with sessions.begin() as session:
        finish_run(session, run_id=run_id, counts=counts)
    summary = {
        "status": "completed",
        "run_id": run_id,
        "source_id": source_id,
        "source_uri": uri,
        "source_kind": kind,
        "prefect_flow_run_id": flow_run_id,
        "counts": counts,
        "outcomes": [o.to_dict() for o in outcomes],
        "seconds": round(time.perf_counter() - started, 3),
    }
    _publish(run_id, uri, summary, outcomes, started)
    logger.info(
        "run %s: %d item(s): %d accepted, %d near-duplicate, %d duplicate, %d unchanged, "
        "%d quarantined",
        run_id,
        counts["items"],
        counts["accepted"],
        counts["near_duplicate"],
        counts["duplicate"],
        counts["unchanged"],
        counts["quarantined"],
    )
    _dispose_engine(db_url)
    return summary


def outcome_table(counts: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the table artifact: one per outcome, quarantines one per reason."""
    rows: list[dict[str, Any]] = []
    for status in ("accepted", "near_duplicate", "duplicate", "unchanged"):
        rows.append({"outcome": status, "reason": "", "items": counts.get(status, 0)})
    for reason, n in counts.get("quarantined_by_reason", {}).items():
        rows.append({"outcome": "quarantined", "reason": reason, "items": n})
    for flag, n in counts.get("flags", {}).items():
        rows.append({"outcome": "flagged (kept)", "reason": flag, "items": n})
    return rows


def summary_markdown(summary: dict[str, Any], outcomes: list[IngestOutcome]) -> str:
    counts = summary.get("counts", {})
    lines = [
        f"# Ingestion run {summary.get('run_id', '?')}",
        "",
        f"Source: `{summary.get('source_uri', '?')}` ({summary.get('source_kind', '?')}), "
        f"status **{summary.get('status')}**.",
        "",
    ]
    if summary.get("error"):
        lines += [f"Error: {summary['error']}", ""]
    if counts:
        lines += [
            f"- items: {counts['items']}",
            f"- accepted: {counts['accepted']} (of which near-duplicates: "
            f"{counts['near_duplicate']})",
            f"- same bytes at a new place (duplicate): {counts['duplicate']}",
            f"- already known (unchanged): {counts['unchanged']}",
            f"- quarantined: {counts['quarantined']}",
            f"- audio accepted: {counts['audio_seconds']:.1f} s",
            "",
        ]
    refused = [o for o in outcomes if o.status == "quarantined" or o.flags]
    if refused:
        lines += ["| item | outcome | reason / flags | detail |", "|---|---|---|---|"]
        for o in refused[:200]:
            why = o.reason_code or ", ".join(o.flags)
            detail = (o.detail or "").replace("|", "\\|")[:160]
            lines.append(f"| `{o.locator}` | {o.status} | {why} | {detail} |")
        if len(refused) > 200:
            lines.append(f"| … {len(refused) - 200} more | | | |")
    return "\n".join(lines)


def _publish(
    run_id: int,
    uri: str,
    summary: dict[str, Any],
    outcomes: list[IngestOutcome],
    started: float,
) -> None:
    counts = summary.get("counts") or summarize(outcomes)
    publish(
        create_table_artifact,
        key="ingest-outcomes",
        table=outcome_table(counts),
        description=f"ingestion run {run_id} of {uri}: outcomes by kind and quarantine reason",
    )
    publish(
        create_markdown_artifact,
        key="ingest-summary",
        markdown=summary_markdown({"run_id": run_id, "source_uri": uri, **summary}, outcomes),
        description=f"ingestion run {run_id} of {uri}",
    )


def run_ingest(
    source_uri: str,
    *,
    manifest: str | None = None,
    root: str | None = None,
    db_url: str | None = None,
    store_uri: str | None = None,
    limits: IngestLimits = DEFAULT_LIMITS,
    workers: int = 2,
    use_dask: bool = False,
    dask_address: str | None = None,
    allowed_schemes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run the flow: locally on ``workers`` threads when no Prefect API is configured,
    else as a Prefect flow run on a thread runner; ``use_dask``: on a two-worker local Dask
    cluster, or with ``dask_address`` on the existing cluster whose scheduler is there
    (a Prefect flow run, with a temporary server if none is configured)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    params: dict[str, Any] = {
        "source_uri": source_uri,
        "manifest": manifest,
        "root": root,
        "db_url": db_url,
        "store_uri": store_uri,
        "limits": limits.to_dict(),
        "in_flight": 2 * workers,
        "allowed_schemes": list(allowed_schemes),
    }
    result: dict[str, Any] = run_flow(
        ingest_source_flow,
        workers=workers,
        dask_runner=dask_task_runner(dask_address) if use_dask or dask_address else None,
        **params,
    )
    return result
