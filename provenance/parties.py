"""Parties (artists, composers, rights holders), their aliases, and credits on recordings.

A party's identity is its normalised name (:func:`provenance.names.normalize_name`):
``"Beyoncé"`` and ``"beyonce"`` are the same party. Aliases are other names the
same party goes by; they are searchable (:func:`find_party`) and screened by the
prompt screen (:func:`party_names`), but never merge two parties on their own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit_log import _lock_chain, append_event
from provenance.models import Credit, Party, PartyAlias
from provenance.models.parties import CREDIT_ROLES, PARTY_KINDS
from provenance.names import normalize_name

logger = logging.getLogger(__name__)

# The longest name a party row holds (``parties.name``, ``normalized_name``).
MAX_NAME_CHARS = 512


def unusable_name(name: str) -> str | None:
    """Why ``name`` cannot identify a party (empty once normalised, too long), or None."""
    if len(name.strip()) > MAX_NAME_CHARS:
        return f"{len(name.strip())} characters long, over the {MAX_NAME_CHARS} a name may have"
    normalized = normalize_name(name)
    if not normalized:
        return "empty once normalised (no letters or digits)"
    if len(normalized) > MAX_NAME_CHARS:
        return f"{len(normalized)} characters long once normalised, over {MAX_NAME_CHARS}"
    return None


def credit_names(
    session: Session,
    *,
    recording_id: int,
    names: Iterable[str],
    role: str = "artist",
    fact_source: str | None = None,
) -> list[str]:
    """Credit each of ``names`` on ``recording_id``; return the names that cannot name a
    party. Each of those is kept in the audit log as a ``credit.unparsed`` event (the
    name as given, why it was not used), so the source's words are not lost."""
    unparsed: list[str] = []
    for name in names:
        problem = unusable_name(name)
        if problem is None:
            party = get_or_create_party(session, name)
            add_credit(
                session,
                recording_id=recording_id,
                party_id=party.id,
                role=role,
                fact_source=fact_source,
            )
            continue
        unparsed.append(name)
        append_event(
            session,
            "credit.unparsed",
            entity="recording",
            entity_id=recording_id,
            payload={
                "name": name[:2000],
                "role": role,
                "fact_source": fact_source,
                "problem": problem,
            },
        )
    return unparsed


def _normalized_or_raise(name: str, what: str) -> str:
    problem = unusable_name(name)
    if problem is not None:
        raise ValueError(f"{what} {name[:200]!r} is {problem}")
    return normalize_name(name)


def get_or_create_party(
    session: Session,
    name: str,
    *,
    kind: str = "person",
    aliases: Iterable[str] = (),
) -> Party:
    """The party whose normalised name equals ``name``'s, created if missing.

    New aliases are added to the party (existing ones are left alone). Writes
    ``party.created`` / ``party.alias_added`` audit events; never commits.
    """
    if kind not in PARTY_KINDS:
        raise ValueError(f"unknown party kind {kind!r}; allowed: {', '.join(PARTY_KINDS)}")
    normalized = _normalized_or_raise(name, "party name")
    # Take the write turn before looking: two concurrent ingests must not both create
    # the same party (the unique normalised name would fail one of them late).
    _lock_chain(session)
    party = session.execute(
        select(Party).where(Party.normalized_name == normalized)
    ).scalar_one_or_none()
    if party is None:
        party = Party(name=name.strip(), normalized_name=normalized, kind=kind)
        session.add(party)
        session.flush()
        append_event(
            session,
            "party.created",
            entity="party",
            entity_id=party.id,
            payload={"name": party.name, "normalized_name": normalized, "kind": kind},
        )
    known = set(
        session.execute(
            select(PartyAlias.normalized_alias).where(PartyAlias.party_id == party.id)
        ).scalars()
    )
    known.add(normalized)
    for alias in aliases:
        normalized_alias = _normalized_or_raise(alias, "alias")
        if normalized_alias in known:
            continue
        known.add(normalized_alias)
        session.add(
            PartyAlias(party_id=party.id, alias=alias.strip(), normalized_alias=normalized_alias)
        )
        session.flush()
        append_event(
            session,
            "party.alias_added",
            entity="party",
            entity_id=party.id,
            payload={"alias": alias.strip(), "normalized_alias": normalized_alias},
        )
    return party


