"""The gate's test doubles: a deterministic stand-in embedder, training runs, demo gate indexes
over tone clips or melodies, and outside-music cohorts for calibration."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from generation.cohort import load_cohort, write_cohort
from generation.fingerprint import MIN_THRESHOLD, FingerprintIndex
from generation.index import (
    GateIndex,
    build_index_for_run,
    load_index,
    store_fingerprints,
    store_thresholds,
)
from generation.melody import SAMPLE_RATE, chroma
from generation.melody_cohort import MelodyCohort, load_melody_cohort, write_melody_cohort
from provenance.index_files import FINGERPRINTS_LAYOUT
from provenance.models import EmbeddingIndex, TrainingRun, utcnow
from tests.common.audio import CLIP_SR, melody, play, tone_clip, tune

SR = CLIP_SR
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
    entry = {"threshold": threshold, "sha256": sha, "layout": FINGERPRINTS_LAYOUT}
    thresholds = {**(row.thresholds or {}), "fingerprint": entry}
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


def melody_cohort(path: Path, seeds: range = range(100, 124)) -> MelodyCohort:
    """Other tunes, on other instruments, as shipped cohorts store them (30 s chroma)."""
    classes, loudness = [], []
    for seed in seeds:
        wave = play(*tune(seed, notes=64), harmonics=(1.0, 0.3, 0.6))[: 30 * SAMPLE_RATE]
        c, loud = chroma(wave)
        classes.append(c)
        loudness.append(loud)
    meta = [
        {
            "package": "test",
            "path": f"tune-{s}",
            "artist": f"a{s}",
            "licence": "CC0-1.0",
            "sha256": f"{s:064x}",
        }
        for s in seeds
    ]
    write_melody_cohort(path, classes=classes, loudness=loudness, meta=meta)
    return load_melody_cohort(path)


def stand_in_cohort(embedder: Any, path: Path) -> Any:
    """A cohort of outside "music" (other melodies) embedded by the stand-in embedder."""
    tracks = [np.asarray(embedder.embed_audio(melody(100 + i)[: 16_000 * 30])) for i in range(12)]
    write_cohort(
        path,
        embedder_sha256=embedder.sha256,
        tracks=tracks,
        roles=["cohort" if i % 2 else "calibration" for i in range(12)],
        meta=[
            {
                "package": "test",
                "path": f"melody-{i}",
                "artist": f"a{i}",
                "licence": "CC0-1.0",
                "excerpt_seconds": 30.0,
            }
            for i in range(12)
        ],
    )
    return load_cohort(path, embedder_sha256=embedder.sha256)
