"""Noise schedules and free sampler functions (k-diffusion style), and the mel sampling entry.

A *model* here is any callable ``model(x, sigma, **extra_args) -> denoised``
(a :class:`~training.diffusion.denoiser.Denoiser` or a
:class:`~training.diffusion.denoiser.CFGDenoiser`). ``sigmas`` is a decreasing
schedule ending in 0 (``get_sigmas_*`` append the zero).

:func:`sample_mels` is what generation calls: it pads the frame count to the
UNet's downsampling factor, draws seeded noise, runs a sampler with
classifier-free guidance and returns log-mels in the original (un-normalised)
units, cropped to the requested length.

Where the seconds of one 10 s clip go (``small`` UNet, 64 x 1008 mel, 2 cores,
``benchmarks/generation_speed.py``): the network is nearly all of it, and
within one forward about half is the full-resolution level (64 x 1008 x 32
channels: the first down block, the last upsampling conv and the two last up
blocks), a sixth the next level, a tenth the self-attention at the lowest
level; the sampler's own arithmetic is negligible. So :func:`run_sampler`
makes each evaluation cheaper (channels-last layout, which oneDNN's
convolutions prefer; bfloat16 autocast on CPUs that compute it natively,
see :func:`resolve_precision`) and the caller can make fewer of them (fewer
steps, guidance only on an interval of noise levels).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from training.diffusion.denoiser import CFGDenoiser, Denoiser

Model = Callable[..., torch.Tensor]
Callback = Callable[[dict[str, Any]], None]
SamplerName = Literal["euler", "heun", "dpmpp_2m", "dpmpp_3m"]
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULES = ("karras", "exponential")


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


def get_sigmas_exponential(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Sigmas evenly spaced in log sigma, i.e. uniform in log-SNR (Lu et al. 2022,
    arXiv:2206.00927 sec. 3.3) (n sigmas, then 0)."""
    if n < 1:
        raise ValueError(f"need at least one step, got n={n}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64)
    return torch.cat([ramp.exp(), ramp.new_zeros(1)]).to(torch.float32)


def get_sigmas(
    schedule: str, n: int, sigma_min: float, sigma_max: float, rho: float = 7.0
) -> torch.Tensor:
    """The named schedule (``karras`` or ``exponential``) of n sigmas, then 0."""
    if schedule == "karras":
        return get_sigmas_karras(n, sigma_min, sigma_max, rho)
    if schedule == "exponential":
        return get_sigmas_exponential(n, sigma_min, sigma_max)
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {list(SCHEDULES)}")


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


@torch.no_grad()
def sample_dpmpp_3m(
    model: Model,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(3M), multistep 3rd order, deterministic (Lu et al. 2022, arXiv:2211.01095;
    k-diffusion's ``sample_dpmpp_3m_sde`` with eta = 0); 2nd, then 1st order on the first steps."""
    extra_args = extra_args or {}
    s_in = _ones(x)
    denoised_1: torch.Tensor | None = None
    denoised_2: torch.Tensor | None = None
    h_1: torch.Tensor | None = None
    h_2: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigmas[i], "denoised": denoised})
        if sigmas[i + 1] == 0:
            x = denoised
            break
        h = sigmas[i].log() - sigmas[i + 1].log()
        x = torch.exp(-h) * x - torch.expm1(-h) * denoised
        phi_2 = torch.expm1(-h) / h + 1
        if denoised_2 is not None and h_1 is not None and h_2 is not None:
            assert denoised_1 is not None
            r0, r1 = h_1 / h, h_2 / h
            d1_0 = (denoised - denoised_1) / r0
            d1_1 = (denoised_1 - denoised_2) / r1
            d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
            d2 = (d1_0 - d1_1) / (r0 + r1)
            phi_3 = phi_2 / h - 0.5
            x = x + phi_2 * d1 - phi_3 * d2
        elif denoised_1 is not None and h_1 is not None:
            x = x + phi_2 * (denoised - denoised_1) / (h_1 / h)
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_3m": sample_dpmpp_3m,
}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; expected one of {sorted(SAMPLERS)}") from None


