"""Eligibility: may a recording be trained on under a policy at a time, and why (not).

:func:`eligibility` checks, and reports every failing check (not only the first):

1. status — a quarantined recording → ``quarantined``; a near-duplicate of
   another recording → ``duplicate_of:<id>`` (the original is the one trained on).
2. licence — the licence assertion in force at ``at`` (newest asserted no later
   than ``at``). None, or concluded ``NOASSERTION`` → ``noassertion``.
   Otherwise the concluded SPDX expression is evaluated against the policy:
   a single id must be allowed (``X WITH exception`` counts as ``X``, since an
   exception only adds permissions); ``A OR B`` passes when either option is
   allowed (the licensee may choose); ``A AND B`` only when both are. Each
   disallowed id → ``licence_not_allowed:<id>``.
3. credits — when the policy requires a named artist, a recording with no
   credit of role ``artist`` → ``no_named_artist``.
4. consent — :func:`provenance.consent.current_consent` for the policy's
   consent purpose at ``at``. Opted out → the state's reason
   (``opted_out:recording``, ``opted_out:party=<id>``, ``opted_out:source=<id>``);
   an opt-out read from the file's own Content Credentials (origin ``c2pa``) →
   ``opted_out:recording:c2pa``; with ``opt_in_required``, anything but opted in →
   ``no_opt_in``.
5. generated media — a valid Content Credential saying a trained model made the file
   (``trainedAlgorithmicMedia``) → ``ai_generated``, unless the policy's
   ``[provenance] ai_generated_ok`` is true. An invalid credential counts for nothing.

A recording is eligible when no reason was found.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from license_expression import AND, OR, LicenseSymbol, LicenseWithExceptionSymbol
from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.consent import C2PA_ORIGIN, ConsentState, ConsentSubject, current_consent
from provenance.credential_rows import generated_media_recordings
from provenance.licences import NOASSERTION, current_licence, parse_concluded
from provenance.models import ConsentEvent, Recording, utcnow
from provenance.parties import artist_names_by_recording, recording_artist_ids
from provenance.policies import Policy


@dataclass
class Eligibility:
    recording_id: int
    eligible: bool
    reasons: list[str]
    concluded_licence: str
    licence_assertion_id: int | None
    consent_state: str
    consent_event_id: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EligibilityRow:
    """One line of the eligibility table: a verdict with the recording's sha256, title and
    artist names."""

    verdict: Eligibility
    sha256: str
    title: str | None
    artists: list[str]

    def to_dict(self) -> dict[str, Any]:
        """The recording's facts, its licence and consent, and the decision with reasons."""
        v = self.verdict
        return {
            "recording_id": v.recording_id,
            "sha256": self.sha256,
            "title": self.title,
            "artists": self.artists,
            "licence": v.concluded_licence,
            "consent": v.consent_state,
            "eligible": v.eligible,
            "decision": "include" if v.eligible else "exclude",
            "reasons": v.reasons,
        }


def licence_reasons(concluded: str, policy: Policy) -> list[str]:
    """Why the concluded expression is not usable under ``policy`` (empty: it is)."""
    if concluded == NOASSERTION:
        return ["noassertion"]
    return _expression_reasons(parse_concluded(concluded), policy)


def _expression_reasons(node: Any, policy: Policy) -> list[str]:
    if isinstance(node, LicenseWithExceptionSymbol):
        key = node.license_symbol.key
        return [] if policy.licence_allowed(key) else [f"licence_not_allowed:{key}"]
    if isinstance(node, LicenseSymbol):
        key = node.key
        return [] if policy.licence_allowed(key) else [f"licence_not_allowed:{key}"]
    per_option = [_expression_reasons(arg, policy) for arg in node.args]
    if isinstance(node, OR) and any(not reasons for reasons in per_option):
        return []
    if isinstance(node, (AND, OR)):
        return list(dict.fromkeys(r for reasons in per_option for r in reasons))
    raise TypeError(f"unexpected licence expression node {node!r}")


