"""SPDX licence conclusions: edge cases, and recording assertions."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provenance.licences import (
    conclude_licence,
    current_licence,
    licence_obligations,
    record_licence,
)
from provenance.models import AuditEvent, LicenceAssertion, Recording

# declared -> (concluded, reason fragment or None when the conclusion has no reason)
CASES: list[tuple[str | None, str, str | None]] = [
    ("MIT", "MIT", None),
    ("mit", "MIT", None),
    ("cc-by-sa-3.0", "CC-BY-SA-3.0", None),
    ("  CC-BY-4.0  ", "CC-BY-4.0", None),
    # deprecated ids and the + operator
    ("GPL-2.0+", "GPL-2.0-or-later", None),
    ("gpl-2.0+", "GPL-2.0-or-later", None),
    ("GPL-2.0", "GPL-2.0-only", None),
    ("Apache-2.0+", "Apache-2.0+", None),
    # compound expressions, operators in any case
    ("MIT AND BSD-3-Clause", "MIT AND BSD-3-Clause", None),
    ("MIT or Apache-2.0", "MIT OR Apache-2.0", None),
    ("MIT AND (Apache-2.0 OR BSD-3-Clause)", "MIT AND (Apache-2.0 OR BSD-3-Clause)", None),
    (
        "GPL-2.0-or-later WITH Classpath-exception-2.0",
        "GPL-2.0-or-later WITH Classpath-exception-2.0",
        None,
    ),
    # LicenseRef ids are kept as written
    ("LicenseRef-Drascula", "LicenseRef-Drascula", None),
    (
        "LicenseRef-Essen-NonCommercial OR CC-BY-4.0",
        "LicenseRef-Essen-NonCommercial OR CC-BY-4.0",
        None,
    ),
    ("DocumentRef-spdx-tool:LicenseRef-x.1", "DocumentRef-spdx-tool:LicenseRef-x.1", None),
    # NOASSERTION / NONE
    ("NOASSERTION", "NOASSERTION", "declared NOASSERTION"),
    ("noassertion", "NOASSERTION", "declared NOASSERTION"),
    ("MIT AND NOASSERTION", "NOASSERTION", "inside a compound expression"),
    ("NONE", "NONE", "no licence granted"),
    # missing / garbage: kept as asserted, concluded NOASSERTION with the reason
    (None, "NOASSERTION", "no licence declared"),
    ("", "NOASSERTION", "no licence declared"),
    ("   ", "NOASSERTION", "no licence declared"),
    ("garbage licence", "NOASSERTION", "unknown licence id 'garbage licence'"),
    ("Creative Commons", "NOASSERTION", "unknown licence id"),
    ("MIT AND", "NOASSERTION", "unparseable SPDX expression"),
    ("MIT OR", "NOASSERTION", "ends with 'OR'"),
    ("(MIT", "NOASSERTION", "unparseable SPDX expression"),
    ("MIT)", "NOASSERTION", "unparseable SPDX expression"),
    ("()", "NOASSERTION", "unparseable SPDX expression"),
    ("MIT, BSD-3-Clause", "NOASSERTION", "unparseable SPDX expression"),
    ("MIT WITH Foo", "NOASSERTION", "unparseable SPDX expression"),
    ("Foo WITH Classpath-exception-2.0", "NOASSERTION", "unknown licence id 'Foo'"),
    ("MIT AND Made-Up-1.0", "NOASSERTION", "unknown licence id 'Made-Up-1.0'"),
    ("LicenseRef-has space", "NOASSERTION", "unknown licence id"),
    ("MIT AND AND BSD-3-Clause", "NOASSERTION", "unparseable SPDX expression"),
    ("\x00\xff", "NOASSERTION", None),
]


@pytest.mark.parametrize(("declared", "concluded", "reason"), CASES, ids=repr)
def test_conclude_licence(declared: str | None, concluded: str, reason: str | None) -> None:
    result = conclude_licence(declared)
    assert result.concluded == concluded
    assert result.declared == ("" if declared is None else declared.strip())
    if concluded == "NOASSERTION":
        assert result.reason  # never silent
    if reason is not None:
        assert result.reason is not None and reason in result.reason
    elif concluded != "NOASSERTION":
        assert result.reason is None


def test_conclusion_reason_is_one_line() -> None:
    for declared, _, _ in CASES:
        reason = conclude_licence(declared).reason
        assert reason is None or "\n" not in reason


def test_obligations() -> None:
    assert licence_obligations("CC-BY-SA-3.0") == {"attribution", "share_alike"}
    assert licence_obligations("CC-BY-4.0") == {"attribution"}
    assert licence_obligations("GPL-2.0-or-later") == {"attribution", "share_alike"}
    assert licence_obligations("CC0-1.0") == frozenset()
    assert licence_obligations("LicenseRef-Drascula") == frozenset()


def test_record_and_current_licence(session: Session) -> None:
    rec = Recording(sha256="c" * 64, size_bytes=1)
    session.add(rec)
    session.flush()
    assert current_licence(session, rec.id) is None
    audit_rows = select(func.count()).select_from(AuditEvent)

    first = record_licence(
        session, recording_id=rec.id, declared="gpl-2.0+", asserted_by="debian/copyright"
    )
    assert (first.declared, first.concluded, first.conclusion_reason) == (
        "gpl-2.0+",
        "GPL-2.0-or-later",
        None,
    )
    assert session.execute(audit_rows).scalar_one() == 1
    # The same statement again writes nothing.
    again = record_licence(
        session, recording_id=rec.id, declared="gpl-2.0+", asserted_by="debian/copyright"
    )
    assert again.id == first.id
    assert session.execute(audit_rows).scalar_one() == 1

    garbage = record_licence(session, recording_id=rec.id, declared="free-ish?", asserted_by="tags")
    assert garbage.declared == "free-ish?"
    assert garbage.concluded == "NOASSERTION"
    assert garbage.conclusion_reason and "free-ish?" in garbage.conclusion_reason
    assert current_licence(session, rec.id) == garbage
    assert session.execute(audit_rows).scalar_one() == 2
    n_assertions = select(func.count()).select_from(LicenceAssertion)
    assert session.execute(n_assertions).scalar_one() == 2

    # At a time before any assertion there is none in force.
    assert current_licence(session, rec.id, at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) is None
