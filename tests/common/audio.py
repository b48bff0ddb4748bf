"""Synthetic audio: "music" files in every accepted format, landmark-rich melodies, plucked
tunes, tone clips, and a pitch shift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from generation.melody import SAMPLE_RATE

# Melodies and tone clips are 16 kHz mono, the rate the gate's detectors read.
CLIP_SR = 16_000

FORMATS = {  # extension → (soundfile format, subtype)
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}

SCALE = np.array([0, 2, 4, 5, 7, 9, 11, 12])


def synth_music(seed: int, *, seconds: float = 4.0, sr: int = 22050) -> np.ndarray:
    """Stereo "music": random decaying harmonic notes plus a little noise, [frames, 2]."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros(n, np.float32)
    t = 0
    while t < n:
        dur = int(rng.uniform(0.1, 0.5) * sr)
        freq = 110 * 2 ** (rng.integers(0, 36) / 12)
        tt = np.arange(min(dur, n - t)) / sr
        env = np.exp(-tt * rng.uniform(2, 8))
        note = sum((0.5 / k) * np.sin(2 * np.pi * freq * k * tt) for k in range(1, 5)) * env
        out[t : t + len(tt)] += 0.3 * note
        t += dur
    out += 0.003 * rng.standard_normal(n).astype(np.float32)
    return np.stack([out, np.roll(out, 100) * 0.8], axis=1)


def write_music(path: Path, seed: int, *, seconds: float = 4.0, sr: int = 22050) -> Path:
    fmt, subtype = FORMATS[path.suffix.lstrip(".")]
    sf.write(path, synth_music(seed, seconds=seconds, sr=sr), sr, format=fmt, subtype=subtype)
    return path


def melody(seed: int, *, seconds: float = 20.0) -> np.ndarray:
    """Notes with harmonics and decaying envelopes at random pitches and onsets: music-like
    peak constellations that differ from seed to seed."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * CLIP_SR), dtype=np.float64)
    onset = 0.0
    while onset < seconds - 0.3:
        length = rng.uniform(0.15, 0.6)
        n = int(length * CLIP_SR)
        start = int(onset * CLIP_SR)
        t = np.arange(n) / CLIP_SR
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


def pitch_shift(w: np.ndarray, steps: float) -> np.ndarray:
    """``w`` (16 kHz) moved by ``steps`` semitones, same length."""
    import librosa

    return librosa.effects.pitch_shift(w, sr=CLIP_SR, n_steps=steps).astype(np.float32)


def tone_clip(freqs: list[float], *, seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """The partials ``freqs`` at random phases over a little noise, 16 kHz."""
    t = np.arange(int(seconds * CLIP_SR)) / CLIP_SR
    rng = np.random.default_rng(seed)
    wave = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28)) for f in freqs)
    return (0.2 * wave / len(freqs) + 0.001 * rng.standard_normal(t.size)).astype(np.float32)


def tune(seed: int, notes: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Random MIDI pitches in C major and note lengths in seconds."""
    rng = np.random.default_rng(seed)
    return 60 + rng.choice(SCALE, notes), rng.choice([0.25, 0.5, 0.5, 1.0], notes)


def play(
    pitches: np.ndarray,
    lengths: np.ndarray,
    *,
    semitones: int = 0,
    tempo: float = 1.0,
    harmonics: tuple[float, ...] = (1.0, 0.5, 0.25),
) -> np.ndarray:
    """Plucked harmonic notes at the melody detector's rate; ``tempo`` 1.1 plays 10 % faster."""
    notes = []
    for pitch, length in zip(pitches, lengths, strict=True):
        t = np.arange(int(SAMPLE_RATE * length / tempo)) / SAMPLE_RATE
        f0 = 440.0 * 2.0 ** ((pitch + semitones - 69) / 12.0)
        tone = sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t) for k, a in enumerate(harmonics))
        notes.append(tone * np.minimum(1.0, t / 0.02) * np.exp(-2.0 * t))
    return (0.2 * np.concatenate(notes)).astype(np.float32)
