"""Training configuration: one dataclass with commented defaults, and the named configs.

- ``debug``: CI. A tiny UNet on short crops; a few steps finish in seconds.
- ``small``: the demo. A real (if modest) model trained in about 15-25 minutes
  on 2 CPU cores (sized from ``benchmarks/train_throughput.py``).
- ``base``: for a GPU (documented, not run here): wider UNet with attention at
  the two lowest levels, 10 s crops, batch 32 per GPU, 200k steps.

The *resolved* config (every field, including the mel normalisation stats
computed from the training data) is saved in every checkpoint, so a
checkpoint rebuilds its own model (:func:`training.checkpoint.load_checkpoint`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from provenance.dataclass_dicts import checked_fields
from training.diffusion.unet import UNetConfig

CONFIG_VERSION = 1


@dataclass
class TrainConfig:
    """Everything that decides what a training run computes."""

    name: str = "custom"

    # --- model ------------------------------------------------------------------
    unet: UNetConfig = field(default_factory=UNetConfig)

    # --- denoiser (EDM, Karras et al. 2022) -----------------------------------
    sigma_data: float = 1.0  # std of the normalised data (we normalise log-mels to ~unit std)
    p_mean: float = -1.2  # ln(sigma) ~ N(p_mean, p_std^2) during training (EDM's values)
    p_std: float = 1.2
    # log-mel normalisation, (mel - mel_mean) / mel_std. None: computed from the training
    # segments' valid frames at the start of the run, then stored here (and in checkpoints).
    mel_mean: float | None = None
    mel_std: float | None = None

    # --- data --------------------------------------------------------------------
    crop_frames: int = 256  # random crop length in mel frames (100 frames = 1 s)
    batch_size: int = 8  # segments per step *per rank*
    cond_dropout: float = 0.1  # P(caption -> null embedding): trains the CFG unconditional model
    val_fraction: float = 0.1  # recordings held back for validation (deterministic by id)
    val_max_segments: int = 32  # validation loss over at most this many held-back segments
    stats_max_segments: int = 256  # segments used to compute mel_mean / mel_std

    # --- optimisation -------------------------------------------------------------
    max_steps: int = 2000
    lr: float = 2e-4  # peak learning rate (AdamW)
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100  # linear warm-up from 0 to lr
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max global grad norm
    ema_decay: float = 0.999  # EMA of weights (warmed up: min(decay, (1+step)/(10+step)))

    # --- bookkeeping --------------------------------------------------------------
    seed: int = 0  # seeds torch/numpy/python, the data order and the noise
    log_every: int = 10  # steps between loss-history entries / progress-bar updates
    eval_every: int = 200  # steps between validation losses (and the loss-curve PNG)
    sample_every: int = 500  # steps between sample spectrogram PNGs (0: only at the end)
    checkpoint_every: int = 500  # steps between checkpoints (0: only at the end)
    keep_checkpoints: int = 2  # older intermediate checkpoints are deleted
    sample_steps: int = 20  # sampler steps for the sample PNGs
    sample_sampler: str = "dpmpp_2m"
    sample_cfg: float = 3.0  # classifier-free guidance scale for samples
    sample_frames: int = 512  # frames of each sample spectrogram
    num_samples: int = 2  # sample spectrograms per PNG
    torch_threads: int = 0  # 0: leave torch's default

    def __post_init__(self) -> None:
        if isinstance(self.unet, dict):
            self.unet = UNetConfig.from_dict(self.unet)
        problems = []
        for name in ("crop_frames", "batch_size", "max_steps", "log_every", "eval_every"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)} must be > 0")
        if self.crop_frames % (2 ** (len(self.unet.channel_mult) - 1)):
            problems.append(
                f"crop_frames={self.crop_frames} must be divisible by the UNet downsampling "
                f"factor {2 ** (len(self.unet.channel_mult) - 1)}"
            )
        if not 0 <= self.cond_dropout < 1:
            problems.append(f"cond_dropout={self.cond_dropout} must be in [0, 1)")
        if not 0 <= self.val_fraction < 1:
            problems.append(f"val_fraction={self.val_fraction} must be in [0, 1)")
        if not 0 <= self.ema_decay < 1:
            problems.append(f"ema_decay={self.ema_decay} must be in [0, 1)")
        if self.warmup_steps < 0 or self.warmup_steps > self.max_steps:
            problems.append(f"warmup_steps={self.warmup_steps} must be in [0, max_steps]")
        if (self.mel_mean is None) != (self.mel_std is None):
            problems.append("set both mel_mean and mel_std, or neither")
        if self.mel_std is not None and self.mel_std <= 0:
            problems.append(f"mel_std={self.mel_std} must be > 0")
        if problems:
            raise ValueError("bad training config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["unet"] = self.unet.to_dict()
        data["version"] = CONFIG_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        values = checked_fields(cls, data, what="train config", version=CONFIG_VERSION)
        if isinstance(values.get("unet"), dict):
            values["unet"] = UNetConfig.from_dict(values["unet"])
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @property
    def resolved(self) -> bool:
        """True once the data-dependent fields (mel stats) are filled in."""
        return self.mel_mean is not None and self.mel_std is not None


def debug_config() -> TrainConfig:
    """CI: a ~60k-parameter UNet on 64-frame crops; a few steps take seconds."""
    return TrainConfig(
        name="debug",
        unet=UNetConfig(channels=8, channel_mult=(1, 2), emb_dim=32, fourier_features=16, groups=4),
        crop_frames=64,
        batch_size=4,
        val_fraction=0.25,
        val_max_segments=4,
        stats_max_segments=16,
        max_steps=8,
        lr=1e-3,
        warmup_steps=2,
        ema_decay=0.9,
        log_every=1,
        eval_every=4,
        sample_every=0,
        checkpoint_every=0,
        sample_steps=3,
        sample_frames=64,
        num_samples=1,
    )


def demo_config() -> TrainConfig:
    """The default demo: the ``small`` layout at 24 channels (2.0M parameters) on 1.28 s
    crops, 150 steps, sized to keep the whole demo near ten minutes on 2 idle CPU cores
    (0.73 s a step there). It learns the corpus's broad spectral balance and texture per
    caption, not melodies or song structure; its training loss is flat after ~120 steps."""
    return TrainConfig(
        name="demo",
        unet=UNetConfig(channels=24, channel_mult=(1, 2, 2, 4), attention_levels=(3,), emb_dim=128),
        crop_frames=128,
        batch_size=8,
        max_steps=150,
        lr=6e-4,
        warmup_steps=15,
        ema_decay=0.98,
        log_every=10,
        eval_every=150,
        sample_every=0,
        checkpoint_every=0,
        sample_steps=12,
        sample_frames=256,
        num_samples=2,
    )


def small_config() -> TrainConfig:
    """The demo: a 3.3M-parameter UNet, 2.56 s crops, sized for ~20 min on 2 CPU cores."""
    return TrainConfig(
        name="small",
        unet=UNetConfig(channels=32, channel_mult=(1, 2, 2, 4), attention_levels=(3,), emb_dim=128),
        crop_frames=256,
        batch_size=8,
        max_steps=600,
        lr=4e-4,
        warmup_steps=50,
        ema_decay=0.995,
        log_every=10,
        eval_every=100,
        sample_every=300,
        checkpoint_every=200,
        sample_steps=20,
        sample_frames=512,
        num_samples=2,
    )


def base_config() -> TrainConfig:
    """For one GPU or a cluster (torchrun): ~40M parameters, 10 s crops. Not run on CPU."""
    return TrainConfig(
        name="base",
        unet=UNetConfig(
            channels=96,
            channel_mult=(1, 2, 3, 4),
            blocks_per_level=2,
            attention_levels=(2, 3),
            attention_heads=8,
            emb_dim=512,
            fourier_features=256,
            groups=32,
            dropout=0.1,
        ),
        crop_frames=1024,
        batch_size=32,
        max_steps=200_000,
        lr=1e-4,
        warmup_steps=2000,
        ema_decay=0.9999,
        val_max_segments=256,
        stats_max_segments=4096,
        log_every=50,
        eval_every=2000,
        sample_every=10_000,
        checkpoint_every=10_000,
        keep_checkpoints=5,
        sample_steps=50,
        sample_frames=1024,
        num_samples=4,
    )


NAMED_CONFIGS = {
    "debug": debug_config,
    "demo": demo_config,
    "small": small_config,
    "base": base_config,
}


def get_config(name: str, **overrides: Any) -> TrainConfig:
    """A named config (``debug``, ``demo``, ``small``, ``base``) with field overrides applied."""
    try:
        make = NAMED_CONFIGS[name]
    except KeyError:
        raise ValueError(
            f"unknown training config {name!r}; expected one of {sorted(NAMED_CONFIGS)}"
        ) from None
    config = make()
    return config.replace(**overrides) if overrides else config
