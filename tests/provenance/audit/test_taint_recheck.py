"""The set-based taint audit finds exactly what re-checking every member one by one finds."""

from __future__ import annotations

import datetime as dt
import hashlib
import random

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit.taint import LICENCE_REASON_PREFIXES, RunTaint, runs_taint, tainted_runs
from provenance.consent import ConsentSubject, current_consent
from provenance.eligibility import eligibility
from provenance.models import (
    ConsentEvent,
    Credit,
    LicenceAssertion,
    Party,
    Recording,
    Source,
    TrainingRun,
    TrainingRunMember,
)
from provenance.parties import recording_party_ids
from provenance.policies import Policy, load_policy

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SNAPSHOTS = [T0 + dt.timedelta(days=d) for d in (10, 20, 30)]
NOW = T0 + dt.timedelta(days=40)
# Around and between the snapshots, on them exactly, and after NOW (not yet applicable).
TIMES = [T0 + dt.timedelta(days=d) for d in (1, 10, 15, 20, 25, 30, 35, 40, 45)]
LICENCES = ["CC-BY-4.0", "MIT", "CC-BY-NC-4.0", "LicenseRef-All-Rights-Reserved", "NOASSERTION"]


def random_record(session: Session, rng: random.Random) -> list[TrainingRun]:
    """Recordings, credits, three runs with overlapping members, and a random ledger after."""
    policy = load_policy("commercial")
    sources = [Source(uri=f"file:///music/{i}", kind="folder") for i in range(3)]
    parties = [Party(name=f"Artist {i}", normalized_name=f"artist {i}") for i in range(8)]
    session.add_all([*sources, *parties])
    session.flush()
    recordings = []
    for i in range(40):
        payload = f"recording {i}".encode()
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
        for party in rng.sample(parties, rng.randint(0, 2)):
            session.add(Credit(recording_id=rec.id, party_id=party.id, role="artist"))
        session.add(
            LicenceAssertion(
                recording_id=rec.id,
                declared="CC-BY-4.0",
                concluded="CC-BY-4.0",
                asserted_by="test",
                asserted_at=T0,
            )
        )
    subjects = (
        [("recording_id", r.id) for r in recordings]
        + [("party_id", p.id) for p in parties]
        + [("source_id", s.id) for s in sources]
    )
    for _ in range(60):
        column, subject_id = rng.choice(subjects)
        effective_at = rng.choice(TIMES)
        session.add(
            ConsentEvent(
                **{column: subject_id},
                action=rng.choice(("opt_in", "opt_out", "opt_out")),
                purpose=rng.choice(("any", "training", "commercial_training", "style_imitation")),
                effective_at=effective_at,
                # Some are recorded long after they took effect (back-dated).
                recorded_at=rng.choice([effective_at, *TIMES]),
                origin="cli",
            )
        )
    for _ in range(25):
        concluded = rng.choice(LICENCES)
        session.add(
            LicenceAssertion(
                recording_id=rng.choice(recordings).id,
                declared=concluded,
                concluded=concluded,
                asserted_by="rights review",
                asserted_at=rng.choice(TIMES),
            )
        )
    runs = []
    for snapshot_at in SNAPSHOTS:
        run = TrainingRun(
            policy_name=policy.name,
            policy_version=policy.version,
            policy_sha256=policy.sha256,
            config_name="debug",
            snapshot_at=snapshot_at,
            status="finished",
        )
        session.add(run)
        session.flush()
        for rec in rng.sample(recordings, 25):
            session.add(
                TrainingRunMember(
                    training_run_id=run.id,
                    recording_id=rec.id,
                    sha256=rec.sha256,
                    concluded_licence="CC-BY-4.0",
                    consent_state="none",
                    leaf_hash=hashlib.sha256(rec.sha256.encode()).hexdigest(),
                )
            )
        runs.append(run)
    session.flush()
    return runs


def recheck_every_member(session: Session, run: TrainingRun, policy: Policy) -> RunTaint:
    """The audit done the slow way: every member, every event and assertion, one at a time."""
    events = list(session.execute(select(ConsentEvent)).scalars())
    assertions = list(session.execute(select(LicenceAssertion)).scalars())
    members = session.execute(
        select(TrainingRunMember)
        .where(TrainingRunMember.training_run_id == run.id)
        .order_by(TrainingRunMember.recording_id)
    ).scalars()
    found = []
    consent_now = {}
    for member in members:
        rid = member.recording_id
        recording = session.get(Recording, rid)
        assert recording is not None
        parties = set(recording_party_ids(session, rid))
        reasons: list[str] = []
        event_ids: list[int] = []
        assertion_ids: list[int] = []
        consent_changed = any(
            e.effective_at <= NOW
            and (e.recorded_at > run.snapshot_at or e.effective_at > run.snapshot_at)
            and (
                e.recording_id == rid
                or e.party_id in parties
                or (e.source_id is not None and e.source_id == recording.source_id)
            )
            for e in events
        )
        if consent_changed:
            state = current_consent(
                session, ConsentSubject("recording", rid), policy.consent_purpose, at=NOW
            )
            consent_now[rid] = state.state
            if state.state == "opted_out":
                reasons.append(f"opted_out_since_snapshot:{state.level}")
                if state.event_id is not None:
                    event_ids.append(state.event_id)
        if any(a.recording_id == rid and a.asserted_at > run.snapshot_at for a in assertions):
            verdict = eligibility(session, rid, policy, NOW)
            licence = [r for r in verdict.reasons if r.startswith(LICENCE_REASON_PREFIXES)]
            reasons.extend(f"licence_reassessed:{r}" for r in licence)
            if licence and verdict.licence_assertion_id is not None:
                assertion_ids.append(verdict.licence_assertion_id)
        if reasons:
            found.append((rid, member.sha256, reasons, event_ids, assertion_ids))
    return RunTaint(run.id, run.policy_name, found, consent_now)  # type: ignore[arg-type]


def test_set_based_taint_matches_member_by_member(session: Session) -> None:
    policy = load_policy("commercial")
    tainted_seen = 0
    for seed in range(3):
        runs = random_record(session, random.Random(seed))
        fast = runs_taint(session, [(run, policy) for run in runs], now=NOW)
        for run, taint in zip(runs, fast, strict=True):
            slow = recheck_every_member(session, run, policy)
            got = [
                (m.recording_id, m.sha256, m.reasons, m.event_ids, m.assertion_ids)
                for m in taint.members
            ]
            assert got == slow.members, f"seed {seed}, run {run.id}"
            assert taint.consent_now == slow.consent_now, f"seed {seed}, run {run.id}"
            tainted_seen += len(got)
        # The whole-database audit keeps exactly the tainted ones among the same answers.
        by_run = {t.training_run_id: t for t in fast}
        for taint in tainted_runs(session, now=NOW):
            if taint.training_run_id in by_run:
                assert taint == by_run[taint.training_run_id]
        session.rollback()
    assert tainted_seen > 20, "the random records should taint members for every reason"
