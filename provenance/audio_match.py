"""Is one recording the same audio as another? The fine comparison behind near-duplicate links.

The 512-bit fingerprint (``provenance.audio_probe.pcm_fingerprint``) is a cheap first
filter, but it keeps only the *signs* of coarse band-energy changes, so two
different sounds with little change over time (a held chord and a held tone)
can land a few dozen bits apart. This module is the second, finer look: a
log-power spectrogram at 46 ms frames and 36 log-spaced bands (80 Hz–5 kHz),
compared cell by cell.

``spectral_profile`` decodes a file block by block (memory grows with the
frame count, never with the decoded PCM) into that spectrogram.
``profile_similarity`` slides one profile over the other within a lag window
(so a few seconds cropped from either end still align), and at each lag takes
the Pearson correlation of the overlapping cells. Log power makes a gain
change an additive constant, which the correlation ignores; a lossy re-encode
changes the cells only near the codec's masking floor, which the profile
floors alike in both (40 dB under the loudest cell). Unrelated audio, even of
the same length and the same instruments, correlates far lower; a held chord
and a held tone differ in which bands hold their energy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import soundfile as sf
import soxr

PROFILE_RATE = 11025
PROFILE_FFT = 1024
PROFILE_HOP = 512  # 46.4 ms
PROFILE_BANDS = 36
_BAND_EDGES_HZ = np.geomspace(80.0, 5000.0, PROFILE_BANDS + 1)
# Cells more than this far under the loudest cell are floored: what a lossy codec drops.
PROFILE_FLOOR_DB = 40.0
# A profile needs this many frames (~2.3 s) before its correlation means anything.
MIN_PROFILE_FRAMES = 50
# Correlation at or above which two recordings count as the same audio (see README,
# "Near-duplicates", for the figures this was chosen from).
DEFAULT_MIN_CORRELATION = 0.9
_BLOCK_FRAMES = 65536


@dataclass(frozen=True)
class SpectralProfile:
    """Log10 band power, ``[frames, bands]``, floored ``PROFILE_FLOOR_DB`` under its maximum."""

    cells: np.ndarray

    @property
    def frames(self) -> int:
        return int(self.cells.shape[0])

    @property
    def seconds_per_frame(self) -> float:
        return PROFILE_HOP / PROFILE_RATE


def _band_matrix() -> np.ndarray:
    """``[fft bins, bands]`` 0/1 matrix summing the power of each band's bins."""
    freqs = np.fft.rfftfreq(PROFILE_FFT, 1.0 / PROFILE_RATE)
    band_of = np.searchsorted(_BAND_EDGES_HZ, freqs, side="right") - 1
    matrix = np.zeros((len(freqs), PROFILE_BANDS), np.float32)
    for b in range(PROFILE_BANDS):
        matrix[band_of == b, b] = 1.0
    return matrix


def profile_of_wave(mono: np.ndarray, *, sample_rate: int) -> SpectralProfile:
    """The profile of decoded mono PCM (any rate)."""
    wave = np.asarray(mono, dtype=np.float32)
    if sample_rate != PROFILE_RATE:
        wave = soxr.resample(wave, sample_rate, PROFILE_RATE, quality="MQ")
    builder = _ProfileBuilder()
    builder.feed(wave)
    return builder.finish()


