"""SPDX licence expressions: conclude what a declared licence string means, and record it.

:func:`conclude_licence` parses with the ``license-expression`` library's SPDX
licensing and never raises. The concluded expression is the library's
normalised form, so ``gpl-2.0+`` concludes ``GPL-2.0-or-later`` and deprecated
``GPL-2.0`` concludes ``GPL-2.0-only``. The rules:

* ``AND``, ``OR``, ``WITH`` and parentheses are kept; operators may be any case.
* ``LicenseRef-…`` (and ``DocumentRef-…:LicenseRef-…``) ids are kept as written.
* ``<id>+`` on a listed id without an ``-or-later`` form (``Apache-2.0+``) is kept.
* ``NOASSERTION`` concludes ``NOASSERTION``; so does an expression mixing it with
  other ids (SPDX allows it only on its own). ``NONE`` concludes ``NONE``.
* Empty/missing, unparseable, or naming an id that is neither on the SPDX list
  nor a ``LicenseRef-`` → concluded ``NOASSERTION`` with the reason; the
  declared string is stored exactly as given. Nothing is guessed.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from dataclasses import dataclass
from typing import Any

from license_expression import (
    LicenseSymbol,
    LicenseWithExceptionSymbol,
    Licensing,
    get_spdx_licensing,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit_log import append_event
from provenance.models import LicenceAssertion

logger = logging.getLogger(__name__)

NOASSERTION = "NOASSERTION"
NONE = "NONE"
_TRAILING_OPERATOR = re.compile(r"(?:^|[\s)])(AND|OR|WITH)\s*$", re.IGNORECASE)
_REF = re.compile(r"^(DocumentRef-[A-Za-z0-9.\-]+:)?LicenseRef-[A-Za-z0-9.\-]+$")


@dataclass(frozen=True)
class LicenceConclusion:
    declared: str
    concluded: str
    reason: str | None = None


@functools.cache
def spdx_licensing() -> Licensing:
    """The SPDX licensing (licence and exception ids), built once per process."""
    return get_spdx_licensing()


def _symbol_problem(key: str, *, exception: bool) -> str | None:
    """Why ``key`` is not a usable id, or None when it is."""
    known = spdx_licensing().known_symbols.get(key)
    if known is not None and bool(getattr(known, "is_exception", False)) == exception:
        return None
    if exception:
        return f"unknown licence exception {key!r}"
    if _REF.match(key):
        return None
    if key.endswith("+"):
        base = spdx_licensing().known_symbols.get(key[:-1])
        if base is not None and not getattr(base, "is_exception", False):
            return None
    return f"unknown licence id {key!r}"


def _problems(node: Any) -> list[str]:
    if isinstance(node, LicenseWithExceptionSymbol):
        problems: list[str] = []
        lic = _symbol_problem(node.license_symbol.key, exception=False)
        exc = _symbol_problem(node.exception_symbol.key, exception=True)
        problems.extend(p for p in (lic, exc) if p)
        return problems
    if isinstance(node, LicenseSymbol):
        problem = _symbol_problem(node.key, exception=False)
        return [problem] if problem else []
    return [p for arg in node.args for p in _problems(arg)]


def licence_symbols(expression: Any) -> list[str]:
    """The licence keys named in a parsed expression (exceptions excluded)."""
    if isinstance(expression, LicenseWithExceptionSymbol):
        return [expression.license_symbol.key]
    if isinstance(expression, LicenseSymbol):
        return [expression.key]
    return [k for arg in expression.args for k in licence_symbols(arg)]


def conclude_licence(declared: str | None) -> LicenceConclusion:
    """What ``declared`` concludes to (see the module docstring). Never raises."""
    text = "" if declared is None else declared.strip()
    if not text:
        return LicenceConclusion("", NOASSERTION, "no licence declared")
    if text.upper() == NOASSERTION:
        return LicenceConclusion(text, NOASSERTION, "declared NOASSERTION")
    if text.upper() == NONE:
        return LicenceConclusion(text, NONE, "declared NONE: no licence granted")
    trailing = _TRAILING_OPERATOR.search(text)
    if trailing:
        # The library silently drops a dangling final operator; that would be a guess.
        return LicenceConclusion(
            text, NOASSERTION, f"unparseable SPDX expression: ends with {trailing.group(1)!r}"
        )
    try:
        parsed = spdx_licensing().parse(text, validate=False, strict=True, simple=False)
    except Exception as exc:  # the library raises several types (and AttributeError) on junk
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return LicenceConclusion(text, NOASSERTION, f"unparseable SPDX expression: {detail}")
    if parsed is None:
        return LicenceConclusion(text, NOASSERTION, "no licence declared")
    keys = licence_symbols(parsed)
    if any(k.upper() in (NOASSERTION, NONE) for k in keys):
        return LicenceConclusion(text, NOASSERTION, "NOASSERTION/NONE inside a compound expression")
    problems = _problems(parsed)
    if problems:
        return LicenceConclusion(text, NOASSERTION, "; ".join(dict.fromkeys(problems)))
    return LicenceConclusion(text, str(parsed))


def parse_concluded(concluded: str) -> Any:
    """Parse an already concluded expression (valid by construction) into its tree."""
    return spdx_licensing().parse(concluded, validate=False, strict=True, simple=False)


# Obligations a licence id carries. Prefix matches on SPDX ids; LicenseRef-* unknown.
_ATTRIBUTION = re.compile(
    r"^(CC-BY|GPL|LGPL|AGPL|MPL|EPL|MIT|BSD|Apache|OFL|Artistic|ISC|Zlib|Ms-PL)", re.IGNORECASE
)
_SHARE_ALIKE = re.compile(r"^(CC-BY(-NC)?-SA|GPL|LGPL|AGPL|MPL|EPL|OFL)", re.IGNORECASE)


def licence_obligations(licence_id: str) -> frozenset[str]:
    """``{"attribution", "share_alike"}`` subset that using ``licence_id`` brings with it."""
    found = set()
    if _ATTRIBUTION.match(licence_id):
        found.add("attribution")
    if _SHARE_ALIKE.match(licence_id):
        found.add("share_alike")
    return frozenset(found)


def current_licence(
    session: Session, recording_id: int, *, at: dt.datetime | None = None
) -> LicenceAssertion | None:
    """The assertion in force for ``recording_id``: the newest (asserted no later than ``at``)."""
    query = select(LicenceAssertion).where(LicenceAssertion.recording_id == recording_id)
    if at is not None:
        query = query.where(LicenceAssertion.asserted_at <= at)
    return session.execute(
        query.order_by(LicenceAssertion.asserted_at.desc(), LicenceAssertion.id.desc()).limit(1)
    ).scalar_one_or_none()


def record_licence(
    session: Session,
    *,
    recording_id: int,
    declared: str | None,
    asserted_by: str,
    fact_source: str | None = None,
    evidence_uri: str | None = None,
    evidence_sha256: str | None = None,
) -> LicenceAssertion:
    """Record what ``asserted_by`` says the licence of ``recording_id`` is.

    The conclusion comes from :func:`conclude_licence`. When the newest
    assertion already says the same thing (declared, concluded, asserter and
    evidence), it is returned and nothing is written. Otherwise a new assertion
    and a ``licence.asserted`` audit event are written; never commits.
    """
    conclusion = conclude_licence(declared)
    newest = current_licence(session, recording_id)
    if (
        newest is not None
        and newest.declared == conclusion.declared
        and newest.concluded == conclusion.concluded
        and newest.asserted_by == asserted_by
        and newest.evidence_uri == evidence_uri
        and newest.evidence_sha256 == evidence_sha256
    ):
        return newest
    assertion = LicenceAssertion(
        recording_id=recording_id,
        declared=conclusion.declared,
        concluded=conclusion.concluded,
        conclusion_reason=conclusion.reason,
        asserted_by=asserted_by,
        fact_source=fact_source,
        evidence_uri=evidence_uri,
        evidence_sha256=evidence_sha256,
    )
    session.add(assertion)
    session.flush()
    if conclusion.reason and conclusion.concluded == NOASSERTION:
        logger.info(
            "recording %s: licence %r → NOASSERTION (%s)", recording_id, declared, conclusion.reason
        )
    append_event(
        session,
        "licence.asserted",
        entity="recording",
        entity_id=recording_id,
        payload={
            "assertion_id": assertion.id,
            "declared": conclusion.declared,
            "concluded": conclusion.concluded,
            "reason": conclusion.reason,
            "asserted_by": asserted_by,
            "fact_source": fact_source,
            "evidence_uri": evidence_uri,
            "evidence_sha256": evidence_sha256,
        },
    )
    return assertion