def cpu_computes_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic natively (AVX-512 BF16 or AMX tiles)."""
    cpu = getattr(torch, "cpu", None)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(cpu, name, None)
        if check is not None and bool(check()):
            return True
    return False


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``fp32`` or ``bf16``: what ``precision`` (``auto``, ``fp32``, ``bf16``) means on ``device``.

    ``auto`` is bfloat16 autocast on a CPU that computes bfloat16 natively (2-3x
    faster per network evaluation there; the denoised estimate moves by ~0.4 %
    relative) and float32 everywhere else: on a CPU without it, bfloat16 is
    emulated and slower than float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {list(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bf16" if torch.device(device).type == "cpu" and cpu_computes_bf16() else "fp32"


@contextlib.contextmanager
def inference_setup(model: nn.Module, *, precision: str, device: torch.device) -> Iterator[None]:
    """Run ``model`` channels-last on the CPU (oneDNN's preferred layout for convolutions) and
    under bfloat16 autocast when ``precision`` is ``bf16``; the layout is restored afterwards."""
    convs = [p for p in model.parameters() if p.dim() == 4]
    was_channels_last = bool(convs) and all(
        p.is_contiguous(memory_format=torch.channels_last) for p in convs
    )
    relayout = device.type == "cpu" and bool(convs) and not was_channels_last
    if relayout:
        model.to(memory_format=torch.channels_last)
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            yield
    finally:
        if relayout:
            model.to(memory_format=torch.contiguous_format)


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
    cfg_interval: tuple[float, float] | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Denoise ``x`` (already noised to ``sigmas[0]``) along ``sigmas``, with classifier-free
    guidance when ``cond`` is given (only for ``lo < sigma <= hi`` with ``cfg_interval``);
    returns log-mels ``[n, n_mels, frames]`` on the CPU.

    ``precision`` (``auto``, ``fp32``, ``bf16``; :func:`resolve_precision`) is that of
    the network's evaluations; the sampler's state stays float32.
    """
    sample = get_sampler(sampler)
    mode = resolve_precision(precision, x.device)
    model: nn.Module = (
        CFGDenoiser(denoiser, scale=cfg_scale, interval=cfg_interval)
        if cond is not None
        else denoiser
    )
    was_training = denoiser.training
    denoiser.eval()

    def evaluate(x: torch.Tensor, sigma: torch.Tensor, **extra: Any) -> torch.Tensor:
        return model(x, sigma, **extra).float()

    try:
        with inference_setup(denoiser, precision=mode, device=x.device):
            out = sample(
                evaluate,
                x.float(),
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
    schedule: str = "karras",
    cfg_interval: tuple[float, float] | None = None,
    precision: str = "fp32",
    callback: Callback | None = None,
) -> torch.Tensor:
    """Generate log-mels ``[n, n_mels, frames]`` (original log units) for CLAP text embeddings.

    ``cond_emb`` is ``[n, 512]`` (L2-normalised CLAP text embeddings) or
    ``None`` for unconditional samples (then give ``n``). The result depends
    only on the arguments, the weights and, with ``precision="auto"``, on
    whether the CPU computes bfloat16: the noise comes from a
    ``torch.Generator`` seeded with ``seed``. ``cfg_interval=(lo, hi)`` applies
    guidance only at ``lo < sigma <= hi``
    (:class:`~training.diffusion.denoiser.CFGDenoiser`).
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
    sigmas = get_sigmas(schedule, steps, sigma_min, sigma_max, rho).to(device)
    x = torch.randn([n, 1, n_mels, total], generator=generator).to(device) * sigmas[0]
    return run_sampler(
        denoiser,
        x,
        sigmas,
        cond,
        cfg_scale=cfg_scale,
        sampler=sampler,
        callback=callback,
        cfg_interval=cfg_interval,
        precision=precision,
    )[:, :, :frames]
