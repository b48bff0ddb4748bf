"""Calibration: thresholds from the snapshot at a stated false-block rate, stored with the index."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import Session

from generation.calibrate import calibrate_run, default_transforms
from generation.calibrate_thresholds import threshold_at_rate
from generation.fingerprint import MIN_THRESHOLD
from generation.gate import SimilarityGate
from generation.index import GateUnavailable, load_index
from generation.tail import tail_threshold
from provenance.models import EmbeddingIndex
from tests.common.audio import melody, tone_clip
from tests.common.gate import (
    TRAINING,
    StandInEmbedder,
    attach_fingerprints,
    build_demo_index,
    make_run,
)


def test_threshold_at_rate_counts_negatives() -> None:
    negatives = np.linspace(0.0, 0.99, 100)
    t = threshold_at_rate(negatives, 0.01)
    assert np.sum(negatives >= t) <= 1
    assert negatives[-2] < t <= negatives[-1]  # tight: exactly the one allowed negative
    assert np.sum(negatives >= threshold_at_rate(negatives, 0.0)) == 0
    with pytest.raises(ValueError, match="must be in"):
        threshold_at_rate(negatives, 1.5)


def test_calibrate_run_stores_thresholds_and_gate_uses_them(session: Session) -> None:
    embedder = StandInEmbedder()
    run = make_run(session)
    index = build_demo_index(session, embedder, run)
    clips = {rec: tone_clip(freqs, seconds=20.0, seed=rec) for rec, (_, freqs) in TRAINING.items()}
    report = calibrate_run(
        session,
        run,
        embedder=embedder,
        clips=clips,
        recordings=clips,
        transforms=default_transforms(["gain_-6db", "noise_20db", "crop_5s"]),
        false_block_rate=0.01,
    )
    assert report.recordings == len(TRAINING)
    assert report.track_negatives == len(TRAINING)
    assert report.combined_false_block_rate <= 0.01
    assert report.track_recall == 1.0  # gain/noise/crop copies of pure tones stay close
    row = session.get(EmbeddingIndex, index.row_id)
    assert row is not None and row.thresholds is not None
    assert row.thresholds["track"] == report.thresholds["track"]
    assert index.path is not None
    meta = json.loads((Path(index.path) / "meta.json").read_text())
    assert meta["thresholds"]["track"] == report.thresholds["track"]
    fingerprint = row.thresholds["fingerprint"]
    assert fingerprint["threshold"] >= MIN_THRESHOLD
    assert fingerprint["recordings"] == len(TRAINING)
    stored = (Path(index.path) / "fingerprints" / "manifest.json").read_bytes()
    assert hashlib.sha256(stored).hexdigest() == fingerprint["sha256"]
    assert fingerprint["layout"] == "partitioned"
    # Thresholds do not change the index identity: it still loads and verifies.
    reloaded = load_index(session, run, embedder_sha256=embedder.sha256)
    assert reloaded.sha256 == index.sha256
    gate = SimilarityGate(reloaded, embedder)
    assert gate.check(clips[2]).verdict == "block"


def test_fingerprints_catch_pitch_and_tempo_replays_in_calibration(session: Session) -> None:
    """On music-like clips the embedding misses pitch/tempo copies; the fingerprints do not."""
    embedder = StandInEmbedder()
    run = make_run(session)
    training = {rec: melody(rec) for rec in (1, 2, 3, 4)}
    build_demo_index(session, embedder, run, training=training)
    report = calibrate_run(
        session,
        run,
        embedder=embedder,
        clips=training,
        recordings=training,
        transforms=default_transforms(["pitch_+2", "pitch_-1", "tempo_+10%", "tempo_-5%"]),
        false_block_rate=0.01,
    )
    assert report.combined_false_block_rate == 0.0
    assert report.fingerprint_recall == 1.0
    assert report.replay_recall == 1.0
    assert all(recall == 1.0 for recall in report.per_transform_recall.values())


def test_calibration_needs_audio_for_every_member(session: Session) -> None:
    embedder = StandInEmbedder()
    run = make_run(session)
    build_demo_index(session, embedder, run)
    clips = {rec: tone_clip(freqs, seconds=20.0, seed=rec) for rec, (_, freqs) in TRAINING.items()}
    partial = {rec: wave for rec, wave in clips.items() if rec != 4}
    with pytest.raises(GateUnavailable, match="no audio for recordings"):
        calibrate_run(
            session,
            run,
            embedder=embedder,
            clips=clips,
            recordings=partial,
            transforms=default_transforms(["gain_-6db"]),
        )


def test_tail_threshold_extrapolates_beyond_few_negatives() -> None:
    rng = np.random.default_rng(0)
    many = np.tanh(rng.normal(1.0, 0.2, 200_000))
    fitted = tail_threshold(many, 0.01)
    assert np.mean(many >= fitted) == pytest.approx(0.01, abs=0.002)
    few = many[:19]
    # With 19 negatives the empirical threshold sits just above the largest; the fit lies
    # further out, where the real 0.1 % tail is.
    assert tail_threshold(few, 0.001) > threshold_at_rate(few, 0.001) - 1e-9
    assert np.mean(many >= tail_threshold(few, 0.001)) < 0.01
    assert tail_threshold(few[:1], 0.01) == float("inf")


def test_a_member_without_credited_artists_is_not_its_own_negative(session: Session) -> None:
    """An anonymous member (a traditional tune with no credited artist) shares no artist
    with anyone; calibration must still leave it out of its own negatives, or its perfect
    self-match sets every threshold out of reach."""
    from generation.index import build_index_for_run

    embedder = StandInEmbedder()
    run = make_run(session)
    waves = {rec: melody(rec) for rec in (1, 2, 3, 4)}
    artists = {1: [101], 2: [102], 3: [103], 4: []}  # recording 4: no credited artist
    vectors, rec_ids, seg_ids, artist_ids = [], [], [], []
    for rec, wave in waves.items():
        for j, vec in enumerate(embedder.embed_audio(wave)):
            vectors.append(vec)
            rec_ids.append(rec)
            seg_ids.append(j)
            artist_ids.append(artists[rec])
    row = build_index_for_run(
        session,
        run.id,
        embeddings=np.stack(vectors),
        recording_ids=rec_ids,
        segment_index=seg_ids,
        artist_ids=artist_ids,
        embedder_sha256=embedder.sha256,
        snapshot_digest=run.members_digest,
        thresholds={"track": 0.95, "artist": 0.9, "false_block_rate": 0.01},
    )
    attach_fingerprints(session, row, waves, artists)
    report = calibrate_run(
        session,
        run,
        embedder=embedder,
        clips=waves,
        recordings=waves,
        transforms=default_transforms(["gain_-6db", "pitch_+1"]),
        false_block_rate=0.01,
    )
    assert report.thresholds["fingerprint"]["threshold"] == MIN_THRESHOLD
    assert report.thresholds["track"] < 0.999
    assert report.fingerprint_recall == 1.0
