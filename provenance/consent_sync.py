"""Import opt-outs from do-not-train lists and W3C TDMRep files into the consent ledger.

Two kinds of file:

**Do-not-train list** (CSV with a header, or JSON). Each entry names a party
(a name or any alias), a recording (the sha256 of its original bytes) or a
source url. CSV columns: ``party`` (also ``name``, ``artist``, ``alias``),
``sha256`` (also ``recording_sha256``), ``source_url`` (also ``url``), or
``entry`` (also ``value``), whose kind is inferred: 64 hex digits → sha256,
``scheme://…`` → url, anything else → a party. Optional per entry:
``purpose`` (default: the sync's purpose, ``training``), ``effective_at``
(ISO 8601; a date means midnight UTC; default: the time of the sync),
``evidence`` (also ``reason``, ``note``). JSON: a list of strings or of
objects with those keys, or an object with ``entries`` (that list) and
optional ``purpose`` / ``effective_at`` defaults. A url ending in ``*`` matches
every recording url it prefixes.

**TDMRep** (``tdmrep.json``, W3C TDM Reservation Protocol community report):
an array of rules ``{"location": PATTERN, "tdm-reservation": 0|1,
"tdm-policy": URL}``. ``location`` is a path pattern on the site's origin
(robots.txt syntax: ``*`` any characters, a final ``$`` anchors the end,
otherwise a prefix; case-sensitive); the first matching rule decides. A
recording whose ``source_url`` is on that origin and whose first matching rule
has ``tdm-reservation`` 1 gets an opt-out for ``training``; 0 means "not
reserved" and records nothing. The origin comes from the caller, from a path
like ``…/<host>/.well-known/tdmrep.json``, or from absolute-url locations.

Every opt-out is a ``consent_events`` row (via
:func:`provenance.consent.record_consent`) with evidence naming the file, its
sha256 and the entry, and a deterministic ``dedupe_key`` built from the
statement (not the file's name or the time of the sync), so syncing the same
list twice adds nothing. Entries that match nothing in the database are
reported as unknown; with ``create_parties`` an unknown party name becomes a
party (kind ``unknown``) so the opt-out already covers its future recordings.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from provenance.consent import ConsentSubject, record_consent
from provenance.models import Recording, Source, utcnow
from provenance.models.rights import CONSENT_PURPOSES
from provenance.names import normalize_name
from provenance.parties import find_parties, get_or_create_party

logger = logging.getLogger(__name__)

EntryKind = Literal["party", "sha256", "source_url"]
ListFormat = Literal["do_not_train_csv", "do_not_train_json", "tdmrep"]
DEFAULT_PURPOSE = "training"
TDMREP_PURPOSE = "training"
_DEDUPE_VERSION = "consent-sync/v1"

_KIND_COLUMNS: dict[EntryKind, tuple[str, ...]] = {
    "party": ("party", "name", "artist", "alias"),
    "sha256": ("sha256", "recording_sha256", "recording"),
    "source_url": ("source_url", "url"),
}
_AUTO_COLUMNS = ("entry", "value")
_EVIDENCE_COLUMNS = ("evidence", "reason", "note")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class ConsentListError(ValueError):
    """A file that is not a readable do-not-train list or TDMRep file."""


@dataclass(frozen=True)
class ListEntry:
    """One statement of a do-not-train list: ``value`` of ``kind`` opts out of ``purpose``."""

    number: int  # 1-based position in the file
    kind: EntryKind
    value: str
    purpose: str
    effective_at: dt.datetime | None = None
    note: str | None = None

    def key_value(self) -> str:
        """The value as compared: a normalised name, a lower-case sha256, a stripped url."""
        if self.kind == "party":
            return normalize_name(self.value)
        if self.kind == "sha256":
            return self.value.lower()
        return self.value.strip()


@dataclass(frozen=True)
class TdmRule:
    number: int
    location: str
    reservation: int | None  # 0, 1, or None for a protocol error (rule treated as unset)
    policy: str | None


@dataclass(frozen=True)
class ConsentList:
    """A parsed file: its entries (do-not-train) or rules (TDMRep), and what was invalid."""

    path: str
    sha256: str
    format: ListFormat
    entries: tuple[ListEntry, ...] = ()
    rules: tuple[TdmRule, ...] = ()
    origin: str | None = None  # TDMRep: scheme://host[:port] the locations are on
    invalid: tuple[str, ...] = ()  # entries or rules that could not be read, with why


@dataclass
class EntryResult:
    entry: str  # "party 'X'", "sha256 …", "tdmrep rule 2 '/music/*'"
    status: Literal["recorded", "already_recorded", "unknown", "not_reserved", "no_match"]
    subjects: list[str] = field(default_factory=list)  # "party:3", "recording:7", "source:1"
    event_ids: list[int] = field(default_factory=list)
    detail: str | None = None


@dataclass
class SyncReport:
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


# ------------------------------------------------------------------------ parsing


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_time(value: str) -> dt.datetime:
    """ISO 8601 → an aware UTC datetime; a bare date is midnight UTC; naive means UTC."""
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            parsed = dt.datetime.fromisoformat(text + "T00:00:00")
        else:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"effective_at {value!r} is not an ISO 8601 date or time") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def infer_kind(value: str) -> EntryKind:
    """64 hex digits → sha256; ``scheme://…`` → source_url; anything else → party."""
    text = value.strip()
    if _SHA256.match(text):
        return "sha256"
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        return "source_url"
    return "party"


