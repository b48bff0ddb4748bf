"""SPDX licence conclusions: edge cases, and recording assertions."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provenance.licences import (
    LICENCE_RULES,
    SPDX_DEPRECATED_IDS,
    conclude_licence,
    current_licence,
    licence_obligations,
    parse_concluded,
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
    ("GPL-2.0+", "GPL-2.0-or-later", "rule spdx-deprecated-id: 'GPL-2.0+' → GPL-2.0-or-later"),
    ("gpl-2.0+", "GPL-2.0-or-later", "rule spdx-deprecated-id"),
    ("GPL-2.0", "GPL-2.0-only", "rule spdx-deprecated-id: 'GPL-2.0' → GPL-2.0-only"),
    ("LGPL-2.1+", "LGPL-2.1-or-later", "rule spdx-deprecated-id"),
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
    # family names: which version, which variant? never guessed
    ("GPL", "NOASSERTION", "ambiguous licence name 'GPL'"),
    ("gpl", "NOASSERTION", "ambiguous licence name 'gpl'"),
    ("GPL+", "NOASSERTION", "ambiguous licence name"),
    ("BSD", "NOASSERTION", "ambiguous licence name 'BSD'"),
    ("LGPL", "NOASSERTION", "ambiguous licence name 'LGPL'"),
    ("CC-BY", "NOASSERTION", "ambiguous licence name 'CC-BY'"),
    ("CC-BY-SA", "NOASSERTION", "ambiguous licence name 'CC-BY-SA'"),
    ("Creative Commons", "NOASSERTION", "ambiguous licence name 'Creative Commons'"),
    ("creative   commons", "NOASSERTION", "ambiguous licence name"),
    ("MIT OR GPL", "NOASSERTION", "ambiguous licence name 'GPL'"),
    ("GPL WITH Classpath-exception-2.0", "NOASSERTION", "ambiguous licence name 'GPL'"),
    ("GPL 2.0", "NOASSERTION", "unknown licence id 'GPL 2.0'"),
    ("GPLv2", "NOASSERTION", "unknown licence id 'GPLv2'"),
    # explicit rules (Debian short names), each named in the reason
    ("GPL-2+", "GPL-2.0-or-later", "rule debian-short-name:GPL-2+: 'GPL-2+' → GPL-2.0-or-later"),
    ("GPL-2", "GPL-2.0-only", "rule debian-short-name:GPL-2: 'GPL-2' → GPL-2.0-only"),
    ("gpl-3+", "GPL-3.0-or-later", "rule debian-short-name:GPL-3+"),
    (
        "Expat OR GPL-2+",
        "MIT OR GPL-2.0-or-later",
        "rule debian-short-name:Expat: 'Expat' → MIT; rule debian-short-name:GPL-2+",
    ),
    # a licence database alias of a listed id is still a LicenseRef, kept as written
    ("LicenseRef-MIT-Bootstrap", "LicenseRef-MIT-Bootstrap", None),
    ("Classpath-exception-2.0", "NOASSERTION", "unparseable SPDX expression"),
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
        "rule spdx-deprecated-id: 'gpl-2.0+' → GPL-2.0-or-later",
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


def test_every_rule_concludes_a_listed_id() -> None:
    """The rule tables map to current SPDX ids, and their names are what the reason says."""
    for spelling, target in SPDX_DEPRECATED_IDS.items():
        result = conclude_licence(spelling)
        assert result.concluded == target
        assert result.reason == f"rule spdx-deprecated-id: {spelling!r} → {target}"
        assert conclude_licence(target) == type(result)(target, target, None)
    for rule in LICENCE_RULES:
        for spelling in rule.spellings:
            result = conclude_licence(spelling)
            assert result.concluded == rule.concluded
            assert result.reason == f"rule {rule.name}: {spelling!r} → {rule.concluded}"
            assert conclude_licence(rule.concluded).reason is None


def test_parse_concluded_keeps_licence_refs() -> None:
    """A LicenseRef that a licence database calls an alias of MIT stays that LicenseRef."""
    tree = parse_concluded("LicenseRef-MIT-Bootstrap OR Apache-2.0+")
    assert [arg.key for arg in tree.args] == ["LicenseRef-MIT-Bootstrap", "Apache-2.0+"]


def test_recorded_assertion_names_the_rule_or_the_ambiguity(session: Session) -> None:
    rec = Recording(sha256="d" * 64, size_bytes=1)
    session.add(rec)
    session.flush()
    ambiguous = record_licence(session, recording_id=rec.id, declared="GPL", asserted_by="tags")
    assert (ambiguous.declared, ambiguous.concluded) == ("GPL", "NOASSERTION")
    assert ambiguous.conclusion_reason is not None
    assert "ambiguous licence name 'GPL'" in ambiguous.conclusion_reason
    mapped = record_licence(session, recording_id=rec.id, declared="GPL-2+", asserted_by="tags")
    assert mapped.concluded == "GPL-2.0-or-later"
    assert mapped.conclusion_reason == "rule debian-short-name:GPL-2+: 'GPL-2+' → GPL-2.0-or-later"
    event = (
        session.execute(
            select(AuditEvent)
            .where(AuditEvent.action == "licence.asserted")
            .order_by(AuditEvent.id.desc())
        )
        .scalars()
        .first()
    )
    assert event is not None and "debian-short-name:GPL-2+" in event.payload
