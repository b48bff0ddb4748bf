"""Audio transforms a replayed training clip might go through, at 16 kHz mono float32.

Used twice: by CLAP training's augmentation-invariance term (a clip should
stay close to itself after these), and by gate calibration and evaluation as
the "replay" positives. Each transform is a pure function of the waveform
(random ones take a seeded ``numpy.random.Generator``).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

RATE = 16_000
Transform = Callable[[np.ndarray], np.ndarray]


def _f32(wave: np.ndarray | torch.Tensor) -> np.ndarray:
    out = wave.numpy() if isinstance(wave, torch.Tensor) else wave
    return np.ascontiguousarray(out, dtype=np.float32)


def gain(wave: np.ndarray, *, db: float) -> np.ndarray:
    return _f32(wave * (10.0 ** (db / 20.0)))


def add_noise(wave: np.ndarray, *, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(np.square(wave, dtype=np.float64))) or 1e-12
    noise = rng.standard_normal(wave.size) * np.sqrt(power / 10.0 ** (snr_db / 10.0))
    return _f32(wave + noise)


def low_pass(wave: np.ndarray, *, cutoff_hz: float, rate: int = RATE) -> np.ndarray:
    # Two cascaded biquads: a 24 dB/octave slope, like a typical EQ low-cut.
    out = torch.from_numpy(_f32(wave))
    for _ in range(2):
        out = AF.lowpass_biquad(out, rate, cutoff_hz)
    return _f32(out)


def high_pass(wave: np.ndarray, *, cutoff_hz: float, rate: int = RATE) -> np.ndarray:
    out = torch.from_numpy(_f32(wave))
    for _ in range(2):
        out = AF.highpass_biquad(out, rate, cutoff_hz)
    return _f32(out)


def _stft_stretch(wave: np.ndarray, rate_factor: float) -> np.ndarray:
    """Phase-vocoder time stretch: duration / ``rate_factor``, pitch unchanged."""
    n_fft, hop = 1024, 256
    window = torch.hann_window(n_fft)
    spec = torch.stft(torch.from_numpy(_f32(wave)), n_fft, hop, window=window, return_complex=True)
    phase_advance = torch.linspace(0, np.pi * hop, spec.shape[-2])[..., None]
    stretched = AF.phase_vocoder(spec, rate_factor, phase_advance)
    length = int(round(wave.size / rate_factor))
    return _f32(torch.istft(stretched, n_fft, hop, window=window, length=length))


def time_stretch(wave: np.ndarray, *, factor: float) -> np.ndarray:
    """Tempo × ``factor`` (1.1 = 10 % faster), pitch kept."""
    return _stft_stretch(wave, factor)


def pitch_shift(wave: np.ndarray, *, semitones: float, rate: int = RATE) -> np.ndarray:
    """Pitch by ``semitones``, duration kept: stretch, then resample back to length."""
    ratio = 2.0 ** (semitones / 12.0)
    stretched = _stft_stretch(wave, 1.0 / ratio)
    # Resampling by the ratio restores the duration and moves the pitch.
    # Rounded to 50 Hz so the polyphase resampler stays cheap (< 0.2 % pitch error).
    new_rate = max(50, int(round(rate / ratio / 50.0)) * 50)
    out = AF.resample(torch.from_numpy(stretched), rate, new_rate)
    out_np = _f32(out)
    if out_np.size >= wave.size:
        return out_np[: wave.size]
    return np.pad(out_np, (0, wave.size - out_np.size))


REENCODE_BLOCK = 65_536  # samples per libsndfile write


def reencode(wave: np.ndarray, *, fmt: str, rate: int = RATE) -> np.ndarray:
    """Lossy round trip through OGG Vorbis or MP3 (libsndfile), in memory."""
    formats = {"ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III")}
    if fmt not in formats:
        raise ValueError(f"unknown format {fmt!r}; allowed: {sorted(formats)}")
    container, subtype = formats[fmt]
    buffer = io.BytesIO()
    clipped = np.clip(_f32(wave), -1.0, 1.0)
    # Written in blocks: one libsndfile write of minutes of audio overflows its encoder's
    # stack (a segfault on long recordings).
    with sf.SoundFile(
        buffer, "w", samplerate=rate, channels=1, format=container, subtype=subtype
    ) as out:
        for start in range(0, clipped.size, REENCODE_BLOCK):
            out.write(clipped[start : start + REENCODE_BLOCK])
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32", always_2d=False)
    decoded = decoded if decoded.ndim == 1 else decoded.mean(axis=1)
    if decoded.size >= wave.size:
        return _f32(decoded[: wave.size])
    return _f32(np.pad(decoded, (0, wave.size - decoded.size)))


def crop(wave: np.ndarray, *, seconds: float, rng: np.random.Generator | None = None) -> np.ndarray:
    size = int(seconds * RATE)
    if wave.size <= size:
        return _f32(wave)
    start = 0 if rng is None else int(rng.integers(0, wave.size - size))
    return _f32(wave[start : start + size])


def mix_under(wave: np.ndarray, other: np.ndarray, *, db: float = -6.0) -> np.ndarray:
    """``wave`` mixed ``db`` below another track (the other track dominates)."""
    other = np.resize(_f32(other), wave.size)
    rms_w = float(np.sqrt(np.mean(np.square(wave)))) or 1e-9
    rms_o = float(np.sqrt(np.mean(np.square(other)))) or 1e-9
    return _f32(other + wave * (rms_o / rms_w) * 10.0 ** (db / 20.0))


def calibration_transforms(*, seed: int = 0) -> dict[str, Transform]:
    """The replay transforms the gate is calibrated and evaluated on, by name."""

    def rng() -> np.random.Generator:
        return np.random.default_rng(seed)

    return {
        "pitch_+1": lambda w: pitch_shift(w, semitones=1),
        "pitch_-1": lambda w: pitch_shift(w, semitones=-1),
        "pitch_+2": lambda w: pitch_shift(w, semitones=2),
        "pitch_-2": lambda w: pitch_shift(w, semitones=-2),
        "tempo_+5%": lambda w: time_stretch(w, factor=1.05),
        "tempo_-5%": lambda w: time_stretch(w, factor=0.95),
        "tempo_+10%": lambda w: time_stretch(w, factor=1.10),
        "tempo_-10%": lambda w: time_stretch(w, factor=0.90),
        "noise_20db": lambda w: add_noise(w, snr_db=20, rng=rng()),
        "lowpass_4k": lambda w: low_pass(w, cutoff_hz=4000),
        "mp3": lambda w: reencode(w, fmt="mp3"),
        "ogg": lambda w: reencode(w, fmt="ogg"),
        "crop_5s": lambda w: crop(w, seconds=5.0),
        "gain_+6db": lambda w: np.clip(gain(w, db=6), -1, 1),
        "gain_-6db": lambda w: gain(w, db=-6),
    }


def random_augmentation(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random training-time augmentation (for CLAP's invariance term)."""
    choice = int(rng.integers(0, 7))
    if choice == 0:
        return pitch_shift(wave, semitones=float(rng.uniform(-2, 2)))
    if choice == 1:
        out = time_stretch(wave, factor=float(rng.uniform(0.9, 1.1)))
        return np.resize(out, wave.size)
    if choice == 2:
        return add_noise(wave, snr_db=20, rng=rng)
    if choice == 3:
        return low_pass(wave, cutoff_hz=float(rng.uniform(2500, 6000)))
    if choice == 4:
        return high_pass(wave, cutoff_hz=float(rng.uniform(100, 400)))
    if choice == 5:
        return reencode(wave, fmt="ogg" if rng.integers(0, 2) else "mp3")
    return gain(wave, db=float(rng.uniform(-6, 6)))