def _check_purpose(purpose: str) -> str:
    purpose = purpose.strip().lower().replace("-", "_")
    if purpose not in CONSENT_PURPOSES:
        raise ValueError(f"purpose {purpose!r} is not one of {', '.join(CONSENT_PURPOSES)}")
    return purpose


def _lowered(row: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).strip().lower(): v for k, v in row.items() if k is not None}


def _entry_from_mapping(
    number: int,
    row: Mapping[str, Any],
    *,
    purpose: str,
    effective_at: dt.datetime | None,
) -> ListEntry:
    values = _lowered(row)

    def text(name: str) -> str | None:
        value = values.get(name)
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    found: list[tuple[EntryKind, str]] = []
    for kind, names in _KIND_COLUMNS.items():
        value = next((v for v in (text(n) for n in names) if v), None)
        if value:
            found.append((kind, value))
    auto = next((v for v in (text(n) for n in _AUTO_COLUMNS) if v), None)
    if auto:
        found.append((infer_kind(auto), auto))
    if not found:
        raise ValueError(
            "no party, sha256, source_url or entry value (columns: "
            + ", ".join(n for names in _KIND_COLUMNS.values() for n in names)
            + ", entry)"
        )
    if len(found) > 1:
        raise ValueError(
            "more than one statement in one entry ("
            + ", ".join(f"{k} {v!r}" for k, v in found)
            + "); give one per row"
        )
    kind, value = found[0]
    if kind == "sha256" and not _SHA256.match(value):
        raise ValueError(f"sha256 {value!r} is not 64 hexadecimal digits")
    row_purpose = text("purpose")
    row_time = text("effective_at") or text("date")
    note = next((v for v in (text(n) for n in _EVIDENCE_COLUMNS) if v), None)
    return ListEntry(
        number=number,
        kind=kind,
        value=value,
        purpose=_check_purpose(row_purpose) if row_purpose else purpose,
        effective_at=parse_time(row_time) if row_time else effective_at,
        note=note,
    )


def _parse_entries(
    rows: Iterable[tuple[int, Any]], *, purpose: str, effective_at: dt.datetime | None
) -> tuple[list[ListEntry], list[str]]:
    entries: list[ListEntry] = []
    invalid: list[str] = []
    for number, row in rows:
        try:
            if isinstance(row, str):
                row = {"entry": row}
            if not isinstance(row, Mapping):
                raise ValueError(f"is a {type(row).__name__}, not a string or an object")
            entries.append(
                _entry_from_mapping(number, row, purpose=purpose, effective_at=effective_at)
            )
        except ValueError as exc:
            invalid.append(f"entry {number}: {exc}")
    return entries, invalid


def _is_tdmrep(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(r, Mapping) and "location" in r for r in value)
    )


def _parse_tdm_rules(value: list[Any]) -> tuple[list[TdmRule], list[str]]:
    rules: list[TdmRule] = []
    invalid: list[str] = []
    for number, raw in enumerate(value, start=1):
        location = str(raw.get("location", "")).strip()
        reservation_raw = raw.get("tdm-reservation")
        reservation: int | None
        try:
            reservation = int(reservation_raw)
            if reservation not in (0, 1) or isinstance(reservation_raw, bool):
                raise ValueError
        except (TypeError, ValueError):
            # A protocol error: the rule's value counts as unset (it decides nothing).
            reservation = None
            invalid.append(
                f"rule {number}: tdm-reservation {reservation_raw!r} is not 0 or 1 "
                "(treated as unset)"
            )
        if not location:
            invalid.append(f"rule {number}: empty location (skipped)")
            continue
        policy = raw.get("tdm-policy")
        rules.append(TdmRule(number, location, reservation, str(policy) if policy else None))
    return rules, invalid


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme.lower() in ("http", "https") and parts.hostname:
        host = parts.hostname.lower()
        default = {"http": 80, "https": 443}[parts.scheme.lower()]
        port = f":{parts.port}" if parts.port and parts.port != default else ""
        return f"{parts.scheme.lower()}://{host}{port}"
    return None


