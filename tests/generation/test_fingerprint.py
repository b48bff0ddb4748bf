"""Landmark fingerprints: replays survive pitch, tempo, noise and codec changes; other music
does not match; the stored form round-trips."""

from __future__ import annotations

import io

import numpy as np
import pytest

from generation.fingerprint import MIN_THRESHOLD, FingerprintIndex, quads

SR = 16_000


def melody(seed: int, *, seconds: float = 20.0) -> np.ndarray:
    """Notes with harmonics and decaying envelopes at random pitches and onsets: music-like
    peak constellations that differ from seed to seed."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * SR), dtype=np.float64)
    onset = 0.0
    while onset < seconds - 0.3:
        length = rng.uniform(0.15, 0.6)
        n = int(length * SR)
        start = int(onset * SR)
        t = np.arange(n) / SR
        f0 = 220.0 * 2 ** (rng.integers(0, 30) / 12)
        envelope = np.exp(-t * rng.uniform(3, 9))
        note = sum(
            (0.6**h) * np.sin(2 * np.pi * f0 * (h + 1) * t + rng.uniform(0, 6.28)) for h in range(4)
        )
        end = min(out.size, start + n)
        out[start:end] += (envelope * note)[: end - start]
        onset += rng.choice([0.125, 0.25, 0.25, 0.5])
    out += 0.003 * rng.standard_normal(out.size)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def _pitch(w: np.ndarray, steps: float) -> np.ndarray:
    import librosa

    return librosa.effects.pitch_shift(w, sr=SR, n_steps=steps).astype(np.float32)


def _tempo(w: np.ndarray, rate: float) -> np.ndarray:
    import librosa

    return librosa.effects.time_stretch(w, rate=rate).astype(np.float32)


def _noise(w: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(5)
    power = float(np.mean(w.astype(np.float64) ** 2))
    return (w + rng.standard_normal(w.size) * np.sqrt(power / 100.0)).astype(np.float32)


def _ogg(w: np.ndarray) -> np.ndarray:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, w, SR, format="OGG", subtype="VORBIS")
    buf.seek(0)
    return sf.read(buf, dtype="float32")[0]


TRANSFORMS = {
    "identity": lambda w: w,
    "pitch_+2st": lambda w: _pitch(w, 2),
    "pitch_-1st": lambda w: _pitch(w, -1),
    "tempo_+10%": lambda w: _tempo(w, 1.10),
    "tempo_-5%": lambda w: _tempo(w, 0.95),
    "noise_20db": _noise,
    "ogg": _ogg,
    "crop_5s": lambda w: w[5 * SR : 10 * SR],
    "gain_-6db": lambda w: (0.5 * w).astype(np.float32),
}


@pytest.fixture(scope="module")
def reference() -> FingerprintIndex:
    waves = {rec: melody(rec) for rec in (1, 2, 3, 4)}
    return FingerprintIndex.build(waves, {1: [10], 2: [10], 3: [20], 4: [30]})


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transformed_replay_matches_its_recording(reference: FingerprintIndex, name: str) -> None:
    copy = TRANSFORMS[name](melody(3))
    match = reference.match(copy)
    assert match.recording_id == 3
    assert match.score >= MIN_THRESHOLD, (name, match)


def test_pitch_and_tempo_are_reported(reference: FingerprintIndex) -> None:
    up = reference.match(_pitch(melody(2), 2))
    assert up.pitch_semitones == pytest.approx(2.0, abs=0.5)
    faster = reference.match(_tempo(melody(2), 1.10))
    assert faster.time_scale == pytest.approx(1 / 1.10, abs=0.03)


def test_other_music_stays_below_the_floor(reference: FingerprintIndex) -> None:
    for seed in range(100, 106):
        assert reference.match(melody(seed)).score < MIN_THRESHOLD


def test_excluded_recordings_are_not_matched(reference: FingerprintIndex) -> None:
    match = reference.match(melody(3), exclude_recordings=[3])
    assert match.recording_id != 3
    assert match.score < MIN_THRESHOLD


def test_silence_and_short_clips_have_no_match(reference: FingerprintIndex) -> None:
    assert len(quads(np.zeros(SR * 3, dtype=np.float32))) == 0
    assert reference.match(np.zeros(SR, dtype=np.float32)).score == 0
    assert reference.match(melody(1)[:100]).score == 0


def test_round_trip_keeps_matches(reference: FingerprintIndex) -> None:
    loaded = FingerprintIndex.from_bytes(reference.to_bytes())
    assert len(loaded) == len(reference)
    assert loaded.artists == reference.artists
    copy = _noise(melody(4))
    assert loaded.match(copy) == reference.match(copy)


def test_other_format_version_is_refused(reference: FingerprintIndex) -> None:
    data = io.BytesIO()
    np.savez(data, version=np.array([999]))
    with pytest.raises(ValueError, match="format"):
        FingerprintIndex.from_bytes(data.getvalue())


def test_long_clips_are_matched_in_windows(reference: FingerprintIndex) -> None:
    """A replay inside a long clip still scores in full; a long unrelated clip stays low."""
    long_other = np.concatenate([melody(seed) for seed in (200, 201, 202, 203)])  # 80 s
    assert reference.match_windows(long_other).score < MIN_THRESHOLD
    planted = long_other.copy()
    planted[35 * SR : 45 * SR] = melody(4)[: 10 * SR]
    match = reference.match_windows(planted)
    assert match.recording_id == 4 and match.score >= MIN_THRESHOLD
    short = melody(1)[: 10 * SR]
    assert reference.match_windows(short) == reference.match(short)
