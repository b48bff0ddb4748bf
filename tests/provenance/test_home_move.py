"""A home folder can be moved or restored elsewhere: what the DB records inside the home is
home-relative, so `audit verify` checks the files of the home in use, and catches a
tampered moved copy. Absolute locations recorded before stay readable."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import select
from sqlalchemy.orm import Session

from flows.train import record_checkpoint_step, uri_to_path
from generation.checkpoint_checks import checkpoint_path
from generation.index import VECTORS_FILE, build_index_for_run
from provenance.audit.integrity import IntegrityReport, verify_everything
from provenance.features import CoveredRecording, get_or_create_feature_set, record_shards
from provenance.ingest_prepare import IngestLimits
from provenance.ingest_record import ingest_item
from provenance.ingest_runs import get_or_create_source
from provenance.models import Checkpoint, EmbeddingIndex, FeatureSet, FeatureShard, Recording
from provenance.object_store import default_object_store, home_location
from provenance.settings import fairchord_home
from provenance.sources import open_source
from tests.common.audio import synth_music
from tests.common.ledger import build_recorded_run
from training.audio_io import load_audio

LIMITS = IngestLimits(max_duration_s=10.0, min_duration_s=1.0, max_bytes=5_000_000)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _build_home(session: Session, db_url: str, tmp_path: Path) -> None:
    """Objects, a feature set, a checkpoint and a gate index written by the project's own
    code into the home, beside a run recorded with absolute locations outside it."""
    home = fairchord_home()
    recorded = build_recorded_run(session, tmp_path / "legacy")  # absolute, outside the home
    music = tmp_path / "music"
    music.mkdir()
    for seed in (1, 2):
        sf.write(music / f"song{seed}.flac", synth_music(seed, seconds=2.0), 22050)
    adapter = open_source(str(music))
    source = get_or_create_source(session, adapter)
    store = default_object_store()
    recordings = [
        ingest_item(session, store, source, None, item, LIMITS) for item in adapter.items()
    ]
    assert all(r.status == "accepted" for r in recordings)

    root = home / "features" / "mel-abc"
    root.mkdir(parents=True)
    shard = root / "shard-00000.arrow"
    shard.write_bytes(b"arrow stream bytes")
    shard_sha = hashlib.sha256(shard.read_bytes()).hexdigest()
    manifest = root / "manifest.json"
    manifest.write_text(json.dumps({"shards": [{"path": shard.name, "sha256": shard_sha}]}))
    feature_set = get_or_create_feature_set(
        session, mel_config_hash="c" * 64, mel_config={}, root_uri=home_location(root)
    )
    record_shards(
        session,
        feature_set,
        shards=[{"name": shard.name, "sha256": shard_sha, "rows": 1}],
        recordings=[CoveredRecording(recordings[0].recording_id or 0, 1, shard.name)],
        manifest_uri=home_location(manifest),
        manifest_sha256=hashlib.sha256(manifest.read_bytes()).hexdigest(),
        shard_uri_prefix=home_location(root),
    )
    build_index_for_run(
        session,
        recorded.run.id,
        embeddings=np.eye(2, 8, dtype=np.float32),
        recording_ids=[recorded.recordings[0].id] * 2,
        segment_index=[0, 1],
        artist_ids=[[], []],
        embedder_sha256="e" * 64,
        snapshot_digest=recorded.run.members_digest,
    )
    session.commit()
    weights = home / "runs" / str(recorded.run.id) / "final.safetensors"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(b"checkpoint weights in the home")
    record_checkpoint_step(
        db_url,
        recorded.run.id,
        path=str(weights),
        sha256=hashlib.sha256(weights.read_bytes()).hexdigest(),
        step=20,
        is_final=True,
    )


def _verify(session: Session) -> IntegrityReport:
    session.expire_all()
    return verify_everything(session)


def _move_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Path:
    """Copy the home elsewhere, point FAIRCHORD_HOME at the copy, and take the original
    away, so nothing can still be read from it."""
    old = fairchord_home()
    new = tmp_path / name / "restored-home"
    shutil.copytree(old, new, symlinks=True)
    monkeypatch.setenv("FAIRCHORD_HOME", str(new))
    return new


def test_locations_inside_the_home_are_recorded_relative_to_it(
    session: Session, db_url: str, tmp_path: Path
) -> None:
    _build_home(session, db_url, tmp_path)
    in_home = [
        *session.scalars(select(Recording.object_uri).where(Recording.source_url.is_(None))),
        *session.scalars(select(FeatureSet.root_uri)),
        *session.scalars(select(FeatureSet.manifest_uri)),
        *session.scalars(select(FeatureShard.uri)),
        *session.scalars(select(Checkpoint.uri).where(Checkpoint.step == 20)),
        *session.scalars(select(EmbeddingIndex.uri)),
    ]
    assert len(in_home) == 7
    assert all(uri and uri.startswith("home://") for uri in in_home), in_home
    assert not any(str(fairchord_home()) in (uri or "") for uri in in_home)


def test_a_moved_home_verifies_and_a_tampered_moved_copy_fails(
    session: Session, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _build_home(session, db_url, tmp_path)
    assert _verify(session).ok, _verify(session).discrepancies
    original = fairchord_home()

    moved = _move_home(tmp_path, monkeypatch, "first")
    parked = original.with_name("original-home-away")
    os.rename(original, parked)  # nothing may be read from the old place
    report = _verify(session)
    assert report.ok, report.discrepancies
    assert report.checked["object"] == 5 and report.checked["shard"] == 1
    assert report.checked["checkpoint"] == 2 and report.checked["index"] == 1

    # Readers resolve the same locations in the moved home.
    ckpt = session.scalars(select(Checkpoint).where(Checkpoint.step == 20)).one()
    assert checkpoint_path(ckpt.uri).is_relative_to(moved)
    feature_set = session.scalars(select(FeatureSet)).one()
    assert uri_to_path(feature_set.root_uri) == moved / "features" / "mel-abc"
    obj = session.scalars(select(Recording).where(Recording.source_url.is_(None))).first()
    assert obj is not None and obj.object_uri is not None
    assert load_audio(obj.object_uri, sample_rate=8000).size > 0

    # Tamper with the moved copy: every kind is caught, and named in the moved home.
    sha = obj.sha256
    _flip_byte(moved / "objects" / "sha256" / sha[:2] / sha)
    _flip_byte(moved / "features" / "mel-abc" / "shard-00000.arrow")
    _flip_byte(moved / "runs" / str(ckpt.training_run_id) / "final.safetensors")
    index_dir = next((moved / "runs").glob("*/gate-index/*"))
    _flip_byte(index_dir / VECTORS_FILE)
    problems = _verify(session).discrepancies
    kinds = sorted(p.kind for p in problems)
    assert kinds == ["checkpoint", "index", "object", "shard"], problems
    object_problem = next(p for p in problems if p.kind == "object")
    assert object_problem.ref == f"recording {obj.id}"

    # The untouched original, restored to its place, still verifies: the copy was checked.
    monkeypatch.setenv("FAIRCHORD_HOME", str(original))
    os.rename(parked, original)
    assert _verify(session).ok


def test_a_missing_file_in_the_moved_home_is_named(
    session: Session, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _build_home(session, db_url, tmp_path)
    moved = _move_home(tmp_path, monkeypatch, "second")
    shutil.rmtree(moved / "objects")
    problems = _verify(session).discrepancies
    assert [p.kind for p in problems] == ["object", "object"], problems
    assert all(str(moved) in p.detail and "missing file" in p.detail for p in problems)
