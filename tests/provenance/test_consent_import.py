"""Consent import files: good files import, malformed ones fail whole with a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provenance.consent import ConsentSubject, current_consent
from provenance.consent_statements import ConsentImportError, parse_statement_file
from provenance.consent_sync import import_consent_file
from provenance.models import AuditEvent, ConsentEvent, Recording, Source
from provenance.parties import get_or_create_party

HEADER = "subject_kind,subject,action,purpose,effective_at,evidence\n"
SHA = "ab" * 32


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


GOOD_CSV = HEADER + (
    "party,Zoë Keating,opt_out,training,2025-01-01T00:00:00Z,email 2025-01-01\n"
    "party,zoe keating,opt-in,style_imitation,2025-02-01,\n"
    f"recording,{SHA.upper()},opt_in,any,2025-01-02T10:00:00+02:00,\n"
    "source,https://example.org/label,opt_out,commercial_training,2025-01-03 12:00,tdm\n"
)

# (file name, content, expected message) — parse-time errors, no database needed.
MALFORMED: list[tuple[str, str | bytes, str]] = [
    ("empty.csv", "", "line 1: empty file: expected the header"),
    ("blank.csv", "\n\n  \n", "line 1: empty file"),
    ("header-only.csv", HEADER, "line 1: no consent rows after the header"),
    (
        "wrong-columns.csv",
        "kind,subject,action,purpose,when\nparty,x,opt_out,any,2025-01-01\n",
        "line 1: wrong columns (missing subject_kind, effective_at, evidence; "
        "unexpected 'kind', 'when')",
    ),
    (
        "extra-column.csv",
        HEADER.strip() + ",note\nparty,x,opt_out,any,2025-01-01,,n\n",
        "line 1: wrong columns (unexpected 'note')",
    ),
    (
        "bad-date.csv",
        HEADER
        + "party,A,opt_out,any,2025-01-01,\nparty,B,opt_out,any,2025-01-01,\n"
        + "party,C,opt_out,any,2024-13-01,\n",
        "line 4: bad effective_at '2024-13-01': expected ISO 8601",
    ),
    (
        "words-date.csv",
        HEADER + "party,A,opt_out,any,last tuesday,\n",
        "line 2: bad effective_at 'last tuesday': expected ISO 8601",
    ),
    (
        "empty-date.csv",
        HEADER + "party,A,opt_out,any,,\n",
        "line 2: empty effective_at",
    ),
    (
        "bad-action.csv",
        HEADER + "party,A,withdraw,any,2025-01-01,\n",
        "line 2: bad action 'withdraw': expected one of opt_in, opt_out",
    ),
    (
        "bad-purpose.csv",
        HEADER + "party,A,opt_out,remixing,2025-01-01,\n",
        "line 2: bad purpose 'remixing': expected one of any, training, commercial_training",
    ),
    (
        "bad-kind.csv",
        HEADER + "label,A,opt_out,any,2025-01-01,\n",
        "line 2: bad subject_kind 'label': expected one of party, recording, source",
    ),
    (
        "bad-sha.csv",
        HEADER + "recording,abc123,opt_out,any,2025-01-01,\n",
        "line 2: bad recording subject 'abc123': expected a sha256",
    ),
    (
        "short-row.csv",
        HEADER + "party,A,opt_out,any,2025-01-01,\nparty,A,opt_out\n",
        "line 3: expected 6 fields, got 3",
    ),
    (
        "not-utf8.csv",
        (HEADER + "party,A,opt_out,any,2025-01-01,\n").encode()
        + "party,Zoë,opt_out,any,2025-01-01,\n".encode("latin-1"),
        "line 3: not valid UTF-8",
    ),
    ("not-utf8-header.csv", b"\xff\xfesubject_kind\n", "line 1: not valid UTF-8"),
    ("broken.json", '[\n  {"subject_kind": "party",\n', "line 3: not valid JSON"),
    ("object.json", '{"subject_kind": "party"}', "line 1: expected a JSON list"),
    ("empty-list.json", "[\n]\n", "line 2: empty list: no consent rows"),
    (
        "json-missing-key.json",
        json.dumps(
            [
                {
                    "subject_kind": "party",
                    "subject": "A",
                    "action": "opt_out",
                    "purpose": "any",
                    "effective_at": "2025-01-01",
                },
                {"subject_kind": "party", "subject": "B", "action": "opt_out", "purpose": "any"},
            ],
            indent=2,
        ),
        "line 9: wrong keys (missing effective_at)",
    ),
    (
        "json-bad-date.json",
        '[{"subject_kind": "party", "subject": "A", "action": "opt_out",\n'
        '  "purpose": "any", "effective_at": "2025-01-01"},\n'
        ' {"subject_kind": "party", "subject": "A", "action": "opt_out",\n'
        '  "purpose": "any", "effective_at": "01/02/2025"}]',
        "line 3: bad effective_at '01/02/2025': expected ISO 8601",
    ),
    (
        "json-not-object.json",
        '[\n  "party,A,opt_out"\n]',
        "line 2: item 1 is not an object",
    ),
    (
        "json-number.json",
        '[{"subject_kind": "party", "subject": 7, "action": "opt_out", "purpose": "any",'
        ' "effective_at": "2025-01-01"}]',
        "line 1: subject must be text, got 7",
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_files_give_one_line_errors(
    tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    with pytest.raises(ConsentImportError) as info:
        parse_statement_file(write(tmp_path, name, content))
    text = str(info.value)
    assert text.startswith(message), text
    assert "\n" not in text
    assert text.startswith(f"line {info.value.line}: ")


def test_good_csv_parses(tmp_path: Path) -> None:
    rows = parse_statement_file(write(tmp_path, "good.csv", GOOD_CSV))
    assert [r.line for r in rows] == [2, 3, 4, 5]
    assert [r.action for r in rows] == ["opt_out", "opt_in", "opt_in", "opt_out"]
    assert rows[2].subject == SHA  # lower-cased
    assert rows[2].effective_at.isoformat() == "2025-01-02T08:00:00+00:00"
    assert rows[1].effective_at.isoformat() == "2025-02-01T00:00:00+00:00"  # date → UTC midnight
    assert rows[1].evidence is None and rows[0].evidence == "email 2025-01-01"


def _world(session: Session) -> None:
    get_or_create_party(session, "Zoë Keating")
    session.add(Recording(sha256=SHA, size_bytes=1))
    session.add(Source(uri="https://example.org/label", kind="manifest"))
    session.flush()


def _counts(session: Session) -> tuple[int, int]:
    return (
        session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one(),
        session.execute(select(func.count()).select_from(AuditEvent)).scalar_one(),
    )


def test_import_is_all_or_nothing_and_idempotent(session: Session, tmp_path: Path) -> None:
    _world(session)
    before = _counts(session)

    unknown = [
        ("party,Nobody Known,opt_out,any,2025-01-01,\n", "unknown party 'Nobody Known'"),
        (f"recording,{'cd' * 32},opt_out,any,2025-01-01,\n", f"unknown recording '{'cd' * 32}'"),
        ("source,https://nowhere.example,opt_out,any,2025-01-01,\n", "unknown source"),
    ]
    for row, message in unknown:
        path = write(tmp_path, "unknown.csv", GOOD_CSV + row)
        with pytest.raises(ConsentImportError, match=f"^line 6: {message}"):
            import_consent_file(session, path)
        assert _counts(session) == before  # nothing partial

    result = import_consent_file(session, write(tmp_path, "good.csv", GOOD_CSV))
    assert (result.rows, result.recorded, result.already_recorded) == (4, 4, 0)
    assert _counts(session) == (before[0] + 4, before[1] + 4)
    events = session.execute(select(ConsentEvent).order_by(ConsentEvent.id)).scalars().all()
    assert {e.origin for e in events} == {"import_file"}
    assert events[1].evidence == "good.csv:3"  # no evidence column value → file and line

    again = import_consent_file(session, write(tmp_path, "good.csv", GOOD_CSV))
    assert (again.recorded, again.already_recorded) == (0, 4)

    # The same statements as JSON are the same statements: nothing new.
    rows = [
        dict(zip(HEADER.strip().split(","), line.split(","), strict=True))
        for line in GOOD_CSV.splitlines()[1:]
    ]
    as_json = import_consent_file(session, write(tmp_path, "good.json", json.dumps(rows)))
    assert (as_json.recorded, as_json.already_recorded) == (0, 4)

    party = get_or_create_party(session, "Zoe Keating")
    state = current_consent(session, ConsentSubject("party", party.id), "training")
    assert state.state == "opted_out"
