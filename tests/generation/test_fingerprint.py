"""Landmark fingerprints: replays survive pitch, tempo, noise and codec changes; other music
does not match; the stored form round-trips."""

from __future__ import annotations

import io

import numpy as np
import pytest

from generation.fingerprint import MIN_THRESHOLD, FingerprintIndex, quads
from tests.common.audio import CLIP_SR as SR
from tests.common.audio import melody, pitch_shift


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
    "pitch_+2st": lambda w: pitch_shift(w, 2),
    "pitch_-1st": lambda w: pitch_shift(w, -1),
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
    up = reference.match(pitch_shift(melody(2), 2))
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
