"""Similarity gate: replays blocked, unrelated audio allowed, every fail-closed path raises."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from generation.fingerprint import MIN_THRESHOLD, FingerprintIndex
from generation.gate import GateUnavailable, SimilarityGate, record_gate_decision
from generation.index import (
    GateIndex,
    build_index_for_run,
    load_index,
    store_fingerprints,
    store_thresholds,
)
from provenance.models import AuditEvent, EmbeddingIndex, GateDecision, TrainingRun, utcnow
from tests.generation.test_fingerprint import _pitch, melody

SR = 16_000
WINDOW_S = 10.0
HOP_S = 5.0


class StandInEmbedder:
    """Deterministic: a fixed random projection of each 10 s window's centred log band energies."""

    def __init__(self, *, dim: int = 32, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.bands = 64
        self.projection = rng.standard_normal((self.bands, dim)).astype(np.float32)
        self.sha256 = hashlib.sha256(self.projection.tobytes()).hexdigest()

    def _window(self, wave: np.ndarray) -> np.ndarray:
        spectrum = np.abs(np.fft.rfft(wave, n=8192)) ** 2
        edges = np.geomspace(8, spectrum.size - 1, self.bands + 1).astype(int)
        energy = np.array(
            [spectrum[a : max(b, a + 1)].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)]
        )
        logs = np.log10(energy + 1e-9)
        logs -= logs.mean()
        vec = logs.astype(np.float32) @ self.projection
        return vec / np.linalg.norm(vec)

    def embed_audio(self, wave_16k: np.ndarray) -> np.ndarray:
        size, hop = int(WINDOW_S * SR), int(HOP_S * SR)
        wave = np.asarray(wave_16k, dtype=np.float32)
        if wave.size < size:
            wave = np.pad(wave, (0, size - wave.size))
        starts = range(0, wave.size - size + 1, hop)
        return np.stack([self._window(wave[s : s + size]) for s in starts]).astype(np.float32)


def tone_clip(freqs: list[float], *, seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    wave = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28)) for f in freqs)
    return (0.2 * wave / len(freqs) + 0.001 * rng.standard_normal(t.size)).astype(np.float32)


TRAINING = {  # recording id -> (artist party id, partials)
    1: (101, [220.0, 440.0, 660.0]),
    2: (101, [246.9, 493.9, 740.8]),
    3: (102, [1200.0, 2400.0, 3600.0]),
    4: (102, [1500.0, 3000.0]),
    5: (103, [80.0, 160.0, 5000.0]),
}


def make_run(session: Session, *, digest: str | None = "ab" * 32) -> TrainingRun:
    run = TrainingRun(
        policy_name="demo",
        policy_version="1",
        policy_sha256="cd" * 32,
        config_name="debug",
        snapshot_at=utcnow(),
        members_digest=digest,
    )
    session.add(run)
    session.flush()
    return run


def attach_fingerprints(
    session: Session,
    row: EmbeddingIndex,
    waves: dict[int, np.ndarray],
    artists: dict[int, list[int]],
    *,
    threshold: float = MIN_THRESHOLD,
) -> None:
    """Fingerprint ``waves`` into the index and record the detector's threshold and digest."""
    sha = store_fingerprints(row, FingerprintIndex.build(waves, artists))
    thresholds = {**(row.thresholds or {}), "fingerprint": {"threshold": threshold, "sha256": sha}}
    store_thresholds(session, row, thresholds)


def build_demo_index(
    session: Session,
    embedder: StandInEmbedder,
    run: TrainingRun,
    *,
    track_threshold: float = 0.95,
    training: dict[int, np.ndarray] | None = None,
) -> GateIndex:
    """Index the TRAINING tones (or ``training``: recording id → wave, artist 100 + id)."""
    waves = training or {
        rec: tone_clip(freqs, seconds=20.0, seed=rec) for rec, (_, freqs) in TRAINING.items()
    }
    artist_of = (
        {rec: 100 + rec for rec in waves}
        if training
        else {rec: artist for rec, (artist, _) in TRAINING.items()}
    )
    vectors, rec_ids, seg_ids, artists = [], [], [], []
    for rec, wave in waves.items():
        artist = artist_of[rec]
        windows = embedder.embed_audio(wave)
        for j, vec in enumerate(windows):
            vectors.append(vec)
            rec_ids.append(rec)
            seg_ids.append(j)
            artists.append([artist])
    row = build_index_for_run(
        session,
        run.id,
        embeddings=np.stack(vectors),
        recording_ids=rec_ids,
        segment_index=seg_ids,
        artist_ids=artists,
        embedder_sha256=embedder.sha256,
        snapshot_digest=run.members_digest,
        thresholds={"track": track_threshold, "artist": 0.9, "false_block_rate": 0.01},
    )
    attach_fingerprints(session, row, waves, {rec: [a] for rec, a in artist_of.items()})
    return load_index(session, run, embedder_sha256=embedder.sha256)


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
    result = gate.check(_pitch(training[2], 2)[: SR * 10])
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
    target: Path = index.path / "fingerprints.npz"
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
