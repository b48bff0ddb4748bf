"""EDM preconditioning, loss weighting and sigma sampling around the bare UNet; CFG wrapper.

We use the EDM formulation (Karras et al. 2022, "Elucidating the Design Space
of Diffusion-Based Generative Models", arXiv:2206.00364) rather than
v-prediction, because:

- its preconditioning (``c_in``, ``c_skip``, ``c_out``, ``c_noise``) keeps the
  network's input *and* its training target at unit variance for every noise
  level, so one small network copes with sigmas from 0.002 to 80 without
  per-level loss tuning — exactly what helps a tiny CPU-trained model;
- the denoiser is a plain function of a continuous ``sigma``, so the
  deterministic ODE samplers (Euler, Heun, DPM-Solver++) of
  :mod:`training.diffusion.sampling` and any sigma schedule (Karras) plug in
  without retraining — the k-diffusion split the house style asks for;
- the log-normal training distribution of sigma puts the effort on the mid
  noise levels that matter for perceptual quality.

The data are log-mels normalised to roughly unit scale (``(mel - mel_mean) /
mel_std``, stats stored in the config and the checkpoint), so ``sigma_data``
defaults to 1.0.
"""

from __future__ import annotations

import torch
from torch import nn


class Denoiser(nn.Module):
    """``D(x; sigma, cond) = c_skip x + c_out F(c_in x; c_noise, cond)`` (EDM, Karras et al. 2022).

    ``inner_model`` is the bare network (:class:`training.diffusion.unet.MelUNet`,
    possibly wrapped in ``DistributedDataParallel``); it receives ``c_in x`` and
    sigma (it computes ``c_noise = log(sigma)/4`` itself).
    """

    def __init__(
        self,
        inner_model: nn.Module,
        *,
        sigma_data: float = 1.0,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        mel_mean: float = 0.0,
        mel_std: float = 1.0,
    ) -> None:
        super().__init__()
        if sigma_data <= 0 or p_std <= 0 or mel_std <= 0:
            raise ValueError(
                f"sigma_data, p_std and mel_std must be positive, got {sigma_data}, {p_std}, "
                f"{mel_std}"
            )
        self.inner_model = inner_model
        self.sigma_data = float(sigma_data)
        self.p_mean = float(p_mean)
        self.p_std = float(p_std)
        self.mel_mean = float(mel_mean)
        self.mel_std = float(mel_std)

    # --- data scaling -------------------------------------------------------
    def normalize(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log-mel (natural log magnitude) → the unit-scale space the model works in."""
        return (log_mel - self.mel_mean) / self.mel_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mel_std + self.mel_mean

    # --- EDM ------------------------------------------------------------------
    def get_scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(c_skip, c_out, c_in)`` of EDM table 1 for ``sigma`` (any shape)."""
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / (sigma**2 + sd2).sqrt()
        c_in = 1 / (sigma**2 + sd2).sqrt()
        return c_skip, c_out, c_in

    def sample_sigmas(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training sigmas: ``ln sigma ~ N(p_mean, p_std^2)`` (EDM's log-normal)."""
        z = torch.randn(n, generator=generator)
        return (z * self.p_std + self.p_mean).exp()

    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        cond: torch.Tensor | None = None,
        *,
        drop: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The denoised estimate of ``x`` (``[B, 1, n_mels, T]``) at noise level ``sigma``."""
        sigma = _per_sample(sigma, x)
        c_skip, c_out, c_in = (_bcast(c, x) for c in self.get_scalings(sigma))
        return c_skip * x + c_out * self.inner_model(x * c_in, sigma, cond, drop=drop)

    def loss(
        self,
        x0: torch.Tensor,
        cond: torch.Tensor | None,
        *,
        generator: torch.Generator | None = None,
        cond_dropout: float = 0.0,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-sample EDM loss ``[B]`` of clean (normalised) data ``x0``.

        ``lambda(sigma) |D(x0 + n) - x0|^2`` with EDM's weighting
        ``lambda = 1/c_out^2`` is the same as the plain MSE between the raw
        network output and the effective target ``(x0 - c_skip x_noisy) / c_out``
        — which is what we compute (unit-variance target at every sigma).
        ``mask`` (``[B, 1, 1, T]`` or broadcastable; 1 = real audio) excludes
        padded frames; ``cond_dropout`` is the probability a row trains the
        null (unconditional) embedding instead of its caption.
        """
        b = x0.shape[0]
        sigma = self.sample_sigmas(b, generator=generator).to(x0)
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        drop = None
        if cond is not None and cond_dropout > 0:
            drop = torch.rand(b, generator=generator) < cond_dropout
            drop = drop.to(x0.device)
        noised = x0 + noise * _bcast(sigma, x0)
        c_skip, c_out, c_in = (_bcast(c, x0) for c in self.get_scalings(sigma))
        model_out = self.inner_model(noised * c_in, sigma, cond, drop=drop)
        target = (x0 - c_skip * noised) / c_out
        err = (model_out - target) ** 2
        if mask is None:
            return err.flatten(1).mean(1)
        mask = mask.to(err).expand_as(err)
        return (err * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1)


class CFGDenoiser(nn.Module):
    """Classifier-free guidance (Ho & Salimans 2022): ``D_u + scale (D_c - D_u)``.

    ``scale = 1`` is the plain conditional model, ``0`` the unconditional one.
    Both halves run in one batched forward. ``interval = (lo, hi)`` guides only
    at noise levels ``lo < sigma <= hi`` and uses the conditional model alone
    elsewhere (Kynkäänniemi et al. 2024, "Applying Guidance in a Limited Interval
    Improves Sample and Distribution Quality in Diffusion Models",
    arXiv:2404.07724): a step outside the interval costs one network pass
    instead of two.
    """

    def __init__(
        self, denoiser: Denoiser, *, scale: float, interval: tuple[float, float] | None = None
    ) -> None:
        super().__init__()
        if interval is not None and not 0 <= interval[0] < interval[1]:
            raise ValueError(
                f"guidance interval must be (lo, hi) with 0 <= lo < hi, got {interval}"
            )
        self.denoiser = denoiser
        self.scale = float(scale)
        self.interval = None if interval is None else (float(interval[0]), float(interval[1]))

    def guided(self, sigma: torch.Tensor) -> torch.Tensor:
        """Which rows (bool ``[B]``) get guidance at their ``sigma``."""
        if self.interval is None:
            return torch.ones_like(sigma, dtype=torch.bool)
        lo, hi = self.interval
        return (sigma > lo) & (sigma <= hi)

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        if cond is None or self.scale == 1.0:
            return self.denoiser(x, sigma, cond)
        sigma = _per_sample(sigma, x)
        guided = self.guided(sigma)
        if not guided.any():
            return self.denoiser(x, sigma, cond)
        b = x.shape[0]
        drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)])
        out = self.denoiser(
            torch.cat([x, x]),
            torch.cat([sigma, sigma]),
            torch.cat([cond, cond]),
            drop=drop.to(x.device),
        )
        cond_out, uncond_out = out.chunk(2)
        mixed = uncond_out + (cond_out - uncond_out) * self.scale
        return mixed if guided.all() else torch.where(_bcast(guided, x), mixed, cond_out)


def _per_sample(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return sigma.reshape(1).expand(x.shape[0]) if sigma.numel() == 1 else sigma.reshape(-1)


def _bcast(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return value.reshape(-1, *([1] * (like.dim() - 1)))
