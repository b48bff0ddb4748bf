"""Ingestion: one source item becomes a recording, a sighting, or a quarantine entry.

This module names what ingesting an item can end in (:class:`IngestOutcome`, the
quarantine reasons and the flags). The work is done in three parts:

1. :mod:`provenance.ingest_prepare` (no database): read the bytes (never blocking on
   a FIFO, never following a URL the source does not allow; :mod:`provenance.ingest_reads`),
   sha256 them, judge the header before decoding (:mod:`provenance.ingest_checks`),
   decode-validate and measure them (``provenance.audio_probe.probe_audio``), read file
   tags, and, only for acceptable audio, copy the bytes into the content-addressed
   object store (temporary name, then rename).
2. :mod:`provenance.ingest_record` (caller's transaction): the recording (or the
   existing one with the same sha256), its sighting and near-duplicate link; the facts
   the source states about it (credits, licence assertion, manifest consent events) are
   written by :mod:`provenance.ingest_facts`; every write appends its audit events.
3. :mod:`provenance.ingest_runs`: the source and ingestion-run rows, the counts of a run,
   and :func:`provenance.ingest_runs.ingest_source`, which runs both phases over a
   source item by item without Prefect (``flows.ingest`` runs them with Prefect and Dask).

Crash safety follows from the order: an object is complete before any row
names it, and a row is only committed after its object exists. A kill between
the two leaves an object without a row, which the rerun adopts (the put is a
no-op and the row is written) or :func:`provenance.object_store.sweep_orphan_objects`
removes. Every write is keyed (``recordings.sha256``, sighting and quarantine unique
keys, consent dedupe keys), so rerunning is a no-op and two concurrent runs converge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

# Every reason an item can be refused. ``unparseable_licence`` is not among them: such a
# recording is kept with licence NOASSERTION and reported as a *flag* (see FLAGS).
QUARANTINE_REASONS = (
    "zero_bytes",
    "truncated_or_corrupt",
    "not_audio",
    "unsupported_codec",
    "too_long",
    "too_large",
    "too_short",
    "all_silence",
    "unreadable",
    "path_escape",
    "symlink_escape",
    "missing_file",
    "duplicate_manifest_row",
    "non_utf8_name",
    "impossible_header",
    "empty_manifest",
    "malformed_row",
    "implausible_sample_rate",
    "too_many_channels",
    "record_failed",
)
FLAGS = (
    "unparseable_licence",
    "unparseable_consent",
    "unparseable_artist",  # a credited name that cannot name a party (see credit.unparsed)
    "unreadable_sidecar",
    "oversized_fact",  # a title or source url longer than its column, stored cut
)
OutcomeStatus = Literal["accepted", "near_duplicate", "duplicate", "unchanged", "quarantined"]
OUTCOME_STATUSES: tuple[str, ...] = (
    "accepted",
    "near_duplicate",
    "duplicate",
    "unchanged",
    "quarantined",
)


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one item."""

    locator: str
    status: OutcomeStatus
    reason_code: str | None = None
    detail: str | None = None
    recording_id: int | None = None
    sha256: str | None = None
    duplicate_of_id: int | None = None
    flags: tuple[str, ...] = ()
    audio_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
