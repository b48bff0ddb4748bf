"""One generated clip: its mel sampled (or varied from an init audio), vocoded and gated."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from generation.gate import SimilarityGate
from generation.index import GateUnavailable
from generation.request import GenerationRequest, SampledClip
from generation.variation import sample_variation
from generation.vocoder import Vocoder
from training.diffusion.denoiser import Denoiser
from training.diffusion.sampling import sample_mels
from training.mel import MelConfig, log_mel, mel_frames

PEAK_LIMIT = 0.99  # clips louder than this are scaled down (before the gate hears them)


def init_mel_for(
    request: GenerationRequest, mel_config: MelConfig
) -> tuple[torch.Tensor | None, int]:
    """The init audio's log-mel (looped to the requested length) and the clips' frame count."""
    frames = mel_frames(request.seconds, mel_config)
    if request.init_audio is None:
        return None, frames
    wave = np.asarray(request.init_audio, dtype=np.float32)
    samples = int(round(request.seconds * mel_config.sample_rate))
    if wave.size < samples:  # loop a short init to the requested length
        wave = np.resize(wave, samples)
    init_mel = log_mel(wave[:samples], mel_config)
    return init_mel, int(init_mel.shape[1])


def step_callback(on_step: Callable[[], None] | None) -> Callable[[dict[str, Any]], None]:
    """The sampler's per-step callback: calls ``on_step`` (if any) after every step."""

    def callback(_: dict[str, Any]) -> None:
        if on_step is not None:
            on_step()

    return callback


def sample_clip(
    request: GenerationRequest,
    *,
    denoiser: Denoiser,
    cond: np.ndarray,
    gate: SimilarityGate,
    vocode: Vocoder,
    index: int,
    seed: int,
    init_mel: torch.Tensor | None,
    frames: int,
    callback: Callable[[dict[str, Any]], None],
) -> SampledClip:
    """Sample one clip's mel, vocode it, limit its peak and gate it."""
    started = time.perf_counter()
    if init_mel is None:
        mel = sample_mels(
            denoiser,
            cond,
            frames=frames,
            steps=request.steps,
            cfg_scale=request.cfg,
            sampler=request.sampler,
            cfg_interval=request.cfg_interval,
            precision=request.precision,
            seed=seed,
            callback=callback,
        )[0]
    else:
        mel = sample_variation(
            denoiser,
            cond,
            init_mel,
            strength=request.strength,
            steps=request.steps,
            cfg_scale=request.cfg,
            sampler=request.sampler,
            seed=seed,
            callback=callback,
        )[0]
    if not torch.isfinite(mel).all():
        raise GateUnavailable(f"clip {index} (seed {seed}): the model produced NaN mels")
    wave = np.asarray(vocode(mel), dtype=np.float32)
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    gain = PEAK_LIMIT / peak if peak > PEAK_LIMIT else 1.0
    if gain != 1.0:
        wave = wave * np.float32(gain)
    item = SampledClip(index, seed, mel, wave, gain, time.perf_counter() - started)
    item.gate = gate.check(wave)
    return item