def _infer_origin(path: Path) -> str | None:
    """``…/<host>/.well-known/tdmrep.json`` → ``https://<host>``."""
    parent = path.parent
    if parent.name == ".well-known" and "." in parent.parent.name:
        return f"https://{parent.parent.name.lower()}"
    return None


def parse_consent_file(
    path: str | Path,
    *,
    purpose: str = DEFAULT_PURPOSE,
    origin: str | None = None,
) -> ConsentList:
    """Read a do-not-train list (CSV/JSON) or a TDMRep file; no database involved.

    ``purpose`` is the default for list entries that do not name one; ``origin`` is the
    site a TDMRep file's locations are on (inferred from the path when possible).
    Raises :class:`ConsentListError` for a file that is neither.
    """
    path = Path(path)
    purpose = _check_purpose(purpose)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConsentListError(f"cannot read {path}: {exc}") from exc
    sha = _sha256_bytes(data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConsentListError(f"{path} is not UTF-8 text ({exc})") from exc
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped.startswith(("[", "{")):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ConsentListError(f"{path} is not valid JSON: {exc}") from exc
        if _is_tdmrep(value) or (path.name.lower() == "tdmrep.json" and isinstance(value, list)):
            rules, invalid = _parse_tdm_rules(value)
            if origin is not None and _origin_of(origin) is None:
                raise ConsentListError(
                    f"origin {origin!r} is not an http(s) url like https://example.org"
                )
            site = _origin_of(origin) if origin else _infer_origin(path)
            return ConsentList(
                str(path), sha, "tdmrep", rules=tuple(rules), origin=site, invalid=tuple(invalid)
            )
        defaults_time: dt.datetime | None = None
        list_purpose = purpose
        if isinstance(value, Mapping):
            try:
                if value.get("purpose"):
                    list_purpose = _check_purpose(str(value["purpose"]))
                if value.get("effective_at"):
                    defaults_time = parse_time(str(value["effective_at"]))
            except ValueError as exc:
                raise ConsentListError(f"{path}: {exc}") from exc
            items = value.get("entries")
            if not isinstance(items, list):
                raise ConsentListError(
                    f"{path}: a JSON object needs an 'entries' list (or give a JSON array)"
                )
        elif isinstance(value, list):
            items = value
        else:
            raise ConsentListError(f"{path}: expected a JSON array or object")
        entries, invalid = _parse_entries(
            enumerate(items, start=1), purpose=list_purpose, effective_at=defaults_time
        )
        return ConsentList(
            str(path), sha, "do_not_train_json", entries=tuple(entries), invalid=tuple(invalid)
        )

    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [str(f).strip().lower() for f in reader.fieldnames or []]
    known = {n for names in _KIND_COLUMNS.values() for n in names} | set(_AUTO_COLUMNS)
    if not fields or not known & set(fields):
        raise ConsentListError(
            f"{path}: a CSV do-not-train list needs a header with one of "
            f"{', '.join(sorted(known))}; got {', '.join(fields) or 'no header'}"
        )
    rows = (
        (number, row)
        for number, row in enumerate(reader, start=1)
        if any((v or "").strip() for v in row.values() if isinstance(v, str))
    )
    entries, invalid = _parse_entries(rows, purpose=purpose, effective_at=None)
    return ConsentList(
        str(path), sha, "do_not_train_csv", entries=tuple(entries), invalid=tuple(invalid)
    )


# ----------------------------------------------------------------------- matching


def location_matches(pattern: str, path: str) -> bool:
    """robots.txt-style: ``*`` any run of characters, a final ``$`` anchors the end,
    otherwise ``pattern`` must match a prefix of ``path``; case-sensitive, percent-decoded."""
    pattern = unquote(pattern)
    anchored = pattern.endswith("$")
    if anchored:
        pattern = pattern[:-1]
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.match(regex + ("$" if anchored else ""), unquote(path), flags=re.DOTALL) is not None


def _url_path(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def _rule_for(rules: Sequence[TdmRule], url: str, origin: str) -> TdmRule | None:
    """The first rule (in file order) whose location matches ``url``."""
    for rule in rules:
        if "://" in rule.location:
            if _origin_of(rule.location) != _origin_of(url):
                continue
            pattern = _url_path(rule.location)
        else:
            if _origin_of(url) != origin:
                continue
            pattern = rule.location
        if location_matches(pattern, _url_path(url)):
            return rule
    return None


def _dedupe_key(*parts: object) -> str:
    return hashlib.sha256("|".join([_DEDUPE_VERSION, *map(str, parts)]).encode()).hexdigest()


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
    origins = {parsed.origin} | {_origin_of(r.location) for r in parsed.rules}
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
        rule = _rule_for(parsed.rules, url, origin)
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
