"""Provenance ledgers for tests: a small recorded training run (built through the provenance
API, with its gate), a consent world of recordings and parties, and raw-SQL tampering as an
administrator could do it."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from provenance.audit_log import append_event
from provenance.consent import ConsentSubject, current_consent, record_consent
from provenance.licences import record_licence
from provenance.models import (
    Checkpoint,
    ConsentEvent,
    Embedder,
    EmbeddingIndex,
    Recording,
    Source,
    TrainingRun,
    TrainingRunMember,
)
from provenance.parties import add_credit, find_party, get_or_create_party
from provenance.policies import load_policy

SNAPSHOT_AT = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)

# (title, artist, licence, seconds)
MEMBERS = [
    ("Caribbean", "Will Savino", "CC-BY-SA-3.0", 62.3),
    ("Ivory Tower", "Will Savino", "CC-BY-SA-3.0", 63.8),
    ("Breaking the Chains", "Mattias Westlund", "GPL-2.0-or-later", 214.0),
]


@dataclass
class RecordedRun:
    run: TrainingRun
    checkpoint: Checkpoint
    recordings: list[Recording]
    objects: dict[int, Path]


def build_recorded_run(session: Session, root: Path) -> RecordedRun:
    policy = load_policy("commercial")
    source = Source(uri=f"file://{root}/music", kind="folder")
    session.add(source)
    session.flush()
    recordings = []
    objects = {}
    for i, (title, artist, licence, seconds) in enumerate(MEMBERS):
        payload = f"audio bytes {i} {title}".encode()
        sha = hashlib.sha256(payload).hexdigest()
        path = root / "objects" / sha[:2] / sha
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        rec = Recording(
            sha256=sha,
            size_bytes=len(payload),
            title=title,
            duration_s=seconds,
            sample_rate=44100,
            channels=2,
            codec="OGG/VORBIS",
            object_uri=str(path),
            source_id=source.id,
            source_url=f"https://example.org/{i}",
            created_at=SNAPSHOT_AT - dt.timedelta(days=30),
        )
        session.add(rec)
        session.flush()
        party = get_or_create_party(session, artist)
        add_credit(session, recording_id=rec.id, party_id=party.id, role="artist")
        record_licence(session, recording_id=rec.id, declared=licence, asserted_by="test")
        recordings.append(rec)
        objects[rec.id] = path
    # Licence assertions are stamped "now"; the run must postdate them to be a fair snapshot.
    snapshot_at = max(SNAPSHOT_AT, dt.datetime.now(dt.UTC))
    run = TrainingRun(
        policy_name=policy.name,
        policy_version=policy.version,
        policy_sha256=policy.sha256,
        config_name="debug",
        config={},
        snapshot_at=snapshot_at,
        members_digest="d" * 64,
        member_count=len(recordings),
        status="finished",
    )
    session.add(run)
    session.flush()
    from provenance.licences import current_licence

    for rec in recordings:
        assertion = current_licence(session, rec.id)
        assert assertion is not None
        state = current_consent(
            session, ConsentSubject("recording", rec.id), "commercial_training", at=snapshot_at
        )
        session.add(
            TrainingRunMember(
                training_run_id=run.id,
                recording_id=rec.id,
                sha256=rec.sha256,
                concluded_licence=assertion.concluded,
                licence_assertion_id=assertion.id,
                consent_state=state.state,
                consent_event_id=state.event_id,
                leaf_hash=hashlib.sha256(rec.sha256.encode()).hexdigest(),
            )
        )
    # What freeze_snapshot records: the run's facts, and (in "covers") its members' digests.
    append_event(
        session,
        "training_run.snapshotted",
        entity="training_run",
        entity_id=run.id,
        payload={
            "policy": policy.name,
            "policy_version": str(policy.version),
            "policy_sha256": policy.sha256,
            "config_name": "debug",
            "members_digest": run.members_digest,
            "member_count": run.member_count,
        },
    )
    ckpt_path = root / "runs" / str(run.id) / "model.safetensors"
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    ckpt_path.write_bytes(b"checkpoint weights")
    checkpoint = Checkpoint(
        training_run_id=run.id,
        sha256=hashlib.sha256(ckpt_path.read_bytes()).hexdigest(),
        uri=str(ckpt_path),
        step=10,
        is_final=True,
    )
    session.add(checkpoint)
    session.flush()
    return RecordedRun(run, checkpoint, recordings, objects)


# What `fairchord gate calibrate` records for the gate's detector (MSD-musicnn).
COHORT = {
    "sha256": "c" * 64,
    "embedder_sha256": "e" * 64,
    "tracks": {"cohort": 40, "calibration": 20},
    "artists": 31,
    "seconds": 1800.0,
    "licences": {"GPL-2.0-or-later": 35, "CC-BY-SA-3.0": 25},
    "packages": ["frozen-bubble-data", "supertuxkart-data"],
}
DETECTOR_CONFIG = {
    "name": "MSD-musicnn",
    "kind": "musicnn",
    "task": "music audio tagging: the 50 most frequent Last.fm tags",
    "training_data": "Million Song Dataset audio previews with Last.fm tag annotations",
    "licence": "ISC",
    "authors": "Jordi Pons, Xavier Serra",
    "reference": "musicnn: pre-trained convolutional neural networks for music audio tagging",
    "source_package": "musicnn==0.1.0",
    "source_files": ["musicnn/MSD_musicnn/.index", "musicnn/MSD_musicnn/.data-00000-of-00001"],
    "weights_sha256": {".index": "1" * 64, ".data-00000-of-00001": "2" * 64},
    "feature": "pool",
    "patch_frames": 187,
    "cohort": COHORT,
}


def record_gate(session: Session, run: TrainingRun, root: Path) -> EmbeddingIndex:
    """Record the gate's detector and a calibrated gate index for ``run``, beside the
    project's CLAP and its (also calibrated) segment index, which is not the gate's."""
    clap = Embedder(sha256="a" * 64, uri=str(root / "clap.pt"), kind="laion_clap", config={})
    musicnn = Embedder(
        sha256=COHORT["embedder_sha256"],
        uri=str(root / "MSD_musicnn"),
        kind="musicnn",
        config=DETECTOR_CONFIG,
    )
    session.add_all([clap, musicnn])
    thresholds = {
        "artist": 0.41,
        "artist_model": {
            "method": "as_norm",
            "threshold": 0.41,
            "cohort": COHORT,
            "sha256": "f" * 64,
        },
        "fingerprint": {"sha256": "b" * 64, "hashes": 10},
    }
    clap_index = EmbeddingIndex(
        training_run_id=run.id,
        embedder_sha256=clap.sha256,
        sha256="3" * 64,
        uri=str(root / "clap-index"),
        vectors=30,
        thresholds={"track": 0.9},
    )
    session.add(clap_index)
    gate_index = EmbeddingIndex(
        training_run_id=run.id,
        embedder_sha256=musicnn.sha256,
        sha256="4" * 64,
        uri=str(root / "gate-index"),
        vectors=30,
        thresholds=thresholds,
    )
    session.add(gate_index)
    session.flush()
    for index in (clap_index, gate_index):  # what calibration records
        append_event(
            session,
            "gate_index.calibrated",
            entity="embedding_index",
            entity_id=index.id,
            payload={"sha256": index.sha256, "thresholds": index.thresholds},
        )
    return gate_index


def sha(value: str) -> str:
    """The sha256 hex digest of ``value``."""
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class ConsentWorld:
    """Recordings found at several URLs, two of them credited, and three known parties."""

    source: Source
    rec: dict[str, Recording]
    party: dict[str, int]


def make_world(session: Session) -> ConsentWorld:
    source = Source(uri="https://archive.example.org/catalogue.csv", kind="manifest", config={})
    session.add(source)
    session.flush()
    urls = {
        "westlund": "https://music.example.org/westlund/breaking.ogg",
        "kaufman": "https://music.example.org/kaufman/elvish.ogg",
        "free": "https://music.example.org/free/ambient.ogg",
        "exact": "https://music.example.org/exact",
        "other_site": "https://other.example.net/westlund/breaking.ogg",
        "no_url": None,
    }
    rec = {}
    for name, url in urls.items():
        r = Recording(sha256=sha(name), size_bytes=1000, source_url=url, source_id=source.id)
        session.add(r)
        session.flush()
        rec[name] = r
    party = {
        "westlund": get_or_create_party(session, "Mattias Westlund").id,
        "maxstack": get_or_create_party(session, "Max McCracken", aliases=["Maxstack"]).id,
        "kaufman": get_or_create_party(session, "Doug Kaufman").id,
    }
    add_credit(session, recording_id=rec["westlund"].id, party_id=party["westlund"])
    add_credit(session, recording_id=rec["kaufman"].id, party_id=party["kaufman"])
    return ConsentWorld(source, rec, party)


def as_admin(engine: Engine, statements: Sequence[str], *, tables: Sequence[str] = ()) -> None:
    """Run raw SQL with the append-only triggers of ``tables`` out of the way.

    SQLite: the triggers are dropped (an admin can; they stay dropped, as an attacker
    would not bother to put them back). PostgreSQL: ``session_replication_role =
    replica`` switches user triggers off for the transaction, which a superuser can do.
    """
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            for table in tables:
                names = conn.execute(
                    text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
                    {"t": table},
                ).scalars()
                for name in list(names):
                    conn.execute(text(f"DROP TRIGGER {name}"))
        else:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in statements:
            conn.exec_driver_sql(statement)


def party_opt_out(session: Session, name: str, *, at: dt.datetime | None = None) -> ConsentEvent:
    """The named party opts out of training (origin cli, with evidence), effective ``at``."""
    party = find_party(session, name)
    assert party is not None, name
    event = record_consent(
        session,
        subject=ConsentSubject("party", party.id),
        action="opt_out",
        purpose="training",
        effective_at=at or dt.datetime.now(dt.UTC),
        origin="cli",
        evidence="email from the artist",
    )
    assert event is not None
    return event