def find_parties(session: Session, name_or_alias: str) -> list[Party]:
    """Every party whose name or one of whose aliases normalises like ``name_or_alias``.

    A name match comes first; alias matches follow in id order.
    """
    normalized = normalize_name(name_or_alias)
    if not normalized:
        return []
    by_name = session.execute(
        select(Party).where(Party.normalized_name == normalized)
    ).scalar_one_or_none()
    by_alias = session.execute(
        select(Party)
        .join(PartyAlias, PartyAlias.party_id == Party.id)
        .where(PartyAlias.normalized_alias == normalized)
        .order_by(Party.id)
        .distinct()
    ).scalars()
    found = [by_name] if by_name is not None else []
    found.extend(p for p in by_alias if by_name is None or p.id != by_name.id)
    return found


def find_party(session: Session, name_or_alias: str) -> Party | None:
    """The party named ``name_or_alias``; else the one party with that alias.

    Returns ``None`` when nothing matches, and also when no party has that name
    and several share it as an alias (ambiguous: use :func:`find_parties`).
    """
    found = find_parties(session, name_or_alias)
    if not found:
        return None
    if found[0].normalized_name == normalize_name(name_or_alias) or len(found) == 1:
        return found[0]
    return None


def add_credit(
    session: Session,
    *,
    recording_id: int,
    party_id: int,
    role: str = "artist",
    fact_source: str | None = None,
) -> Credit:
    """Credit ``party_id`` on ``recording_id`` in ``role``; an existing credit is returned as is.

    Writes a ``credit.added`` audit event for a new credit; never commits.
    """
    if role not in CREDIT_ROLES:
        raise ValueError(f"unknown credit role {role!r}; allowed: {', '.join(CREDIT_ROLES)}")
    _lock_chain(session)
    credit = session.execute(
        select(Credit).where(
            Credit.recording_id == recording_id,
            Credit.party_id == party_id,
            Credit.role == role,
        )
    ).scalar_one_or_none()
    if credit is not None:
        return credit
    credit = Credit(
        recording_id=recording_id, party_id=party_id, role=role, fact_source=fact_source
    )
    session.add(credit)
    session.flush()
    append_event(
        session,
        "credit.added",
        entity="recording",
        entity_id=recording_id,
        payload={"party_id": party_id, "role": role, "fact_source": fact_source},
    )
    return credit


def party_names(session: Session) -> dict[int, list[str]]:
    """Party id → ``[name, *aliases]`` (as written, not normalised), for every party."""
    names: dict[int, list[str]] = {
        pid: [name]
        for pid, name in session.execute(select(Party.id, Party.name).order_by(Party.id))
    }
    aliases = session.execute(select(PartyAlias.party_id, PartyAlias.alias).order_by(PartyAlias.id))
    for pid, alias in aliases:
        names.setdefault(pid, []).append(alias)
    return names


def artist_names_by_recording(session: Session) -> dict[int, list[str]]:
    """Recording id → the names of the parties credited as ``artist`` on it, sorted;
    a recording without an artist credit is absent."""
    names: dict[int, list[str]] = {}
    for recording_id, name in session.execute(
        select(Credit.recording_id, Party.name)
        .join(Party, Party.id == Credit.party_id)
        .where(Credit.role == "artist")
        .order_by(Credit.recording_id, Party.name)
    ):
        names.setdefault(recording_id, []).append(name)
    return names


def recording_party_ids(session: Session, recording_id: int) -> list[int]:
    """Ids of every party credited on ``recording_id`` in any role, ascending."""
    return sorted(
        set(
            session.execute(
                select(Credit.party_id).where(Credit.recording_id == recording_id)
            ).scalars()
        )
    )


def recording_artist_ids(session: Session, recording_id: int) -> list[int]:
    """Ids of the parties credited as ``artist`` on ``recording_id``, ascending."""
    return sorted(
        set(
            session.execute(
                select(Credit.party_id).where(
                    Credit.recording_id == recording_id, Credit.role == "artist"
                )
            ).scalars()
        )
    )
