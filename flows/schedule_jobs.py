"""The jobs a schedules file declares: what each deployment runs, with which parameters, when."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from provenance.ingest_prepare import DEFAULT_LIMITS, IngestLimits


@dataclass(frozen=True)
class ScheduleSpec:
    """When a deployment runs: a cron expression (with its timezone) or a fixed interval."""

    cron: str | None = None
    interval_seconds: float | None = None
    timezone: str = "UTC"

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron!r} ({self.timezone})"
        return f"every {self.interval_seconds:g} s"

    def to_prefect(self) -> Any:
        """The equivalent :mod:`prefect.schedules` object."""
        from prefect.schedules import Cron, Interval

        if self.cron is not None:
            return Cron(self.cron, timezone=self.timezone)
        assert self.interval_seconds is not None
        return Interval(dt.timedelta(seconds=self.interval_seconds), timezone=self.timezone)


@dataclass(frozen=True)
class IngestJob:
    """A scheduled ingestion of one source (the `ingest-source` flow)."""

    flow_name: ClassVar[str] = "ingest-source"

    name: str
    source: str
    schedule: ScheduleSpec
    manifest: str | None = None
    root: str | None = None
    workers: int = 2
    limits: IngestLimits = DEFAULT_LIMITS

    def parameters(self) -> dict[str, Any]:
        return {
            "source_uri": self.source,
            "manifest": self.manifest,
            "root": self.root,
            "limits": self.limits.to_dict(),
            # Served runs re-import the flow with its default (unbounded) thread runner,
            # so the window of items in flight is what bounds the work to `workers`.
            "in_flight": self.workers,
        }


@dataclass(frozen=True)
class ConsentSyncJob:
    """A scheduled import of do-not-train lists and TDMRep files (the `consent-sync` flow)."""

    flow_name: ClassVar[str] = "consent-sync"

    name: str
    files: tuple[str, ...]
    schedule: ScheduleSpec
    purpose: str = "training"
    origin: str | None = None
    create_parties: bool = False

    def parameters(self) -> dict[str, Any]:
        return {
            "files": list(self.files),
            "purpose": self.purpose,
            "origin": self.origin,
            "create_parties": self.create_parties,
        }


@dataclass(frozen=True)
class AuditJob:
    """A scheduled taint and integrity check (the `audit` flow)."""

    flow_name: ClassVar[str] = "audit"

    name: str
    schedule: ScheduleSpec
    verify: bool = True

    def parameters(self) -> dict[str, Any]:
        return {"verify": self.verify}


@dataclass(frozen=True)
class ServeConfig:
    """A validated schedules file."""

    path: Path
    ingest: tuple[IngestJob, ...] = ()
    consent_sync: ConsentSyncJob | None = None
    audit: AuditJob | None = None
    limit: int = 1
    pause_on_shutdown: bool = True

    def jobs(self) -> list[IngestJob | ConsentSyncJob | AuditJob]:
        jobs: list[IngestJob | ConsentSyncJob | AuditJob] = list(self.ingest)
        if self.consent_sync is not None:
            jobs.append(self.consent_sync)
        if self.audit is not None:
            jobs.append(self.audit)
        return jobs
