"""Noise schedules and free sampler functions (k-diffusion style), and the mel sampling entry.

A *model* here is any callable ``model(x, sigma, **extra_args) -> denoised``
(a :class:`~training.diffusion.denoiser.Denoiser` or a
:class:`~training.diffusion.denoiser.CFGDenoiser`). ``sigmas`` is a decreasing
schedule ending in 0 (``get_sigmas_*`` append the zero).

:func:`sample_mels` is what generation calls: it pads the frame count to the
UNet's downsampling factor, draws seeded noise, runs a sampler with
classifier-free guidance and returns log-mels in the original (un-normalised)
units, cropped to the requested length.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from training.diffusion.denoiser import CFGDenoiser, Denoiser

Model = Callable[..., torch.Tensor]
Callback = Callable[[dict[str, Any]], None]
SamplerName = Literal["euler", "heun", "dpmpp_2m"]


def get_sigmas_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """The noise schedule of Karras et al. (2022), arXiv:2206.00364 eq. 5 (n sigmas, then 0)."""
    if n < 1:
        raise ValueError(f"need at least one step, got n={n}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(torch.float32)


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE derivative ``dx/dsigma = (x - D(x)) / sigma``."""
    return (x - denoised) / sigma


def _ones(x: torch.Tensor) -> torch.Tensor:
    return x.new_ones([x.shape[0]])


@torch.no_grad()
def sample_euler(
    model: Model,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Euler's method on the probability-flow ODE (Karras et al. 2022, arXiv:2206.00364, Alg. 1)."""
    extra_args = extra_args or {}
    s_in = _ones(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = to_d(x, sigmas[i], denoised)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigmas[i], "denoised": denoised})
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_heun(
    model: Model,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Heun's 2nd-order method, deterministic (Karras et al. 2022, arXiv:2206.00364, Alg. 1)."""
    extra_args = extra_args or {}
    s_in = _ones(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = to_d(x, sigmas[i], denoised)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigmas[i], "denoised": denoised})
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt  # Euler step to sigma = 0 (the 2nd-order correction needs sigma > 0)
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, sigmas[i + 1] * s_in, **extra_args)
            d_2 = to_d(x_2, sigmas[i + 1], denoised_2)
            x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_dpmpp_2m(
    model: Model,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M), multistep 2nd order (Lu et al. 2022, arXiv:2211.01095, Alg. 2)."""
    extra_args = extra_args or {}
    s_in = _ones(x)

    def t_fn(sigma: torch.Tensor) -> torch.Tensor:
        return -sigma.log()

    old_denoised: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigmas[i], "denoised": denoised})
        if sigmas[i + 1] == 0:
            x = denoised  # the exact solution's last step: sigma -> 0 gives the denoised estimate
        else:
            t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
            h = t_next - t
            if old_denoised is None:
                denoised_d = denoised
            else:
                h_last = t - t_fn(sigmas[i - 1])
                r = h_last / h
                denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigmas[i + 1] / sigmas[i]) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; expected one of {sorted(SAMPLERS)}") from None


def padded_frames(frames: int, factor: int) -> int:
    """The smallest multiple of ``factor`` that is >= ``frames``."""
    return int(math.ceil(frames / factor) * factor)


@torch.no_grad()
def run_sampler(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    cond: torch.Tensor | None,
    *,
    cfg_scale: float,
    sampler: str,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Denoise ``x`` (already noised to ``sigmas[0]``) along ``sigmas``, with classifier-free
    guidance when ``cond`` is given; returns log-mels ``[n, n_mels, frames]`` on the CPU."""
    model: nn.Module = CFGDenoiser(denoiser, scale=cfg_scale) if cond is not None else denoiser
    was_training = denoiser.training
    denoiser.eval()
    try:
        out = get_sampler(sampler)(
            model,
            x,
            sigmas,
            extra_args={"cond": None if cond is None else cond.to(x.device)},
            callback=callback,
        )
    finally:
        denoiser.train(was_training)
    return denoiser.denormalize(out[:, 0]).float().cpu()


@torch.no_grad()
def sample_mels(
    denoiser: Denoiser,
    cond_emb: torch.Tensor | np.ndarray | None,
    *,
    frames: int,
    steps: int = 25,
    cfg_scale: float = 3.0,
    sampler: str = "dpmpp_2m",
    seed: int = 0,
    n: int | None = None,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Generate log-mels ``[n, n_mels, frames]`` (original log units) for CLAP text embeddings.

    ``cond_emb`` is ``[n, 512]`` (L2-normalised CLAP text embeddings) or
    ``None`` for unconditional samples (then give ``n``). The result depends
    only on the arguments and the weights: the noise comes from a
    ``torch.Generator`` seeded with ``seed``.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    inner = denoiser.inner_model
    inner = getattr(inner, "module", inner)  # unwrap DistributedDataParallel
    factor = int(getattr(inner, "downsample_factor", 1))
    config = getattr(inner, "config", None)
    n_mels = int(getattr(config, "n_mels", 64))
    cond: torch.Tensor | None = None
    if cond_emb is not None:
        cond = torch.as_tensor(np.asarray(cond_emb, dtype=np.float32))
        if cond.dim() != 2:
            raise ValueError(f"cond_emb must be [n, dim], got shape {tuple(cond.shape)}")
        if n is not None and n != cond.shape[0]:
            raise ValueError(f"n={n} does not match cond_emb rows {cond.shape[0]}")
        n = cond.shape[0]
    if n is None or n < 1:
        raise ValueError("give cond_emb [n, 512] or, for unconditional samples, n >= 1")
    param = next(denoiser.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    total = padded_frames(frames, factor)
    generator = torch.Generator().manual_seed(int(seed))
    sigmas = get_sigmas_karras(steps, sigma_min, sigma_max, rho).to(device)
    x = torch.randn([n, 1, n_mels, total], generator=generator).to(device) * sigmas[0]
    return run_sampler(
        denoiser, x, sigmas, cond, cfg_scale=cfg_scale, sampler=sampler, callback=callback
    )[:, :, :frames]
