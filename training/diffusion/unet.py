"""The bare network: a 2-D UNet over (mel bins x frames), conditioned on a CLAP text embedding.

``MelUNet(x, sigma, cond)`` knows nothing about noise schedules or
preconditioning (that is :mod:`training.diffusion.denoiser`), in the
k-diffusion split. It is:

- **fully convolutional in time**: any frame count divisible by
  :attr:`MelUNet.downsample_factor` works (the sampler wrapper pads/crops);
- **frequency-aware**: one extra input channel holds the mel-bin coordinate
  in [-1, 1], because a spectrogram is *not* translation-invariant in
  frequency (a kick drum and a hi-hat are not the same pattern shifted);
- **conditioned by FiLM**: the sigma embedding (Fourier features of
  ``c_noise = log(sigma)/4``) and the 512-d CLAP text embedding are mapped to
  one vector that scales and shifts every residual block's normalised
  activations. A single pooled vector has nothing for cross-attention to
  attend over, so FiLM is the natural fit;
- **ready for classifier-free guidance**: ``cond=None`` (or rows masked by
  ``drop``) uses a learned null embedding instead of the caption embedding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from provenance.dataclass_dicts import checked_fields


@dataclass(frozen=True)
class UNetConfig:
    """Sizes of :class:`MelUNet` (saved in every checkpoint so it can be rebuilt)."""

    n_mels: int = 64  # mel bins (the UNet's height)
    cond_dim: int = 512  # CLAP text embedding width
    channels: int = 32  # width of the first level
    channel_mult: tuple[int, ...] = (1, 2, 4)  # width multiplier per level; 2x down between levels
    blocks_per_level: int = 1  # residual blocks per level (the decoder uses one more)
    attention_levels: tuple[int, ...] = ()  # levels with self-attention over (freq x time)
    attention_heads: int = 4
    emb_dim: int = 128  # width of the sigma+condition embedding that drives FiLM
    fourier_features: int = 32  # Fourier features of c_noise (half sine, half cosine)
    groups: int = 8  # GroupNorm groups
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not self.channel_mult:
            raise ValueError("channel_mult must list at least one level")
        if self.n_mels % (2 ** (len(self.channel_mult) - 1)):
            raise ValueError(
                f"n_mels={self.n_mels} is not divisible by the downsampling factor "
                f"{2 ** (len(self.channel_mult) - 1)} of channel_mult={self.channel_mult}"
            )
        for level in self.attention_levels:
            if not 0 <= level < len(self.channel_mult):
                raise ValueError(
                    f"attention level {level} not in [0, {len(self.channel_mult)}) "
                    f"for channel_mult={self.channel_mult}"
                )
        for width in (self.channels * m for m in self.channel_mult):
            if width % self.groups:
                raise ValueError(f"channel width {width} is not divisible by groups={self.groups}")
        if self.fourier_features % 2:
            raise ValueError(f"fourier_features must be even, got {self.fourier_features}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        tuples = ("channel_mult", "attention_levels")
        return cls(**checked_fields(cls, data, what="UNet config", tuples=tuples))


class FourierFeatures(nn.Module):
    """Random Fourier features of a scalar (fixed at init; saved as a buffer)."""

    weight: torch.Tensor

    def __init__(self, out_features: int, *, std: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("weight", torch.randn(out_features // 2, 1) * std)

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * value[:, None] @ self.weight.T
        return torch.cat([f.cos(), f.sin()], dim=-1)


class ResBlock(nn.Module):
    """GroupNorm → FiLM(scale, shift from the embedding) → SiLU → conv, twice, plus a skip."""

    def __init__(
        self, in_ch: int, out_ch: int, *, emb_dim: int, groups: int, dropout: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        # Start each block as the identity so a deep UNet trains stably from step 0.
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(cast(torch.Tensor, self.conv2.bias))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over all (freq x time) positions of a feature map."""

    def __init__(self, channels: int, *, heads: int, groups: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels {channels} not divisible by attention heads {heads}")
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(cast(torch.Tensor, self.out.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        y = F.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class _Level(nn.Module):
    """The residual blocks (and optional attention) of one resolution."""

    def __init__(self, blocks: list[ResBlock], attn: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attn)

    def block_list(self) -> list[ResBlock]:
        return [cast(ResBlock, b) for b in self.blocks]

    def attn_list(self) -> list[nn.Module]:
        return list(self.attn)


class MelUNet(nn.Module):
    """``forward(x [B, 1, n_mels, T], sigma [B], cond [B, cond_dim] | None) -> [B, 1, n_mels, T]``.

    The output is the raw network output ``F_theta``; the denoiser turns it into
    a denoised estimate with the EDM preconditioning. ``drop`` (bool ``[B]``)
    replaces the condition of the marked rows with the learned null embedding
    (condition dropout for classifier-free guidance).
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or UNetConfig()
        self.config = cfg
        widths = [cfg.channels * m for m in cfg.channel_mult]
        self.downsample_factor = 2 ** (len(widths) - 1)

        self.sigma_features = FourierFeatures(cfg.fourier_features)
        self.sigma_mlp = nn.Sequential(
            nn.Linear(cfg.fourier_features, cfg.emb_dim),
            nn.SiLU(),
            nn.Linear(cfg.emb_dim, cfg.emb_dim),
        )
        self.cond_mlp = nn.Sequential(
            nn.Linear(cfg.cond_dim, cfg.emb_dim), nn.SiLU(), nn.Linear(cfg.emb_dim, cfg.emb_dim)
        )
        # The "no caption" condition, learned; CLAP embeddings are unit vectors, so is its init.
        self.null_cond = nn.Parameter(F.normalize(torch.randn(cfg.cond_dim), dim=0))

        # input: the noisy mel + a mel-bin coordinate channel
        self.conv_in = nn.Conv2d(2, widths[0], 3, padding=1)

        def block(i: int, o: int) -> ResBlock:
            return ResBlock(i, o, emb_dim=cfg.emb_dim, groups=cfg.groups, dropout=cfg.dropout)

        def attention(level: int, ch: int) -> list[nn.Module]:
            if level not in cfg.attention_levels:
                return []
            return [SelfAttention2d(ch, heads=cfg.attention_heads, groups=cfg.groups)]

        self.down = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        skip_widths = [widths[0]]
        ch = widths[0]
        for level, width in enumerate(widths):
            blocks = []
            for _ in range(cfg.blocks_per_level):
                blocks.append(block(ch, width))
                ch = width
                skip_widths.append(ch)
            self.down.append(_Level(blocks, attention(level, ch)))
            if level < len(widths) - 1:
                self.downsamplers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_widths.append(ch)

        self.mid = _Level([block(ch, ch), block(ch, ch)], attention(len(widths) - 1, ch))

        self.up = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for level in reversed(range(len(widths))):
            blocks = []
            for _ in range(cfg.blocks_per_level + 1):
                blocks.append(block(ch + skip_widths.pop(), widths[level]))
                ch = widths[level]
            self.up.append(_Level(blocks, attention(level, ch)))
            if level > 0:
                self.upsamplers.append(nn.Conv2d(ch, ch, 3, padding=1))
        assert not skip_widths

        self.norm_out = nn.GroupNorm(cfg.groups, ch)
        self.conv_out = nn.Conv2d(ch, 1, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(cast(torch.Tensor, self.conv_out.bias))

    def embed(
        self, sigma: torch.Tensor, cond: torch.Tensor | None, drop: torch.Tensor | None
    ) -> torch.Tensor:
        c_noise = sigma.log() / 4
        emb = self.sigma_mlp(self.sigma_features(c_noise))
        batch = sigma.shape[0]
        null = self.null_cond.to(emb.dtype).expand(batch, -1)
        if cond is None:
            cond = null
        else:
            if cond.shape != (batch, self.config.cond_dim):
                raise ValueError(
                    f"cond must be [{batch}, {self.config.cond_dim}], got {tuple(cond.shape)}"
                )
            cond = cond.to(emb.dtype)
            if drop is not None:
                cond = torch.where(drop[:, None], null, cond)
        return F.silu(emb + self.cond_mlp(cond))

    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        cond: torch.Tensor | None = None,
        *,
        drop: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, c, h, t = x.shape
        if c != 1 or h != self.config.n_mels:
            raise ValueError(
                f"expected x [B, 1, {self.config.n_mels}, frames], got {tuple(x.shape)}"
            )
        if t % self.downsample_factor:
            raise ValueError(
                f"frames={t} is not divisible by the downsampling factor {self.downsample_factor}; "
                "pad or crop first (training.diffusion.sampling.sample_mels does)"
            )
        sigma = sigma.reshape(-1).expand(b) if sigma.numel() == 1 else sigma.reshape(b)
        emb = self.embed(sigma.to(x.dtype), cond, drop)

        freq = torch.linspace(-1.0, 1.0, h, dtype=x.dtype, device=x.device)
        h_ = self.conv_in(torch.cat([x, freq[None, None, :, None].expand(b, 1, h, t)], dim=1))
        skips = [h_]
        for level, stage in enumerate(cast(list[_Level], list(self.down))):
            for blk in stage.block_list():
                h_ = blk(h_, emb)
                skips.append(h_)
            for attn in stage.attn_list():
                h_ = attn(h_)
            if level < len(self.downsamplers):
                h_ = self.downsamplers[level](h_)
                skips.append(h_)

        for blk in self.mid.block_list():
            h_ = blk(h_, emb)
        for attn in self.mid.attn_list():
            h_ = attn(h_)

        for i, stage in enumerate(cast(list[_Level], list(self.up))):
            for blk in stage.block_list():
                h_ = blk(torch.cat([h_, skips.pop()], dim=1), emb)
            for attn in stage.attn_list():
                h_ = attn(h_)
            if i < len(self.upsamplers):
                h_ = self.upsamplers[i](F.interpolate(h_, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h_)))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
