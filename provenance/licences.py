"""SPDX licence expressions: conclude what a declared licence string means, and record it.

:func:`conclude_licence` never raises and never guesses. Every licence id in
the declared string is checked *as written* (SPDX ids are case-insensitive):

* A current SPDX licence or exception id concludes its canonical spelling
  (``mit`` → ``MIT``). ``AND``, ``OR``, ``WITH`` and parentheses are kept and
  their case normalised.
* ``LicenseRef-…`` (and ``DocumentRef-…:LicenseRef-…``) ids are kept exactly as
  written, even where a licence database knows them as an alias of a listed id.
* ``<id>+`` on a listed id without an ``-or-later`` form (``Apache-2.0+``) is kept.
* A deprecated SPDX id is replaced by the id SPDX names for it, by the rule
  ``spdx-deprecated-id`` (``GPL-2.0+`` → ``GPL-2.0-or-later``).
* A name from :data:`LICENCE_RULES`, an explicit table of spellings that are
  not SPDX ids but have exactly one meaning (the short names of Debian's
  machine-readable copyright format: ``GPL-2+`` → ``GPL-2.0-or-later``,
  ``Expat`` → ``MIT``), is replaced by the rule's id.
* Anything else concludes ``NOASSERTION`` with the reason: a family name with
  several members (``GPL``, ``BSD``, ``LGPL``, ``CC-BY``, ``Creative Commons``:
  which version? only or or-later? which clauses?), an unknown id, or an
  expression that does not parse. The declared string is stored as given.
* ``NOASSERTION`` concludes ``NOASSERTION``; so does an expression mixing it
  with other ids (SPDX allows it only on its own). ``NONE`` concludes ``NONE``.

Each rule applied is named in the conclusion's reason (``rule <name>: '<as
written>' → <id>``), which :func:`record_licence` stores in
``licence_assertions.conclusion_reason``, so a reviewer sees why a string that
is not an SPDX id was given one.
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
_WITH = re.compile(r"\s+WITH\s+", re.IGNORECASE)
_REF = re.compile(r"^(DocumentRef-[A-Za-z0-9.\-]+:)?LicenseRef-[A-Za-z0-9.\-]+$")


@dataclass(frozen=True)
class LicenceRule:
    """An explicit mapping of spellings that are not SPDX ids to the one id they mean."""

    name: str
    spellings: tuple[str, ...]  # matched case-insensitively, each a whole licence id token
    concluded: str
    basis: str  # where the meaning is defined


_DEP5 = "Debian copyright-format 1.0, 'License short name' (N+ = version N or any later)"

# The deprecated ids of the SPDX licence list whose replacement is a single id.
SPDX_DEPRECATED_IDS: dict[str, str] = {
    "AGPL-1.0": "AGPL-1.0-only",
    "AGPL-3.0": "AGPL-3.0-only",
    "BSD-2-Clause-FreeBSD": "BSD-2-Clause-Views",
    "BSD-2-Clause-NetBSD": "BSD-2-Clause",
    "bzip2-1.0.5": "bzip2-1.0.6",
    "GFDL-1.1": "GFDL-1.1-only",
    "GFDL-1.2": "GFDL-1.2-only",
    "GFDL-1.3": "GFDL-1.3-only",
    "GPL-1.0": "GPL-1.0-only",
    "GPL-1.0+": "GPL-1.0-or-later",
    "GPL-2.0": "GPL-2.0-only",
    "GPL-2.0+": "GPL-2.0-or-later",
    "GPL-3.0": "GPL-3.0-only",
    "GPL-3.0+": "GPL-3.0-or-later",
    "LGPL-2.0": "LGPL-2.0-only",
    "LGPL-2.0+": "LGPL-2.0-or-later",
    "LGPL-2.1": "LGPL-2.1-only",
    "LGPL-2.1+": "LGPL-2.1-or-later",
    "LGPL-3.0": "LGPL-3.0-only",
    "LGPL-3.0+": "LGPL-3.0-or-later",
    "Nunit": "zlib-acknowledgement",
    "StandardML-NJ": "SMLNJ",
}


def _dep5(short: str, spdx_base: str) -> tuple[LicenceRule, LicenceRule]:
    return (
        LicenceRule(f"debian-short-name:{short}", (short,), f"{spdx_base}-only", _DEP5),
        LicenceRule(f"debian-short-name:{short}+", (f"{short}+",), f"{spdx_base}-or-later", _DEP5),
    )


# Spellings with one documented meaning. Extend only with a spelling whose meaning is
# fixed by a published definition (name it in ``basis``); never with a family name.
LICENCE_RULES: tuple[LicenceRule, ...] = (
    *_dep5("GPL-1", "GPL-1.0"),
    *_dep5("GPL-2", "GPL-2.0"),
    *_dep5("GPL-3", "GPL-3.0"),
    *_dep5("LGPL-2", "LGPL-2.0"),
    *_dep5("LGPL-3", "LGPL-3.0"),
    *_dep5("AGPL-3", "AGPL-3.0"),
    LicenceRule("debian-short-name:Expat", ("Expat",), "MIT", _DEP5 + "; SPDX MIT is Expat"),
)

# Names of licence families: each stands for several licences, so none is concluded.
AMBIGUOUS_NAMES = frozenset(
    name.casefold()
    for name in (
        "GPL",
        "GNU GPL",
        "GPL+",
        "LGPL",
        "LGPL+",
        "AGPL",
        "GFDL",
        "BSD",
        "BSD-like",
        "BSD-style",
        "MIT-style",
        "MPL",
        "Apache",
        "Artistic",
        "CC",
        "CC-BY",
        "CC-BY-SA",
        "CC-BY-NC",
        "CC-BY-NC-SA",
        "CC-BY-ND",
        "CC-BY-NC-ND",
        "Creative Commons",
        "Creative Commons Attribution",
        "Creative Commons Attribution-ShareAlike",
        "Public Domain",
    )
)


@dataclass(frozen=True)
class LicenceConclusion:
    declared: str
    concluded: str
    reason: str | None = None


@functools.cache
def spdx_licensing() -> Licensing:
    """The SPDX licensing (licence and exception ids), built once per process."""
    return get_spdx_licensing()


@functools.cache
def _spdx_ids() -> tuple[dict[str, str], dict[str, str]]:
    """Current SPDX ``(licence ids, exception ids)``, each keyed by its casefolded spelling."""
    licences: dict[str, str] = {}
    exceptions: dict[str, str] = {}
    for key, symbol in spdx_licensing().known_symbols.items():
        if key.startswith("LicenseRef-"):
            continue
        target = exceptions if getattr(symbol, "is_exception", False) else licences
        target[key.casefold()] = key
    return licences, exceptions


@functools.cache
def _rule_index() -> dict[str, tuple[str, str]]:
    """Casefolded spelling → ``(rule name, concluded id)`` for every explicit rule."""
    index = {
        spelling.casefold(): ("spdx-deprecated-id", target)
        for spelling, target in SPDX_DEPRECATED_IDS.items()
    }
    for rule in LICENCE_RULES:
        for spelling in rule.spellings:
            index[spelling.casefold()] = (rule.name, rule.concluded)
    return index


def _resolve_id(written: str, *, exception: bool) -> tuple[str | None, str | None, str | None]:
    """``(id, rule note, problem)`` for one licence (or exception) id as written."""
    licences, exceptions = _spdx_ids()
    folded = written.casefold()
    if exception:
        if folded in exceptions:
            return exceptions[folded], None, None
        return None, None, f"unknown licence exception {written!r}"
    if written.upper() in (NOASSERTION, NONE):
        return None, None, "NOASSERTION/NONE inside a compound expression"
    if folded in licences:
        return licences[folded], None, None
    if _REF.match(written):
        return written, None, None
    rule = _rule_index().get(folded)
    if rule is not None:
        name, target = rule
        return target, f"rule {name}: {written!r} → {target}", None
    base = licences.get(folded[:-1]) if folded.endswith("+") else None
    if base is not None and not base.endswith(("-only", "-or-later")):
        return f"{base}+", None, None
    if folded in AMBIGUOUS_NAMES or folded.rstrip("+") in AMBIGUOUS_NAMES:
        return (
            None,
            None,
            f"ambiguous licence name {written!r}: a family of licences, not one SPDX id; "
            "not guessed",
        )
    return None, None, f"unknown licence id {written!r}"


def conclude_licence(declared: str | None) -> LicenceConclusion:
    """What ``declared`` concludes to (see the module docstring). Never raises."""
    text = "" if declared is None else declared.strip()
    if not text:
        return LicenceConclusion("", NOASSERTION, "no licence declared")
    if text.upper() == NOASSERTION:
        return LicenceConclusion(text, NOASSERTION, "declared NOASSERTION")
    if text.upper() == NONE:
        return LicenceConclusion(text, NONE, "declared NONE: no licence granted")
    if " ".join(text.split()).casefold() in AMBIGUOUS_NAMES:
        _, _, problem = _resolve_id(" ".join(text.split()), exception=False)
        return LicenceConclusion(text, NOASSERTION, problem)
    trailing = _TRAILING_OPERATOR.search(text)
    if trailing:
        # The library silently drops a dangling final operator; that would be a guess.
        return LicenceConclusion(
            text, NOASSERTION, f"unparseable SPDX expression: ends with {trailing.group(1)!r}"
        )
    try:
        tokens = list(spdx_licensing().tokenize(text, strict=True, simple=False))
    except Exception as exc:  # the library raises several types (and AttributeError) on junk
        return LicenceConclusion(text, NOASSERTION, f"unparseable SPDX expression: {_first(exc)}")
    # Rewrite each id token (as written, by its position) to its concluded id; the
    # library's own resolution is not used, as it maps aliases such as GPL silently.
    rewritten: list[str] = []
    symbols: dict[str, bool] = {}  # concluded id -> is an exception
    notes: list[str] = []
    problems: list[str] = []
    end = 0
    for token, written, position in tokens:
        rewritten.append(text[end:position])
        end = position + len(written)
        if not isinstance(token, LicenseSymbol | LicenseWithExceptionSymbol):
            rewritten.append(written)
            continue
        parts = _WITH.split(written)
        if isinstance(token, LicenseWithExceptionSymbol) != (len(parts) == 2):
            problems.append(f"unparseable SPDX expression: {written!r}")
            continue
        concluded_parts = []
        for index, part in enumerate(parts):
            is_exception = index == 1
            resolved, note, problem = _resolve_id(part.strip(), exception=is_exception)
            if problem:
                problems.append(problem)
            if note:
                notes.append(note)
            if resolved is not None:
                symbols[resolved] = is_exception
                concluded_parts.append(resolved)
        rewritten.append(" WITH ".join(concluded_parts))
    rewritten.append(text[end:])
    if problems:
        return LicenceConclusion(text, NOASSERTION, "; ".join(dict.fromkeys(problems)))
    own = Licensing([LicenseSymbol(key, is_exception=exc) for key, exc in symbols.items()])
    try:
        parsed = own.parse("".join(rewritten), validate=False, strict=True, simple=False)
    except Exception as exc:
        return LicenceConclusion(text, NOASSERTION, f"unparseable SPDX expression: {_first(exc)}")
    if parsed is None:
        return LicenceConclusion(text, NOASSERTION, "unparseable SPDX expression: no licence id")
    reason = "; ".join(dict.fromkeys(notes)) or None
    return LicenceConclusion(text, str(parsed), reason)


def _first(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@functools.cache
def _plain_licensing() -> Licensing:
    return Licensing()


def parse_concluded(concluded: str) -> Any:
    """Parse an already concluded expression (valid by construction) into its tree.

    No licence database takes part, so every id stays exactly as concluded (the SPDX
    licensing would turn an alias such as ``LicenseRef-MIT-Bootstrap`` into ``MIT``).
    """
    return _plain_licensing().parse(concluded, validate=False, strict=False, simple=False)


def licence_symbols(expression: Any) -> list[str]:
    """The licence keys named in a parsed expression (exceptions excluded)."""
    if isinstance(expression, LicenseWithExceptionSymbol):
        return [expression.license_symbol.key]
    if isinstance(expression, LicenseSymbol):
        return [expression.key]
    return [k for arg in expression.args for k in licence_symbols(arg)]


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
