"""Train our own CLAP on the project's segments: contrastive audio–caption loss plus
augmentation invariance (a clip stays close to itself after a replay transform).

Tower choice, measured on these 2 cores (forward + backward + AdamW): HTSAT-tiny
with the 12-layer ``transformer`` text tower takes 4–6 s a step at batch 8 (see
STACK-NOTES); the PANN towers are larger (PANN-6 has more parameters and no
pretrained audio weights either) and the ``roberta``/``bert`` text towers do
not build offline. HTSAT-tiny + transformer is therefore the tower, and the
budget is spent on steps, not size: the ``demo`` config trains in minutes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from provenance.hashing import sha256_file
from training.augment import random_augmentation
from training.clap_embedder import (
    DEFAULT_AMODEL,
    DEFAULT_TMODEL,
    MODEL_RATE,
    WINDOW_S,
    audio_inputs,
    build_clap_module,
    to_clap_rate,
    tokenize,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClapTrainConfig:
    amodel: str = DEFAULT_AMODEL
    tmodel: str = DEFAULT_TMODEL
    steps: int = 40  # each step: batch_size clips + their augmented copies
    batch_size: int = 6
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 4
    invariance_weight: float = 1.0  # weight of 1 - cos(clip, augmented clip)
    seed: int = 0


CLAP_CONFIGS = {
    "debug": ClapTrainConfig(steps=2, batch_size=2, warmup_steps=1),
    # The demo's text conditioning: 8 steps of 5 clips (and their augmented copies) keep
    # its training under a minute on 2 CPU cores. ``full`` is the 40-step run of before.
    "demo": ClapTrainConfig(steps=8, batch_size=5, warmup_steps=2),
    "full": ClapTrainConfig(),
}


@dataclass
class ClipExample:
    wave_16k: np.ndarray  # WINDOW_S seconds at 16 kHz
    caption: str
    recording_id: int
    segment_index: int
    artist_ids: list[int] = field(default_factory=list)


@dataclass
class ClapTrainResult:
    path: Path
    sha256: str
    losses: list[float]
    contrastive: list[float]
    invariance: list[float]
    seconds: float


def _fit(wave: np.ndarray) -> np.ndarray:
    size = int(WINDOW_S * MODEL_RATE)
    wave = np.asarray(wave, dtype=np.float32)
    return wave[:size] if wave.size >= size else np.resize(wave, size)


def train_clap(
    examples: Sequence[ClipExample],
    *,
    config: ClapTrainConfig,
    out_path: Path,
    progress: Callable[[int, float], None] | None = None,
) -> ClapTrainResult:
    """Train from scratch on ``examples``; write ``out_path`` (tmp + rename)."""
    if len(examples) < 2:
        raise ValueError(f"need at least 2 training clips, got {len(examples)}")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    module = build_clap_module(amodel=config.amodel, tmodel=config.tmodel)
    model = module.model
    model.train()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
    )

    def lr_at(step: int) -> float:
        # Linear warm-up, then cosine decay to a tenth.
        if step < config.warmup_steps:
            return config.lr * (step + 1) / config.warmup_steps
        t = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    losses, contrastive_hist, invariance_hist = [], [], []
    started = time.perf_counter()
    batch = min(config.batch_size, len(examples))
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        picks = rng.choice(len(examples), size=batch, replace=False)
        clips = [_fit(examples[i].wave_16k) for i in picks]
        augmented = [_fit(random_augmentation(c, rng)) for c in clips]
        windows = torch.from_numpy(np.stack(clips + augmented))
        audio = model.get_audio_embedding(audio_inputs(module, to_clap_rate(windows)))
        anchor, positive = audio[:batch], audio[batch:]
        text = F.normalize(
            model.encode_text(tokenize([examples[i].caption for i in picks]), device="cpu"), dim=-1
        )
        scale = model.logit_scale_a.exp().clamp(max=100.0)
        logits = scale * anchor @ text.T
        # Clips sharing a caption are all right answers: soft targets over equal captions.
        captions = [examples[i].caption for i in picks]
        same = torch.tensor([[a == b for b in captions] for a in captions], dtype=torch.float32)
        targets = same / same.sum(dim=1, keepdim=True)
        contrastive = 0.5 * (
            F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets.T)
        )
        invariance = (1.0 - (anchor * positive).sum(dim=-1)).mean()
        loss = contrastive + config.invariance_weight * invariance
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        contrastive_hist.append(float(contrastive.detach()))
        invariance_hist.append(float(invariance.detach()))
        if progress:
            progress(step + 1, losses[-1])
        if not all(map(math.isfinite, (losses[-1],))):
            raise FloatingPointError(f"CLAP loss became {losses[-1]} at step {step}")
    model.eval()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    torch.save(
        {
            "state_dict": model.state_dict(),
            "config": {**asdict(config), "examples": len(examples)},
            "losses": losses,
        },
        tmp,
    )
    tmp.replace(out_path)
    return ClapTrainResult(
        path=out_path,
        sha256=sha256_file(out_path),
        losses=losses,
        contrastive=contrastive_hist,
        invariance=invariance_hist,
        seconds=time.perf_counter() - started,
    )


def plot_losses(result: ClapTrainResult, png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    steps = range(1, len(result.losses) + 1)
    ax.plot(steps, result.losses, label="total")
    ax.plot(steps, result.contrastive, label="contrastive")
    ax.plot(steps, result.invariance, label="augmentation invariance")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("CLAP training")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(png, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return png
