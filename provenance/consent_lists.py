"""Read do-not-train lists and W3C TDMRep files into opt-out entries and rules; no database.

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
otherwise a prefix; case-sensitive); the first matching rule decides
(:func:`rule_for`). A reservation of 1 means an opt-out of ``training``; 0
means "not reserved". The origin comes from the caller, from a path like
``…/<host>/.well-known/tdmrep.json``, or from absolute-url locations.

:mod:`provenance.consent_sync` records what these files say in the consent ledger.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from provenance.consent_terms import normalize_purpose, parse_effective_at
from provenance.hashing import sha256_bytes
from provenance.names import normalize_name

EntryKind = Literal["party", "sha256", "source_url"]
ListFormat = Literal["do_not_train_csv", "do_not_train_json", "tdmrep"]
DEFAULT_PURPOSE = "training"

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
    """One rule of a TDMRep file, ``number`` counting from 1 in file order."""

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


def infer_kind(value: str) -> EntryKind:
    """64 hex digits → sha256; ``scheme://…`` → source_url; anything else → party."""
    text = value.strip()
    if _SHA256.match(text):
        return "sha256"
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        return "source_url"
    return "party"


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
        purpose=normalize_purpose(row_purpose) if row_purpose else purpose,
        effective_at=parse_effective_at(row_time) if row_time else effective_at,
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


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) url (default port left out), else None."""
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
    purpose = normalize_purpose(purpose)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConsentListError(f"cannot read {path}: {exc}") from exc
    sha = sha256_bytes(data)
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
            if origin is not None and origin_of(origin) is None:
                raise ConsentListError(
                    f"origin {origin!r} is not an http(s) url like https://example.org"
                )
            site = origin_of(origin) if origin else _infer_origin(path)
            return ConsentList(
                str(path), sha, "tdmrep", rules=tuple(rules), origin=site, invalid=tuple(invalid)
            )
        defaults_time: dt.datetime | None = None
        list_purpose = purpose
        if isinstance(value, Mapping):
            try:
                if value.get("purpose"):
                    list_purpose = normalize_purpose(str(value["purpose"]))
                if value.get("effective_at"):
                    defaults_time = parse_effective_at(str(value["effective_at"]))
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


# ------------------------------------------------------------------ TDMRep matching


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


def rule_for(rules: Sequence[TdmRule], url: str, origin: str) -> TdmRule | None:
    """The first rule (in file order) whose location matches ``url``."""
    for rule in rules:
        if "://" in rule.location:
            if origin_of(rule.location) != origin_of(url):
                continue
            pattern = _url_path(rule.location)
        else:
            if origin_of(url) != origin:
                continue
            pattern = rule.location
        if location_matches(pattern, _url_path(url)):
            return rule
    return None
