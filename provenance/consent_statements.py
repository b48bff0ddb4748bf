"""Read consent statement files: every row valid (subject, action, purpose, time), or one error.

File format (UTF-8; a BOM is tolerated):

* **CSV** with exactly this header (any column order)::

      subject_kind,subject,action,purpose,effective_at,evidence

* **JSON**: a list of objects with the same keys (``evidence`` may be omitted
  or null).

Fields:

``subject_kind``  ``party`` | ``recording`` | ``source``
``subject``       a party's name or alias (matched after name folding), a
                  recording's sha256 (64 hex), or a source's uri (exact)
``action``        ``opt_in`` | ``opt_out`` (``opt-in`` / ``opt-out`` accepted)
``purpose``       ``any`` | ``training`` | ``commercial_training`` | ``style_imitation``
``effective_at``  ISO 8601 date or date-time; without an offset it is read as UTC
``evidence``      free text (optional): where the statement came from

Every row is parsed before anything else happens; the first problem raises
:class:`ConsentImportError` whose message is one line naming the line of the
file (``line 4: bad effective_at '2024-13-01': expected ISO 8601``). In JSON the
line is where the offending object starts. Each row's content is its dedupe
key, so recording the same file twice adds nothing
(:func:`provenance.consent_sync.import_consent_file`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provenance.consent import SUBJECT_KINDS
from provenance.consent_terms import parse_effective_at
from provenance.hashing import sha256_bytes
from provenance.models.rights import CONSENT_ACTIONS, CONSENT_PURPOSES

COLUMNS = ("subject_kind", "subject", "action", "purpose", "effective_at", "evidence")
REQUIRED = COLUMNS[:-1]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ConsentImportError(ValueError):
    """A consent file that cannot be imported; ``line`` is the 1-based line at fault."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True)
class ConsentRow:
    line: int
    subject_kind: str
    subject: str
    action: str
    purpose: str
    effective_at: dt.datetime
    evidence: str | None

    def dedupe_key(self) -> str:
        body = "|".join(
            [
                "import_file",
                self.subject_kind,
                self.subject,
                self.action,
                self.purpose,
                self.effective_at.isoformat(),
                self.evidence or "",
            ]
        )
        return sha256_bytes(body.encode("utf-8"))


def _decode(data: bytes) -> str:
    for number, raw_line in enumerate(data.split(b"\n"), start=1):
        try:
            raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConsentImportError(number, f"not valid UTF-8 (byte {exc.start + 1})") from None
    return data.decode("utf-8-sig")


def _row(line: int, fields: dict[str, Any]) -> ConsentRow:
    def text(key: str, *, required: bool = True) -> str:
        value = fields.get(key)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ConsentImportError(line, f"{key} must be text, got {value!r}")
        value = value.strip()
        if required and not value:
            raise ConsentImportError(line, f"empty {key}")
        return value

    kind = text("subject_kind").lower()
    if kind not in SUBJECT_KINDS:
        raise ConsentImportError(
            line, f"bad subject_kind {kind!r}: expected one of {', '.join(SUBJECT_KINDS)}"
        )
    subject = text("subject")
    action = text("action").lower().replace("-", "_")
    if action not in CONSENT_ACTIONS:
        raise ConsentImportError(
            line, f"bad action {action!r}: expected one of {', '.join(CONSENT_ACTIONS)}"
        )
    purpose = text("purpose").lower()
    if purpose not in CONSENT_PURPOSES:
        raise ConsentImportError(
            line, f"bad purpose {purpose!r}: expected one of {', '.join(CONSENT_PURPOSES)}"
        )
    raw_time = text("effective_at")
    try:
        effective_at = parse_effective_at(raw_time)
    except ValueError:
        raise ConsentImportError(
            line, f"bad effective_at {raw_time!r}: expected ISO 8601"
        ) from None
    if kind == "recording":
        subject = subject.lower()
        if not _SHA256.match(subject):
            raise ConsentImportError(
                line, f"bad recording subject {subject!r}: expected a sha256 (64 hex digits)"
            )
    evidence = text("evidence", required=False) or None
    return ConsentRow(line, kind, subject, action, purpose, effective_at, evidence)


def _parse_csv(text: str) -> list[ConsentRow]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ConsentImportError(
            1, "empty file: expected the header " + ",".join(COLUMNS)
        ) from None
    except csv.Error as exc:
        raise ConsentImportError(1, f"malformed CSV: {exc}") from None
    names = [h.strip().lower() for h in header]
    if sorted(names) != sorted(COLUMNS):
        missing = [c for c in COLUMNS if c not in names]
        extra = [n for n in names if n not in COLUMNS]
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unexpected {', '.join(repr(e) for e in extra)}" if extra else "",
                "duplicate columns" if not missing and not extra else "",
            )
            if part
        )
        raise ConsentImportError(1, f"wrong columns ({detail}): expected {','.join(COLUMNS)}")
    rows = []
    try:
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue  # blank line
            if len(values) != len(names):
                raise ConsentImportError(line, f"expected {len(names)} fields, got {len(values)}")
            rows.append(_row(line, dict(zip(names, values, strict=True))))
    except csv.Error as exc:
        raise ConsentImportError(reader.line_num, f"malformed CSV: {exc}") from None
    if not rows:
        raise ConsentImportError(1, "no consent rows after the header")
    return rows


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _parse_json(text: str) -> list[ConsentRow]:
    decoder = json.JSONDecoder()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConsentImportError(exc.lineno, f"not valid JSON: {exc.msg}") from None
    if not isinstance(document, list):
        raise ConsentImportError(1, "expected a JSON list of consent objects")
    if not document:
        raise ConsentImportError(_line_of(text, len(text.rstrip())), "empty list: no consent rows")
    # Walk the array again to learn the line each element starts on.
    index = text.index("[") + 1
    rows = []
    for position, _ in enumerate(document):
        while text[index] in " \t\r\n,":
            index += 1
        line = _line_of(text, index)
        item, index = decoder.raw_decode(text, index)
        if not isinstance(item, dict):
            raise ConsentImportError(line, f"item {position + 1} is not an object")
        keys = set(item)
        missing = [c for c in REQUIRED if c not in keys]
        extra = sorted(keys - set(COLUMNS))
        if missing or extra:
            detail = "; ".join(
                p
                for p in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"unexpected {', '.join(repr(e) for e in extra)}" if extra else "",
                )
                if p
            )
            raise ConsentImportError(line, f"wrong keys ({detail}): expected {','.join(COLUMNS)}")
        rows.append(_row(line, item))
    return rows


def parse_statement_file(path: str | Path) -> list[ConsentRow]:
    """Parse and validate a CSV or JSON consent file (no database access)."""
    path = Path(path)
    data = path.read_bytes()
    text = _decode(data)
    if not text.strip():
        raise ConsentImportError(1, "empty file: expected the header " + ",".join(COLUMNS))
    is_json = path.suffix.lower() == ".json" or (
        path.suffix.lower() != ".csv" and text.lstrip().startswith("[")
    )
    return _parse_json(text) if is_json else _parse_csv(text)