def eligibility(
    session: Session, recording_id: int, policy: Policy, at: dt.datetime | None = None
) -> Eligibility:
    """The verdict for one recording under ``policy`` at ``at`` (default now), with reasons."""
    at = at or utcnow()
    recording = session.get(Recording, recording_id)
    if recording is None:
        raise ValueError(f"no recording with id {recording_id}")
    reasons: list[str] = []
    if recording.status != "accepted":
        reasons.append("quarantined")
    if recording.duplicate_of_id is not None:
        reasons.append(f"duplicate_of:{recording.duplicate_of_id}")

    assertion = current_licence(session, recording_id, at=at)
    concluded = assertion.concluded if assertion is not None else NOASSERTION
    reasons.extend(licence_reasons(concluded, policy))

    if policy.require_named_artist and not recording_artist_ids(session, recording_id):
        reasons.append("no_named_artist")

    consent = current_consent(
        session, ConsentSubject("recording", recording_id), policy.consent_purpose, at=at
    )
    if consent.state == "opted_out":
        reasons.append(_opt_out_reason(session, consent))
    elif policy.consent_requirement == "opt_in_required" and consent.state != "opted_in":
        reasons.append("no_opt_in")

    if not policy.ai_generated_ok and generated_media_recordings(session, [recording_id]):
        reasons.append("ai_generated")

    return Eligibility(
        recording_id=recording_id,
        eligible=not reasons,
        reasons=reasons,
        concluded_licence=concluded,
        licence_assertion_id=assertion.id if assertion is not None else None,
        consent_state=consent.state,
        consent_event_id=consent.event_id,
    )


def _opt_out_reason(session: Session, consent: ConsentState) -> str:
    """The consent reason, marked ``:c2pa`` when the deciding opt-out was read from the
    file's own Content Credentials."""
    if consent.level == "recording" and consent.event_id is not None:
        event = session.get(ConsentEvent, consent.event_id)
        if event is not None and event.origin == C2PA_ORIGIN:
            return f"{consent.reason}:{C2PA_ORIGIN}"
    return consent.reason


def eligibility_table(
    session: Session,
    policy: Policy,
    at: dt.datetime | None = None,
    *,
    include_quarantined: bool = False,
) -> list[Eligibility]:
    """Verdicts for every accepted recording (and quarantined ones if asked), by id."""
    at = at or utcnow()
    query = select(Recording.id).order_by(Recording.id)
    if not include_quarantined:
        query = query.where(Recording.status == "accepted")
    return [eligibility(session, rid, policy, at) for rid in session.execute(query).scalars()]


def eligibility_rows(
    session: Session, policy: Policy, at: dt.datetime | None = None
) -> list[EligibilityRow]:
    """:func:`eligibility_table` (accepted recordings, by id) with each recording's facts."""
    verdicts = eligibility_table(session, policy, at)
    artists = artist_names_by_recording(session)
    recordings = {
        r.id: r
        for r in session.execute(
            select(Recording).where(Recording.id.in_([v.recording_id for v in verdicts]))
        ).scalars()
    }
    return [
        EligibilityRow(
            verdict=v,
            sha256=recordings[v.recording_id].sha256,
            title=recordings[v.recording_id].title,
            artists=artists.get(v.recording_id, []),
        )
        for v in verdicts
    ]


def eligible_recordings(
    session: Session, policy: Policy, at: dt.datetime | None = None
) -> list[Eligibility]:
    """The eligible verdicts among accepted, non-duplicate recordings, ordered by id."""
    at = at or utcnow()
    ids = session.execute(
        select(Recording.id)
        .where(Recording.status == "accepted", Recording.duplicate_of_id.is_(None))
        .order_by(Recording.id)
    ).scalars()
    verdicts = (eligibility(session, rid, policy, at) for rid in ids)
    return [v for v in verdicts if v.eligible]
