"""The log-mel input MusiCNN was trained on, computed in torch.

musicnn computes ``librosa.feature.melspectrogram(y, sr=16000, n_fft=512, hop_length=256,
n_mels=96)`` (centred Hann-window STFT, power 2, Slaney mel scale and area normalisation,
0–8 kHz), casts it to float16 and compresses it as ``log10(10000 x + 1)``; a patch is 187
frames (3 s). This module reproduces that chain, float16 rounding included, so that the
published weights see the input they were trained on.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torchaudio

__all__ = ["HOP", "N_FFT", "PATCH_FRAMES", "SAMPLE_RATE", "log_mel", "patches"]

SAMPLE_RATE = 16_000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3 s) + 1, as musicnn sizes its input


@functools.lru_cache(maxsize=1)
def _filterbank() -> torch.Tensor:
    return torchaudio.functional.melscale_fbanks(
        n_freqs=N_FFT // 2 + 1,
        f_min=0.0,
        f_max=SAMPLE_RATE / 2,
        n_mels=N_MELS,
        sample_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )  # [257, 96]


@functools.lru_cache(maxsize=1)
def _window() -> torch.Tensor:
    return torch.hann_window(N_FFT, periodic=True)


def log_mel(wave_16k: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Mono 16 kHz wave → ``[frames, 96]`` compressed log-mel (float32)."""
    wave = torch.as_tensor(np.asarray(wave_16k, dtype=np.float32))
    if wave.dim() != 1:
        raise ValueError(f"expected a mono wave, got shape {tuple(wave.shape)}")
    spec = torch.stft(
        wave,
        N_FFT,
        hop_length=HOP,
        window=_window(),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()  # [257, frames]
    mel = (power.T @ _filterbank()).to(torch.float16).to(torch.float32)
    return torch.log10(10_000.0 * mel + 1.0)


def patches(
    mel: torch.Tensor, *, frames: int = PATCH_FRAMES, hop: int | None = None
) -> torch.Tensor:
    """Cut ``[T, 96]`` into ``[n, frames, 96]`` patches; a short input is repeat-padded to one
    patch (as musicnn's training padded short clips)."""
    hop = hop or frames
    total = mel.shape[0]
    if total == 0:
        raise ValueError("no frames: the clip is empty")
    if total < frames:
        reps = -(-frames // total)
        mel = mel.repeat(reps, 1)[:frames]
        total = frames
    starts = range(0, total - frames + 1, hop)
    return torch.stack([mel[s : s + frames] for s in starts])
