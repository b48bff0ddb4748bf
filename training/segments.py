"""Cut a recording into fixed training windows: downmix, resample, segment.

A recording becomes 10.24 s windows (1024 mel frames at the AudioLDM hop)
starting every ``hop_s`` seconds. The last window usually runs past the end
of the audio: it is kept, zero-padded to full length and marked
``is_partial`` with the number of frames that hold real audio
(``valid_frames``), so training can mask the padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.mel import DEFAULT_MEL_CONFIG, MelConfig

DEFAULT_WINDOW_S = 10.24


def downmix(wave: np.ndarray, *, channels_last: bool = True) -> np.ndarray:
    """Mono float32 by averaging channels; ``[samples, channels]`` (soundfile's layout)."""
    wave = np.asarray(wave)
    if wave.ndim == 1:
        return wave.astype(np.float32, copy=False)
    if wave.ndim != 2:
        raise ValueError(f"expected [samples] or [samples, channels] audio, got shape {wave.shape}")
    axis = 1 if channels_last else 0
    return wave.mean(axis=axis, dtype=np.float32)


def resample(wave: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling of a mono float32 signal with soxr (HQ)."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    wave = np.asarray(wave, dtype=np.float32)
    if orig_sr == target_sr:
        return wave
    import soxr

    return np.asarray(soxr.resample(wave, orig_sr, target_sr, quality="HQ"), dtype=np.float32)


@dataclass(frozen=True)
class SegmentConfig:
    """Window length and hop in seconds; tails shorter than ``min_partial_s`` are dropped
    unless they are the whole recording."""

    window_s: float = DEFAULT_WINDOW_S
    hop_s: float = DEFAULT_WINDOW_S
    min_partial_s: float = 1.0

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ValueError(f"window_s must be positive, got {self.window_s}")
        if not 0 < self.hop_s <= self.window_s:
            raise ValueError(f"hop_s must be in (0, window_s={self.window_s}], got {self.hop_s}")
        if self.min_partial_s < 0:
            raise ValueError(f"min_partial_s must be >= 0, got {self.min_partial_s}")


DEFAULT_SEGMENT_CONFIG = SegmentConfig()


@dataclass(frozen=True)
class Segment:
    """One window of a recording at the mel sample rate, already padded to full length."""

    index: int
    start_s: float
    wave: np.ndarray  # float32 [window_samples], zero-padded when is_partial
    valid_samples: int
    is_partial: bool
    valid_frames: int  # mel frames that hold real audio (== frames when not partial)
    frames: int  # mel frames of the full window


def window_frames(segment_config: SegmentConfig, mel_config: MelConfig = DEFAULT_MEL_CONFIG) -> int:
    """Mel frames per window: ``window_samples // hop`` (1024 for 10.24 s), as AudioLDM crops."""
    return window_samples(segment_config, mel_config) // mel_config.hop_length


def window_samples(
    segment_config: SegmentConfig, mel_config: MelConfig = DEFAULT_MEL_CONFIG
) -> int:
    return int(round(segment_config.window_s * mel_config.sample_rate))


def segment_starts(
    n_samples: int, segment_config: SegmentConfig, mel_config: MelConfig = DEFAULT_MEL_CONFIG
) -> list[int]:
    """Start samples of every window; the last one may reach past ``n_samples``."""
    if n_samples <= 0:
        return []
    win = window_samples(segment_config, mel_config)
    hop = int(round(segment_config.hop_s * mel_config.sample_rate))
    min_partial = int(round(segment_config.min_partial_s * mel_config.sample_rate))
    starts: list[int] = []
    start = 0
    while True:
        starts.append(start)
        if start + win >= n_samples:
            break
        start += hop
    # A short tail that a previous window already partly covers adds little: drop it,
    # unless it is the only window (a clip shorter than one window is still kept).
    if len(starts) > 1 and n_samples - starts[-1] < min_partial:
        starts.pop()
    return starts


def segment_wave(
    wave: np.ndarray,
    *,
    segment_config: SegmentConfig = DEFAULT_SEGMENT_CONFIG,
    mel_config: MelConfig = DEFAULT_MEL_CONFIG,
) -> list[Segment]:
    """Cut a mono waveform at ``mel_config.sample_rate`` into padded, indexed windows."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected mono audio [samples], got shape {wave.shape}")
    win = window_samples(segment_config, mel_config)
    frames = win // mel_config.hop_length
    segments = []
    for index, start in enumerate(segment_starts(len(wave), segment_config, mel_config)):
        chunk = wave[start : start + win]
        valid = len(chunk)
        if valid < win:
            chunk = np.pad(chunk, (0, win - valid))
        valid_frames = min(frames, math.ceil(valid / mel_config.hop_length))
        segments.append(
            Segment(
                index=index,
                start_s=start / mel_config.sample_rate,
                wave=np.ascontiguousarray(chunk),
                valid_samples=valid,
                is_partial=valid < win,
                valid_frames=valid_frames,
                frames=frames,
            )
        )
    return segments


def prepare_wave(
    wave: np.ndarray, *, sample_rate: int, mel_config: MelConfig = DEFAULT_MEL_CONFIG
) -> np.ndarray:
    """Downmix ``[samples(, channels)]`` audio and resample it to the mel sample rate."""
    return resample(downmix(wave), orig_sr=sample_rate, target_sr=mel_config.sample_rate)
