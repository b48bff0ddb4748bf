"""Batch consent resolution gives exactly the answers of `current_consent`, on random ledgers."""

from __future__ import annotations

import datetime as dt
import hashlib
import random

import pytest
from sqlalchemy.orm import Session

from provenance import consent
from provenance.consent import (
    NO_CONSENT_EVENT,
    ConsentSubject,
    current_consent,
    current_consent_of_recordings,
)
from provenance.models import ConsentEvent, Credit, Party, Recording, Source
from provenance.models.rights import CONSENT_PURPOSES

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
# Few distinct times, so that ties (opt-in and opt-out effective together) are common.
TIMES = [T0 + dt.timedelta(days=d) for d in range(6)]
ROLES = ("artist", "composer", "performer")


def random_ledger(session: Session, rng: random.Random, tag: str) -> list[int]:
    """Recordings with 0-3 credited parties, an optional source, and random consent events."""
    sources = [Source(uri=f"file:///{tag}/source{i}", kind="folder") for i in range(3)]
    parties = [
        Party(name=f"{tag} party {i}", normalized_name=f"{tag} party {i}") for i in range(10)
    ]
    session.add_all([*sources, *parties])
    session.flush()
    recordings = []
    for i in range(30):
        payload = f"{tag} recording {i}".encode()
        recordings.append(
            Recording(
                sha256=hashlib.sha256(payload).hexdigest(),
                size_bytes=len(payload),
                source_id=rng.choice([None, *(s.id for s in sources)]),
            )
        )
    session.add_all(recordings)
    session.flush()
    for rec in recordings:
        for party in rng.sample(parties, rng.randint(0, 3)):
            session.add(Credit(recording_id=rec.id, party_id=party.id, role=rng.choice(ROLES)))
    subjects = (
        [("recording_id", r.id) for r in recordings]
        + [("party_id", p.id) for p in parties]
        + [("source_id", s.id) for s in sources]
    )
    for _ in range(rng.randint(20, 90)):
        column, subject_id = rng.choice(subjects)
        session.add(
            ConsentEvent(
                **{column: subject_id},
                action=rng.choice(("opt_in", "opt_out")),
                purpose=rng.choice(CONSENT_PURPOSES),
                effective_at=rng.choice(TIMES),
                origin="cli",
            )
        )
    session.flush()
    return [r.id for r in recordings]


def test_batch_matches_current_consent_on_random_ledgers(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny IN lists, so chunk boundaries fall inside every query.
    monkeypatch.setattr(consent, "_IN_CHUNK", 7)
    mismatches = []
    states_seen = set()
    for seed in range(4):
        rng = random.Random(seed)
        ids = random_ledger(session, rng, f"seed{seed}")
        for purpose in CONSENT_PURPOSES:
            for at in (TIMES[0], TIMES[2], TIMES[-1] + dt.timedelta(days=1)):
                batch = current_consent_of_recordings(session, ids, purpose, at=at)
                assert set(batch) == set(ids)
                for rid in ids:
                    one = current_consent(session, ConsentSubject("recording", rid), purpose, at=at)
                    states_seen.add(one.reason.split("=")[0])
                    if batch[rid] != one:
                        mismatches.append(
                            f"seed {seed} {purpose} {at} #{rid}: {batch[rid]} != {one}"
                        )
    assert not mismatches, "\n".join(mismatches[:20])
    # The random ledgers reached every level and outcome, so the comparison means something.
    assert states_seen >= {
        "no_event",
        "opted_in:recording",
        "opted_out:recording",
        "opted_in:party",
        "opted_out:party",
        "opted_in:source",
        "opted_out:source",
    }


def test_batch_of_nothing_and_unknown_recordings(session: Session) -> None:
    assert current_consent_of_recordings(session, [], "training") == {}
    ids = random_ledger(session, random.Random(9), "unknown")
    with pytest.raises(ValueError, match=f"no recording with id {max(ids) + 1}"):
        current_consent_of_recordings(session, [*ids, max(ids) + 1], "training")
    with pytest.raises(ValueError, match="unknown consent purpose"):
        current_consent_of_recordings(session, ids, "everything")
    with pytest.raises(ValueError, match="naive"):
        current_consent_of_recordings(session, ids, "training", at=dt.datetime(2025, 1, 1))
    # Duplicates in the input are resolved once.
    assert len(current_consent_of_recordings(session, [ids[0], ids[0]], "any")) == 1


def test_no_event_anywhere_is_the_shared_none_state(session: Session) -> None:
    ids = random_ledger(session, random.Random(3), "quiet")
    states = current_consent_of_recordings(session, ids, "training", at=T0 - dt.timedelta(days=1))
    assert set(states.values()) == {NO_CONSENT_EVENT}
