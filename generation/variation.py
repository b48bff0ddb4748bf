"""Audio-to-audio variation: noise a given log-mel to an intermediate sigma, then denoise.

This is SDEdit (Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing
with Stochastic Differential Equations", arXiv:2108.01073) on our EDM model:
the Karras schedule of ``steps`` sigmas is cut so that only its last
``round(steps * strength)`` steps run, the normalised init mel gets Gaussian
noise of the first remaining sigma, and the usual sampler finishes the job.
``strength`` 1 starts from sigma_max (the init barely matters); small
strengths keep the init's structure and change its detail.
"""

from __future__ import annotations

import numpy as np
import torch

from training.diffusion.denoiser import Denoiser
from training.diffusion.sampling import Callback, get_sigmas_karras, padded_frames, run_sampler


def variation_sigmas(
    steps: int,
    strength: float,
    *,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
) -> torch.Tensor:
    """The tail of the Karras schedule that a variation of ``strength`` runs (ends in 0)."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    sigmas = get_sigmas_karras(steps, sigma_min, sigma_max, rho)
    run = max(1, round(steps * strength))
    return sigmas[steps - run :]


@torch.no_grad()
def sample_variation(
    denoiser: Denoiser,
    cond_emb: torch.Tensor | np.ndarray | None,
    init_log_mel: torch.Tensor,
    *,
    strength: float,
    steps: int = 25,
    cfg_scale: float = 3.0,
    sampler: str = "dpmpp_2m",
    seed: int = 0,
    callback: Callback | None = None,
) -> torch.Tensor:
    """A variation ``[1, n_mels, frames]`` (log units) of ``init_log_mel [n_mels, frames]``.

    ``cond_emb`` is ``[1, 512]`` (a CLAP text embedding) or ``None``
    (unconditional). Deterministic given the arguments and the weights.
    """
    inner = getattr(denoiser.inner_model, "module", denoiser.inner_model)
    factor = int(getattr(inner, "downsample_factor", 1))
    n_mels = int(getattr(getattr(inner, "config", None), "n_mels", 64))
    init = torch.as_tensor(init_log_mel, dtype=torch.float32)
    if init.dim() != 2 or init.shape[0] != n_mels:
        raise ValueError(f"init log-mel must be [{n_mels}, frames], got {tuple(init.shape)}")
    if not torch.isfinite(init).all():
        raise ValueError("init log-mel contains NaN or infinite values")
    frames = int(init.shape[1])
    total = padded_frames(frames, factor)
    # Pad by repeating the last frame, so the padding looks like the audio, not like silence.
    if total > frames:
        init = torch.cat([init, init[:, -1:].expand(n_mels, total - frames)], dim=1)
    cond: torch.Tensor | None = None
    if cond_emb is not None:
        cond = torch.as_tensor(np.asarray(cond_emb, dtype=np.float32))
        if cond.dim() != 2 or cond.shape[0] != 1:
            raise ValueError(f"cond_emb must be [1, dim], got shape {tuple(cond.shape)}")
    param = next(denoiser.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    sigmas = variation_sigmas(steps, strength).to(device)
    generator = torch.Generator().manual_seed(int(seed))
    noise = torch.randn([1, 1, n_mels, total], generator=generator).to(device)
    x = denoiser.normalize(init.to(device))[None, None] + noise * sigmas[0]
    return run_sampler(
        denoiser, x, sigmas, cond, cfg_scale=cfg_scale, sampler=sampler, callback=callback
    )[:, :, :frames]