def spectral_profile(path_or_fileobj: str | IO[Any]) -> SpectralProfile:
    """The profile of an audio file, decoded in blocks (channels averaged)."""
    builder = _ProfileBuilder()
    with sf.SoundFile(path_or_fileobj) as snd:
        resampler = soxr.ResampleStream(
            snd.samplerate, PROFILE_RATE, 1, dtype="float32", quality="MQ"
        )
        while True:
            block = snd.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
            if not len(block):
                break
            builder.feed(resampler.resample_chunk(block.mean(axis=1)))
        builder.feed(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    return builder.finish()


class _ProfileBuilder:
    """Streaming STFT → band power; keeps only the unconsumed tail of the PCM."""

    def __init__(self) -> None:
        self._pending = np.zeros(0, np.float32)
        self._window = np.hanning(PROFILE_FFT).astype(np.float32)
        self._bands = _band_matrix()
        self._rows: list[np.ndarray] = []

    def feed(self, samples: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, samples.astype(np.float32)])
        count = (len(self._pending) - PROFILE_FFT) // PROFILE_HOP + 1
        if count <= 0:
            return
        starts = np.arange(count) * PROFILE_HOP
        frames = self._pending[starts[:, None] + np.arange(PROFILE_FFT)] * self._window
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        self._rows.append((power @ self._bands).astype(np.float32))
        self._pending = self._pending[count * PROFILE_HOP :]

    def finish(self) -> SpectralProfile:
        if not self._rows:
            return SpectralProfile(np.zeros((0, PROFILE_BANDS), np.float32))
        power = np.concatenate(self._rows)
        floor = max(float(power.max()), 1e-20) * 10 ** (-PROFILE_FLOOR_DB / 10)
        return SpectralProfile(np.log10(np.maximum(power, floor)).astype(np.float32))


@dataclass(frozen=True)
class ProfileMatch:
    correlation: float  # best Pearson correlation over the lags tried (-1..1; 0 if undefined)
    lag_frames: int  # b's frames that a's first frame lines up with (positive: b starts later)
    overlap_frames: int


def profile_similarity(a: SpectralProfile, b: SpectralProfile, *, max_lag_s: float) -> ProfileMatch:
    """The best cell-by-cell correlation of ``a`` and ``b`` at any lag up to ``max_lag_s``.

    Only lags that keep at least 90 % of the shorter profile overlapping count, so a
    short clip cannot match by sliding into one corner of a long one. The products for
    every lag come from one FFT cross-correlation, the sums from running totals.
    """
    if max_lag_s < 0:
        raise ValueError(f"max_lag_s must be >= 0, got {max_lag_s}")
    shorter = min(a.frames, b.frames)
    if shorter < MIN_PROFILE_FRAMES:
        return ProfileMatch(0.0, 0, 0)
    max_lag = int(math.ceil(max_lag_s * PROFILE_RATE / PROFILE_HOP))
    min_overlap = int(math.ceil(0.9 * shorter))
    x = a.cells.astype(np.float64)
    y = b.cells.astype(np.float64)
    size = 1 << int(math.ceil(math.log2(a.frames + b.frames)))
    spectrum = np.conj(np.fft.rfft(x, size, axis=0)) * np.fft.rfft(y, size, axis=0)
    cross = np.fft.irfft(spectrum.sum(axis=1), size)  # cross[lag % size] = Σ x[i]·y[i + lag]
    sum_x, sum_xx = _running_totals(x)
    sum_y, sum_yy = _running_totals(y)
    bands = x.shape[1]
    best = ProfileMatch(-1.0, 0, 0)
    for lag in range(-max_lag, max_lag + 1):
        # x[i] lines up with y[i + lag]
        start, end = max(0, -lag), min(a.frames, b.frames - lag)
        if end - start < min_overlap:
            continue
        cells = (end - start) * bands
        sx, sxx = sum_x[end] - sum_x[start], sum_xx[end] - sum_xx[start]
        sy, syy = sum_y[end + lag] - sum_y[start + lag], sum_yy[end + lag] - sum_yy[start + lag]
        var_x, var_y = sxx - sx * sx / cells, syy - sy * sy / cells
        if var_x <= 1e-9 * max(abs(sxx), 1e-30) or var_y <= 1e-9 * max(abs(syy), 1e-30):
            # A constant profile (silence, or flat in every band) carries no evidence.
            corr = 0.0
        else:
            corr = float((cross[lag % size] - sx * sy / cells) / math.sqrt(var_x * var_y))
        if corr > best.correlation:
            best = ProfileMatch(corr, lag, end - start)
    return best if best.overlap_frames else ProfileMatch(0.0, 0, 0)


def _running_totals(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative per-frame sums of the cells and of their squares, each with a leading 0."""
    zero = np.zeros(1)
    return (
        np.concatenate([zero, np.cumsum(cells.sum(axis=1))]),
        np.concatenate([zero, np.cumsum((cells * cells).sum(axis=1))]),
    )
