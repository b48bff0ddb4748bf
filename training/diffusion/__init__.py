"""Text-conditioned mel diffusion: bare UNet, EDM denoiser, free samplers (the k-diffusion split).

- :mod:`training.diffusion.unet` — ``MelUNet(x, sigma, cond)``, the network;
- :mod:`training.diffusion.denoiser` — ``Denoiser`` (EDM preconditioning and
  ``loss()``) and ``CFGDenoiser`` (classifier-free guidance);
- :mod:`training.diffusion.sampling` — ``get_sigmas_karras``, ``get_sigmas_exponential``,
  ``sample_euler``, ``sample_heun``, ``sample_dpmpp_2m``, ``sample_dpmpp_3m`` and
  ``sample_mels`` (generation's entry point).
"""

from __future__ import annotations

from training.diffusion.denoiser import CFGDenoiser, Denoiser
from training.diffusion.sampling import (
    get_sigmas_exponential,
    get_sigmas_karras,
    sample_dpmpp_2m,
    sample_dpmpp_3m,
    sample_euler,
    sample_heun,
    sample_mels,
)
from training.diffusion.unet import MelUNet, UNetConfig

__all__ = [
    "CFGDenoiser",
    "Denoiser",
    "MelUNet",
    "UNetConfig",
    "get_sigmas_exponential",
    "get_sigmas_karras",
    "sample_dpmpp_2m",
    "sample_dpmpp_3m",
    "sample_euler",
    "sample_heun",
    "sample_mels",
]
