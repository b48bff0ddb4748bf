"""Cheap acoustic descriptors of a clip: tempo, key, loudness, brightness, onsets, dynamics.

They are computed from what featurization already has: the log-mel (for the
onset envelope and tempo) and one coarse-time, fine-frequency STFT of the
16 kHz waveform (for chroma, key and spectral centroid). No librosa at run
time; the methods are the textbook ones (spectral-flux onsets,
autocorrelation tempo with a log-normal prior around 120 BPM,
Krumhansl–Schmuckler key profiles).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from training.mel import DEFAULT_MEL_CONFIG, MelConfig

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Krumhansl & Kessler (1982) probe-tone profiles, C major / C minor.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

CHROMA_N_FFT = 4096  # 3.9 Hz bins at 16 kHz: enough to tell semitones apart above ~65 Hz
CHROMA_HOP = 2048
CHROMA_FMIN = 65.0
CHROMA_FMAX = 2100.0
SILENCE_DBFS = -60.0
TOP_DB_NATURAL_LOG = 80.0 / 20.0 * math.log(10.0)  # 80 dB of magnitude, in log-mel units


@dataclass(frozen=True)
class Descriptors:
    """What a clip sounds like, in numbers (``None`` where the clip is too quiet to tell)."""

    duration_s: float
    rms_dbfs: float  # loudness of the valid audio (RMS, dB full scale)
    tempo_bpm: float | None
    tempo_confidence: float  # 0..1, autocorrelation peak height
    key: str | None  # pitch class, e.g. "A"
    mode: str | None  # "major" | "minor"
    key_confidence: float  # correlation with the winning profile, -1..1
    centroid_hz: float | None  # spectral centroid, magnitude-weighted over frames
    onset_rate: float  # onsets per second
    percussiveness: float  # 0..1: share of spectral flux in sharp peaks
    dynamic_range_db: float  # 95th - 10th percentile of frame loudness
    silent: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_chroma_maps: dict[int, torch.Tensor] = {}


def _chroma_map(sample_rate: int) -> torch.Tensor:
    """[12, bins] 0/1 matrix folding STFT bins in [CHROMA_FMIN, CHROMA_FMAX] into pitch classes."""
    cached = _chroma_maps.get(sample_rate)
    if cached is not None:
        return cached
    freqs = np.fft.rfftfreq(CHROMA_N_FFT, 1.0 / sample_rate)
    mapping = np.zeros((12, len(freqs)), dtype=np.float32)
    ok = (freqs >= CHROMA_FMIN) & (freqs <= CHROMA_FMAX)
    midi = 69 + 12 * np.log2(freqs[ok] / 440.0)
    pcs = np.mod(np.round(midi).astype(int), 12)
    mapping[pcs, np.nonzero(ok)[0]] = 1.0
    tensor = torch.from_numpy(mapping)
    _chroma_maps[sample_rate] = tensor
    return tensor


def estimate_key(chroma: np.ndarray) -> tuple[str | None, str | None, float]:
    """Best (pitch class, mode, correlation) of a 12-bin chroma vector against the 24 keys."""
    if not np.any(chroma > 0) or float(np.std(chroma)) < 1e-9:
        return None, None, 0.0
    best: tuple[float, int, str] = (-2.0, 0, "major")
    for mode, profile in (("major", _MAJOR_PROFILE), ("minor", _MINOR_PROFILE)):
        for tonic in range(12):
            r = float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1])
            if r > best[0]:
                best = (r, tonic, mode)
    return PITCH_CLASSES[best[1]], best[2], best[0]


def onset_envelope(log_mel: torch.Tensor) -> np.ndarray:
    """Spectral flux of the log-mel: summed positive frame-to-frame increase, per frame."""
    # Ignore what lies more than 80 dB under the clip's peak (librosa's top_db), so
    # noise in near-silent bins does not read as onsets.
    floored = log_mel.clamp_min(float(log_mel.max()) - TOP_DB_NATURAL_LOG)
    diff = torch.diff(floored, dim=-1).clamp_min(0).mean(dim=0)
    return diff.numpy().astype(np.float64)


def estimate_tempo(
    envelope: np.ndarray, *, frames_per_second: float, min_bpm: float = 50.0, max_bpm: float = 200.0
) -> tuple[float | None, float]:
    """Tempo (BPM) from the autocorrelation of the onset envelope, weighted toward 120 BPM."""
    env = envelope - envelope.mean()
    n = len(env)
    if n < 4 or float(np.dot(env, env)) <= 1e-12:
        return None, 0.0
    size = 1 << (2 * n - 1).bit_length()
    spec = np.fft.rfft(env, size)
    ac = np.fft.irfft(spec * np.conj(spec), size)[:n]
    ac /= ac[0]
    lo = max(1, int(math.floor(frames_per_second * 60.0 / max_bpm)))
    hi = min(n - 1, int(math.ceil(frames_per_second * 60.0 / min_bpm)))
    if hi <= lo:
        return None, 0.0
    lags = np.arange(lo, hi + 1)
    bpms = 60.0 * frames_per_second / lags
    # Log-normal prior centred on 120 BPM (one octave of std), as in Ellis (2007).
    prior = np.exp(-0.5 * (np.log2(bpms / 120.0)) ** 2)
    scores = ac[lo : hi + 1] * prior
    i = int(np.argmax(scores))
    if ac[lo + i] <= 0:
        return None, 0.0
    # Parabolic interpolation around the peak for sub-frame precision.
    lag = float(lags[i])
    if 0 < i < len(scores) - 1:
        a, b, c = scores[i - 1], scores[i], scores[i + 1]
        denom = a - 2 * b + c
        if denom != 0:
            lag += 0.5 * (a - c) / denom
    return 60.0 * frames_per_second / lag, float(np.clip(ac[lo + i], 0.0, 1.0))


def _pick_onsets(envelope: np.ndarray, *, frames_per_second: float) -> tuple[int, float]:
    """Count onsets; return (count, share of flux in onset frames).

    Peak picking as in librosa's ``onset_detect`` defaults: the envelope is
    scaled to [0, 1]; a frame is an onset when it is the maximum of the last
    30 ms, exceeds the mean of +-100 ms by 0.07, and is 30 ms after the previous one.
    """
    n = len(envelope)
    lo, hi = float(envelope.min(initial=0.0)), float(envelope.max(initial=0.0))
    if n < 3 or hi - lo <= 1e-9:
        return 0, 0.0
    env = (envelope - lo) / (hi - lo)
    pre_max = max(1, int(round(0.03 * frames_per_second)))
    avg = max(1, int(round(0.10 * frames_per_second)))
    wait = max(1, int(round(0.03 * frames_per_second)))
    padded = np.concatenate((np.full(pre_max, -np.inf), env))
    windows = np.lib.stride_tricks.sliding_window_view(padded, pre_max + 1)
    is_max = env >= windows.max(axis=1)
    kernel = np.ones(2 * avg + 1)
    counts = np.convolve(np.ones(n), kernel, mode="same")
    local_mean = np.convolve(env, kernel, mode="same") / counts
    candidates = np.nonzero(is_max & (env >= local_mean + 0.07))[0]
    kept: list[int] = []
    for p in candidates:
        if not kept or p - kept[-1] > wait:
            kept.append(int(p))
    peak_flux = float(envelope[kept].sum()) if kept else 0.0
    return len(kept), peak_flux / float(envelope.sum())


def compute_descriptors(
    wave_16k: np.ndarray,
    log_mel: torch.Tensor,
    *,
    valid_samples: int | None = None,
    mel_config: MelConfig = DEFAULT_MEL_CONFIG,
) -> Descriptors:
    """Descriptors of one clip from its waveform (mel rate) and its log-mel ``[n_mels, frames]``.

    ``valid_samples`` excludes trailing zero padding of a partial window.
    """
    sr = mel_config.sample_rate
    wave = np.asarray(wave_16k, dtype=np.float32)
    valid = len(wave) if valid_samples is None else max(0, min(valid_samples, len(wave)))
    wave = wave[:valid]
    hop = mel_config.hop_length
    valid_frames = min(log_mel.shape[-1], max(1, math.ceil(valid / hop)))
    mel = log_mel[:, :valid_frames]
    fps = mel_config.frames_per_second
    duration = valid / sr

    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if valid else 0.0
    rms_dbfs = 20 * math.log10(max(rms, 1e-10))
    silent = rms_dbfs < SILENCE_DBFS
    if silent or valid < CHROMA_N_FFT:
        return Descriptors(
            duration_s=duration,
            rms_dbfs=rms_dbfs,
            tempo_bpm=None,
            tempo_confidence=0.0,
            key=None,
            mode=None,
            key_confidence=0.0,
            centroid_hz=None,
            onset_rate=0.0,
            percussiveness=0.0,
            dynamic_range_db=0.0,
            silent=silent,
        )

    # Frame loudness on 100 ms blocks for the dynamic range.
    block = sr // 10
    blocks = valid // block
    if blocks >= 2:
        frame_rms = np.sqrt(
            np.mean(np.square(wave[: blocks * block].reshape(blocks, block)), axis=1)
        )
        frame_db = 20 * np.log10(np.maximum(frame_rms, 1e-10))
        frame_db = (
            frame_db[frame_db > SILENCE_DBFS] if np.any(frame_db > SILENCE_DBFS) else frame_db
        )
        dynamic_range = float(np.percentile(frame_db, 95) - np.percentile(frame_db, 10))
    else:
        dynamic_range = 0.0

    # One coarse STFT gives both chroma (fine frequency) and the spectral centroid.
    spec = torch.stft(
        torch.from_numpy(np.ascontiguousarray(wave)),
        n_fft=CHROMA_N_FFT,
        hop_length=CHROMA_HOP,
        window=torch.hann_window(CHROMA_N_FFT),
        center=False,
        return_complex=True,
    ).abs()  # [bins, frames]
    # Magnitude-weighted centroid over all frames (librosa's definition, pooled).
    freqs = torch.from_numpy(np.fft.rfftfreq(CHROMA_N_FFT, 1.0 / sr).astype(np.float32))
    total = float(spec.sum())
    centroid = float((freqs[:, None] * spec).sum()) / total if total > 0 else None
    chroma = (_chroma_map(sr) @ spec).sum(dim=1).numpy().astype(np.float64)
    key, mode, key_conf = estimate_key(chroma)

    envelope = onset_envelope(mel)
    tempo, tempo_conf = estimate_tempo(envelope, frames_per_second=fps)
    onsets, percussiveness = _pick_onsets(envelope, frames_per_second=fps)
    return Descriptors(
        duration_s=duration,
        rms_dbfs=rms_dbfs,
        tempo_bpm=tempo,
        tempo_confidence=tempo_conf,
        key=key,
        mode=mode,
        key_confidence=key_conf,
        centroid_hz=centroid,
        onset_rate=onsets / duration if duration > 0 else 0.0,
        percussiveness=percussiveness,
        dynamic_range_db=dynamic_range,
        silent=False,
    )
