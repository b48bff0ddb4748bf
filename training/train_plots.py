"""The training loop's PNGs: the loss curve and sampled-versus-real spectrograms."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from training.diffusion.denoiser import Denoiser
from training.diffusion.sampling import sample_mels
from training.snapshot_data import SegmentData
from training.train_config import TrainConfig


def save_loss_plot(
    path: Path, losses: list[tuple[int, float]], val: list[tuple[int, float]]
) -> None:
    """Train and validation loss against step (log scale), written tmp + rename."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if losses:
        ax.plot(*zip(*losses, strict=True), label="train (EDM loss)", lw=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation (EMA weights)", lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def save_sample_plot(
    path: Path, generated: torch.Tensor, real: torch.Tensor, captions: list[str], step: int
) -> None:
    """Generated mels beside real ones (same caption per row, shared colour scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = generated.shape[0]
    fig, axes = plt.subplots(n, 2, figsize=(11, 2.4 * n), squeeze=False)
    lo, hi = float(real.min()), float(real.max())
    for i in range(n):
        for j, (mel, title) in enumerate(((generated[i], "generated"), (real[i], "real"))):
            ax = axes[i][j]
            ax.imshow(mel.numpy(), origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma")
            ax.set_title(f"{title}: {captions[i][:60]}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"step {step}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def save_samples(
    out: Path, ema_denoiser: Denoiser, source: SegmentData, config: TrainConfig, step: int
) -> Path:
    """Sample the first ``num_samples`` rows' captions; plot them beside the real mels."""
    rows = np.arange(min(config.num_samples, len(source)))
    generated = sample_mels(
        ema_denoiser,
        source.cond[rows],
        frames=config.sample_frames,
        steps=config.sample_steps,
        cfg_scale=config.sample_cfg,
        sampler=config.sample_sampler,
        seed=config.seed,
    )
    real = source.mels[rows, :, : config.sample_frames].float()
    path = out / "plots" / f"samples-step{step:07d}.png"
    save_sample_plot(path, generated, real, [source.captions[i] for i in rows], step)
    return path
