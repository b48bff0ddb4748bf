"""What the prompt screen reads: every party's names, and the style-imitation opt-outs in force."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.consent import ConsentSubject, covering_purposes, current_consent
from provenance.models import ConsentEvent, Party, PartyAlias

STYLE_PURPOSE = "style_imitation"


@dataclass(frozen=True)
class PartyNames:
    """One party as the screen sees it: its name, kind and aliases (as written)."""

    party_id: int
    name: str
    kind: str
    aliases: tuple[str, ...]


def parties_with_aliases(session: Session) -> list[PartyNames]:
    """Every party by id, each with its aliases in the order they were added."""
    aliases: dict[int, list[str]] = defaultdict(list)
    for party_id, alias in session.execute(
        select(PartyAlias.party_id, PartyAlias.alias).order_by(PartyAlias.id)
    ):
        aliases[party_id].append(alias)
    return [
        PartyNames(party_id, name, kind, tuple(aliases.get(party_id, ())))
        for party_id, name, kind in session.execute(
            select(Party.id, Party.name, Party.kind).order_by(Party.id)
        )
    ]


def style_opt_outs(session: Session, *, at: dt.datetime) -> dict[int, int]:
    """Party id → deciding consent event id, for parties opted out of style imitation at ``at``."""
    candidates = session.execute(
        select(ConsentEvent.party_id)
        .where(
            ConsentEvent.party_id.is_not(None),
            ConsentEvent.purpose.in_(covering_purposes(STYLE_PURPOSE)),
            ConsentEvent.effective_at <= at,
        )
        .distinct()
    ).scalars()
    opted_out: dict[int, int] = {}
    for party_id in sorted(p for p in candidates if p is not None):
        state = current_consent(session, ConsentSubject("party", party_id), STYLE_PURPOSE, at=at)
        if state.state == "opted_out" and state.event_id is not None:
            opted_out[party_id] = state.event_id
    return opted_out
