"""Similarity gate: replays blocked, unrelated audio allowed, every fail-closed path raises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from generation.fingerprint import MIN_THRESHOLD
from generation.gate import GateUnavailable, SimilarityGate, record_gate_decision
from generation.index import load_index
from provenance.models import AuditEvent, GateDecision, TrainingRun
from tests.common.audio import melody, pitch_shift, tone_clip
from tests.common.gate import (
    SR,
    TRAINING,
    StandInEmbedder,
    build_demo_index,
    make_run,
)


@pytest.fixture
def embedder() -> StandInEmbedder:
    return StandInEmbedder()


def test_replay_of_training_clip_is_blocked(session: Session, embedder: StandInEmbedder) -> None:
    gate = SimilarityGate(build_demo_index(session, embedder, make_run(session)), embedder)
    replay = tone_clip(TRAINING[3][1], seconds=12.0, seed=3) * 0.5  # quieter, shorter replay
    result = gate.check(replay)
    assert result.verdict == "block"
    assert result.nearest["recording_id"] == 3
    assert result.track_similarity >= 0.95
    assert result.artist_scores[0]["party_id"] == 102
    assert any("track_similarity" in r for r in result.reasons)


def test_unrelated_clip_is_allowed(session: Session, embedder: StandInEmbedder) -> None:
    gate = SimilarityGate(build_demo_index(session, embedder, make_run(session)), embedder)
    rng = np.random.default_rng(7)
    noise = np.cumsum(rng.standard_normal(SR * 10)).astype(np.float32)  # brown noise
    noise = 0.1 * noise / np.abs(noise).max()
    result = gate.check(noise)
    assert result.verdict == "allow", result.reasons
    assert result.track_similarity < 0.95
    assert result.thresholds["track"] == 0.95
    assert result.index_sha256 == gate.index.sha256
    assert set(result.detector_scores) >= {"track", "artist", "fingerprint"}
    assert result.detector_scores["fingerprint"] < MIN_THRESHOLD


def test_pitch_shifted_replay_is_caught_by_the_fingerprint(
    session: Session, embedder: StandInEmbedder
) -> None:
    """A replay moved up two semitones slips past the embedding; the landmarks still match."""
    training = {rec: melody(rec) for rec in (1, 2, 3)}
    index = build_demo_index(
        session, embedder, make_run(session), track_threshold=0.9999, training=training
    )
    gate = SimilarityGate(index, embedder)
    result = gate.check(pitch_shift(training[2], 2)[: SR * 10])
    assert result.verdict == "block"
    assert result.track_similarity < 0.9999  # the embedding alone would have let it through
    assert result.detector_scores["fingerprint"] >= MIN_THRESHOLD
    assert result.extra["fingerprint"]["recording_id"] == 2
    assert result.extra["fingerprint"]["pitch_offset_semitones"] == pytest.approx(2.0, abs=0.5)
    assert any(r.startswith("fingerprint") and "recording 2" in r for r in result.reasons)
    assert gate.check(melody(50)[: SR * 10]).verdict == "allow"


def test_decision_is_recorded_with_audit_event(session: Session, embedder: StandInEmbedder) -> None:
    gate = SimilarityGate(build_demo_index(session, embedder, make_run(session)), embedder)
    result = gate.check(tone_clip(TRAINING[1][1], seed=1))
    row = record_gate_decision(session, None, result)
    stored = session.execute(select(GateDecision)).scalar_one()
    assert stored.id == row.id and stored.verdict == "block"
    assert stored.index_id == gate.index.row_id
    assert stored.nearest[0]["recording_id"] == 1
    actions = session.execute(select(AuditEvent.action)).scalars().all()
    assert "gate.decided" in actions and "gate_index.built" in actions


# --- fail closed -------------------------------------------------------------------------


def test_no_index_fails_closed(session: Session, embedder: StandInEmbedder) -> None:
    run = make_run(session)
    with pytest.raises(GateUnavailable, match="no gate index"):
        load_index(session, run)
    with pytest.raises(GateUnavailable):
        SimilarityGate(None, embedder)


def test_wrong_embedder_sha_fails_closed(session: Session, embedder: StandInEmbedder) -> None:
    index = build_demo_index(session, embedder, make_run(session))
    other = StandInEmbedder(seed=1)
    with pytest.raises(GateUnavailable, match="does not match"):
        SimilarityGate(index, other)
    with pytest.raises(GateUnavailable, match="does not match"):
        run = session.get(TrainingRun, index.training_run_id)
        assert run is not None
        load_index(session, run, embedder_sha256=other.sha256)


def test_index_of_another_snapshot_fails_closed(
    session: Session, embedder: StandInEmbedder
) -> None:
    run = make_run(session)
    build_demo_index(session, embedder, run)
    run.members_digest = "ef" * 32  # the run's snapshot is not what the index was built from
    session.flush()
    with pytest.raises(GateUnavailable, match="snapshot digest"):
        load_index(session, run)


def test_corrupt_index_file_fails_closed(session: Session, embedder: StandInEmbedder) -> None:
    run = make_run(session)
    index = build_demo_index(session, embedder, run)
    assert index.path is not None
    target: Path = index.path / "vectors.faiss"
    data = bytearray(target.read_bytes())
    data[-5] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(GateUnavailable, match="corrupt"):
        load_index(session, run)
    target.unlink()
    with pytest.raises(GateUnavailable, match="unreadable"):
        load_index(session, run)


def test_corrupt_or_missing_fingerprints_fail_closed(
    session: Session, embedder: StandInEmbedder
) -> None:
    run = make_run(session)
    index = build_demo_index(session, embedder, run)
    assert index.path is not None
    target: Path = index.path / "fingerprints" / "manifest.json"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(GateUnavailable, match="fingerprints .* corrupt"):
        load_index(session, run)
    target.unlink()
    with pytest.raises(GateUnavailable, match="unreadable"):
        load_index(session, run)


def test_index_without_fingerprints_fails_closed(
    session: Session, embedder: StandInEmbedder
) -> None:
    index = build_demo_index(session, embedder, make_run(session))
    index.thresholds = {k: v for k, v in index.thresholds.items() if k != "fingerprint"}
    with pytest.raises(GateUnavailable, match="without the fingerprint detector"):
        SimilarityGate(index, embedder)
    index = build_demo_index(session, embedder, make_run(session))
    index.fingerprints = None
    with pytest.raises(GateUnavailable, match="fingerprints are not loaded"):
        SimilarityGate(index, embedder)


class BrokenEmbedder(StandInEmbedder):
    def embed_audio(self, wave_16k: np.ndarray) -> np.ndarray:
        raise RuntimeError("CUDA out of memory")


class NaNEmbedder(StandInEmbedder):
    def embed_audio(self, wave_16k: np.ndarray) -> np.ndarray:
        out = super().embed_audio(wave_16k)
        out[0, 0] = np.nan
        return out


def test_embedder_error_fails_closed(session: Session, embedder: StandInEmbedder) -> None:
    gate = SimilarityGate(build_demo_index(session, embedder, make_run(session)), BrokenEmbedder())
    with pytest.raises(GateUnavailable, match="embedder failed"):
        gate.check(tone_clip([440.0]))


def test_nan_scores_fail_closed(session: Session, embedder: StandInEmbedder) -> None:
    index = build_demo_index(session, embedder, make_run(session))
    with pytest.raises(GateUnavailable, match="NaN"):
        SimilarityGate(index, NaNEmbedder()).check(tone_clip([440.0]))
    gate = SimilarityGate(index, embedder)
    with pytest.raises(GateUnavailable, match="NaN"):
        gate.check(np.full(SR * 10, np.nan, dtype=np.float32))


def test_uncalibrated_index_fails_closed(session: Session, embedder: StandInEmbedder) -> None:
    index = build_demo_index(session, embedder, make_run(session))
    with pytest.raises(GateUnavailable, match="calibrate"):
        SimilarityGate(index, embedder, thresholds={"track": float("nan"), "artist": 0.9})
    index.thresholds = {}
    with pytest.raises(GateUnavailable, match="calibrate"):
        SimilarityGate(index, embedder)


def test_cli_gate_check_fails_closed_without_index(
    session: Session, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fairchord gate check` exits 6 (could not decide) — never 0 — when the run has no index."""
    import soundfile as sf
    from typer.testing import CliRunner

    from flows.cli import app
    from provenance.models import Checkpoint
    from provenance.settings import DB_URL_ENV

    run = make_run(session)
    session.add(Checkpoint(training_run_id=run.id, sha256="12" * 32, uri="x", step=1))
    session.commit()
    monkeypatch.setenv(DB_URL_ENV, db_url)
    clip = tmp_path / "clip.wav"
    sf.write(clip, tone_clip([440.0]), SR)
    runner = CliRunner()
    result = runner.invoke(app, ["gate", "check", str(clip), "--json"])
    assert result.exit_code == 6, result.output
    missing = runner.invoke(app, ["gate", "check", str(tmp_path / "nope.wav")])
    assert missing.exit_code == 2


def test_many_window_clips_get_a_raised_threshold(
    session: Session, embedder: StandInEmbedder
) -> None:
    """A whole track must not get more chances to cross than a 10 s clip."""
    index = build_demo_index(session, embedder, make_run(session))
    tail = {"z_mean": 1.0, "z_sd": 0.3, "rate": 0.01 / 3}
    index.thresholds = {**index.thresholds, "track_tail": tail, "artist_tail": tail}
    gate = SimilarityGate(index, embedder)
    assert gate.threshold_for("track", 1) == 0.95
    raised = gate.threshold_for("track", 40)
    assert raised > gate.threshold_for("track", 10) > 0.95
    result = gate.check(tone_clip([440.0], seconds=60.0))
    assert result.thresholds["effective"]["windows"] == 11
    assert result.thresholds["effective"]["track"] == gate.threshold_for("track", 11)
    index.thresholds = {**index.thresholds, "track_tail": {"z_mean": 1.0, "rate": 0.5}}
    with pytest.raises(GateUnavailable, match="track_tail is malformed"):
        SimilarityGate(index, embedder)
