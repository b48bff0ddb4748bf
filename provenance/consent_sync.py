"""Record what consent files say in the consent ledger: statement files, do-not-train lists, TDMRep.

Files are read by :mod:`provenance.consent_statements` (explicit opt-ins and
opt-outs) and :mod:`provenance.consent_lists` (do-not-train lists and TDMRep
files); this module matches them against the database and records events.

**Statement files** (:func:`import_consent_file`): every subject is resolved
before anything is written, so one unknown subject records nothing.

**Opt-out files** (:func:`sync_consent_file`): a list entry opts its party (by
name or alias), recording (by sha256) or source url out; a TDMRep rule with
``tdm-reservation`` 1 opts out every recording whose ``source_url`` it is the
first match for, for ``training``. Each opt-out carries evidence naming the
file, its sha256 and the entry, and a deterministic ``dedupe_key`` built from
the statement (not the file's name or the time of the sync), so syncing the
same list twice adds nothing. Entries that match nothing in the database are
reported as unknown; with ``create_parties`` an unknown party name becomes a
party (kind ``unknown``) so the opt-out already covers its future recordings.

Every event goes through :func:`provenance.consent.record_consent`; nothing here commits.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from provenance.consent import ConsentSubject, record_consent
from provenance.consent_lists import (
    DEFAULT_PURPOSE,
    ConsentList,
    ConsentListError,
    ListEntry,
    ListFormat,
    origin_of,
    parse_consent_file,
    rule_for,
)
from provenance.consent_statements import ConsentImportError, ConsentRow, parse_statement_file
from provenance.hashing import sha256_bytes
from provenance.models import Recording, Source, utcnow
from provenance.parties import find_parties, find_party, get_or_create_party

logger = logging.getLogger(__name__)

TDMREP_PURPOSE = "training"
_DEDUPE_VERSION = "consent-sync/v1"


@dataclass(frozen=True)
class ImportResult:
    """What importing a statement file did: its rows, and the events it added."""

    rows: int
    recorded: int
    already_recorded: int
    event_ids: list[int]


@dataclass
class EntryResult:
    """What one list entry or TDMRep rule matched and recorded."""

    entry: str  # "party 'X'", "sha256 …", "tdmrep rule 2 '/music/*'"
    status: Literal["recorded", "already_recorded", "unknown", "not_reserved", "no_match"]
    subjects: list[str] = field(default_factory=list)  # "party:3", "recording:7", "source:1"
    event_ids: list[int] = field(default_factory=list)
    detail: str | None = None


@dataclass
class SyncReport:
    """What syncing one opt-out file did, entry by entry."""

    path: str
    sha256: str
    format: ListFormat
    recorded: int = 0
    already_recorded: int = 0
    unknown: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    results: list[EntryResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------ statement files


def resolve_subject(session: Session, row: ConsentRow) -> ConsentSubject:
    """The subject a row names, or :class:`ConsentImportError` naming what is unknown."""
    if row.subject_kind == "party":
        party = find_party(session, row.subject)
        if party is None:
            candidates = find_parties(session, row.subject)
            if candidates:
                ids = ", ".join(str(p.id) for p in candidates)
                raise ConsentImportError(
                    row.line, f"ambiguous party {row.subject!r}: an alias of parties {ids}"
                )
            raise ConsentImportError(row.line, f"unknown party {row.subject!r}")
        return ConsentSubject("party", party.id)
    if row.subject_kind == "recording":
        rid = session.execute(
            select(Recording.id).where(Recording.sha256 == row.subject)
        ).scalar_one_or_none()
        if rid is None:
            raise ConsentImportError(row.line, f"unknown recording {row.subject!r}")
        return ConsentSubject("recording", rid)
    sid = session.execute(select(Source.id).where(Source.uri == row.subject)).scalar_one_or_none()
    if sid is None:
        raise ConsentImportError(row.line, f"unknown source {row.subject!r}")
    return ConsentSubject("source", sid)


def import_consent_file(
    session: Session, path: str | Path, *, origin: str = "import_file"
) -> ImportResult:
    """Validate ``path`` completely, then record one consent event per row; never commits.

    Raises :class:`ConsentImportError` before writing anything when any row is bad.
    """
    rows = parse_statement_file(path)
    resolved = [(row, resolve_subject(session, row)) for row in rows]
    event_ids: list[int] = []
    for row, subject in resolved:
        event = record_consent(
            session,
            subject=subject,
            action=row.action,
            purpose=row.purpose,
            effective_at=row.effective_at,
            origin=origin,
            evidence=row.evidence or f"{Path(path).name}:{row.line}",
            dedupe_key=row.dedupe_key(),
        )
        if event is not None:
            event_ids.append(event.id)
    return ImportResult(
        rows=len(rows),
        recorded=len(event_ids),
        already_recorded=len(rows) - len(event_ids),
        event_ids=event_ids,
    )


# ------------------------------------------------------------ opt-out files


def _dedupe_key(*parts: object) -> str:
    return sha256_bytes("|".join([_DEDUPE_VERSION, *map(str, parts)]).encode())


def _record(
    session: Session,
    subject: ConsentSubject,
    *,
    purpose: str,
    effective_at: dt.datetime,
    origin: str,
    evidence: str,
    key: str,
    result: EntryResult,
) -> None:
    event = record_consent(
        session,
        subject=subject,
        action="opt_out",
        purpose=purpose,
        effective_at=effective_at,
        origin=origin,
        evidence=evidence[:4000],
        dedupe_key=key,
    )
    result.subjects.append(f"{subject.kind}:{subject.id}")
    if event is not None:
        result.event_ids.append(event.id)


def _finish(result: EntryResult) -> None:
    """A matched entry is ``recorded`` if it added an event, else ``already_recorded``."""
    result.status = "recorded" if result.event_ids else "already_recorded"


def _apply_entry(
    session: Session,
    entry: ListEntry,
    parsed: ConsentList,
    *,
    now: dt.datetime,
    create_parties: bool,
) -> EntryResult:
    label = {"party": "party", "sha256": "recording sha256", "source_url": "source url"}
    result = EntryResult(entry=f"{label[entry.kind]} {entry.value!r}", status="recorded")
    effective_at = entry.effective_at or now
    evidence = (
        f"do-not-train list {parsed.path} (sha256 {parsed.sha256}), entry {entry.number}: "
        f"{entry.kind} {entry.value!r}" + (f"; note: {entry.note}" if entry.note else "")
    )
    # The statement, not the file or the time of the sync, identifies an event.
    time_part = entry.effective_at.isoformat() if entry.effective_at else ""
    subjects: list[tuple[ConsentSubject, str]] = []
    if entry.kind == "party":
        parties = find_parties(session, entry.value)
        if not parties and create_parties:
            party = get_or_create_party(session, entry.value, kind="unknown")
            parties = [party]
            result.detail = "party created from the list"
        for party in parties:
            how = "name" if party.normalized_name == entry.key_value() else "alias"
            subjects.append(
                (ConsentSubject("party", party.id), f"matched party {party.name!r} by {how}")
            )
    elif entry.kind == "sha256":
        rec_id = session.execute(
            select(Recording.id).where(Recording.sha256 == entry.key_value())
        ).scalar_one_or_none()
        if rec_id is not None:
            subjects.append((ConsentSubject("recording", rec_id), "matched recording by sha256"))
    else:
        url = entry.key_value()
        rec_where: ColumnElement[bool]
        src_where: ColumnElement[bool]
        if url.endswith("*"):
            prefix = url[:-1]
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rec_where = Recording.source_url.like(escaped + "%", escape="\\")
            src_where = Source.uri.like(escaped + "%", escape="\\")
        else:
            rec_where, src_where = Recording.source_url == url, Source.uri == url
        recordings = session.execute(select(Recording.id).where(rec_where).order_by(Recording.id))
        for rec_id in recordings.scalars():
            subjects.append((ConsentSubject("recording", rec_id), "matched recording source_url"))
        sources = session.execute(select(Source.id).where(src_where).order_by(Source.id))
        for src_id in sources.scalars():
            subjects.append((ConsentSubject("source", src_id), "matched source uri"))
    if not subjects:
        result.status = "unknown"
        result.detail = f"no {label[entry.kind]} in the database matches"
        return result
    for subject, how in subjects:
        key = _dedupe_key(
            "list",
            entry.kind,
            entry.key_value(),
            f"{subject.kind}:{subject.id}",
            "opt_out",
            entry.purpose,
            time_part,
        )
        _record(
            session,
            subject,
            purpose=entry.purpose,
            effective_at=effective_at,
            origin="registry_import",
            evidence=f"{evidence}; {how}",
            key=key,
            result=result,
        )
    _finish(result)
    return result


def _apply_tdmrep(session: Session, parsed: ConsentList, *, now: dt.datetime) -> list[EntryResult]:
    origins = {parsed.origin} | {origin_of(r.location) for r in parsed.rules}
    origins.discard(None)
    if not origins:
        raise ConsentListError(
            f"TDMRep file {parsed.path}: its locations are paths, but the site they belong to "
            "is unknown; give the origin (e.g. --origin https://example.org)"
        )
    origin = parsed.origin or ""
    conditions = [
        or_(Recording.source_url == site, Recording.source_url.like(f"{site}/%"))
        for site in sorted(o for o in origins if o)
    ]
    candidates = session.execute(
        select(Recording.id, Recording.source_url)
        .where(Recording.source_url.is_not(None), or_(*conditions))
        .order_by(Recording.id)
    ).all()
    results = {
        rule.number: EntryResult(
            entry=f"tdmrep rule {rule.number} {rule.location!r}",
            status="no_match" if rule.reservation != 0 else "not_reserved",
        )
        for rule in parsed.rules
    }
    for rec_id, url in candidates:
        rule = rule_for(parsed.rules, url, origin)
        if rule is None or rule.reservation != 1:
            if rule is not None:
                results[rule.number].subjects.append(f"recording:{rec_id}")
            continue
        result = results[rule.number]
        result.status = "recorded"
        evidence = (
            f"TDMRep {parsed.path} (sha256 {parsed.sha256}) for {origin or rule.location}: "
            f"rule {rule.number} location {rule.location!r} tdm-reservation 1"
            + (f" tdm-policy {rule.policy}" if rule.policy else "")
            + f"; matches {url}"
        )
        key = _dedupe_key(
            "tdmrep",
            origin,
            rule.location,
            rule.reservation,
            rule.policy or "",
            f"recording:{rec_id}",
            "opt_out",
            TDMREP_PURPOSE,
        )
        _record(
            session,
            ConsentSubject("recording", rec_id),
            purpose=TDMREP_PURPOSE,
            effective_at=now,
            origin="tdmrep",
            evidence=evidence,
            key=key,
            result=result,
        )
    for result in results.values():
        if result.status == "recorded":
            _finish(result)
        elif result.status == "no_match":
            result.detail = "no recording of this site matches (first-match order)"
        else:
            result.detail = "tdm-reservation 0: rights not reserved, nothing recorded"
    return [results[number] for number in sorted(results)]


def apply_consent_list(
    session: Session,
    parsed: ConsentList,
    *,
    create_parties: bool = False,
    now: dt.datetime | None = None,
) -> SyncReport:
    """Record the opt-outs of ``parsed``; never commits. Returns what happened per entry."""
    now = now or utcnow()
    report = SyncReport(parsed.path, parsed.sha256, parsed.format, invalid=list(parsed.invalid))
    if parsed.format == "tdmrep":
        report.results = _apply_tdmrep(session, parsed, now=now)
    else:
        report.results = [
            _apply_entry(session, entry, parsed, now=now, create_parties=create_parties)
            for entry in parsed.entries
        ]
    for result in report.results:
        report.recorded += len(result.event_ids)
        if result.status in ("recorded", "already_recorded"):
            report.already_recorded += len(result.subjects) - len(result.event_ids)
        if result.status == "unknown":
            report.unknown.append(result.entry)
    logger.info(
        "%s (%s): %d opt-out(s) recorded, %d already recorded, %d unknown, %d invalid",
        parsed.path,
        parsed.format,
        report.recorded,
        report.already_recorded,
        len(report.unknown),
        len(report.invalid),
    )
    return report


def sync_consent_file(
    session: Session,
    path: str | Path,
    *,
    purpose: str = DEFAULT_PURPOSE,
    origin: str | None = None,
    create_parties: bool = False,
    now: dt.datetime | None = None,
) -> SyncReport:
    """Parse one file and record its opt-outs (see the module docstring); never commits."""
    parsed = parse_consent_file(path, purpose=purpose, origin=origin)
    return apply_consent_list(session, parsed, create_parties=create_parties, now=now)
