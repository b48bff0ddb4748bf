"""The training loop: one function, :func:`train`, that reads top to bottom (nanoGPT style).

Data preparation is done before (featurization wrote Arrow shards; the flow
froze a snapshot and :mod:`training.snapshot_data` loaded its member rows).
``train`` gets in-memory :class:`~training.snapshot_data.SegmentData` and:
AdamW with linear warm-up then cosine decay, gradient clipping, EMA weights,
random crops, deterministic seeding, a progress bar with loss and
throughput, validation loss on held-back recordings, a loss-curve PNG and
sample spectrogram PNGs (:mod:`training.train_plots`), and resumable
safetensors checkpoints.

**Resume is bit-for-bit**: the data order is a pure function of
``(seed, epoch)`` and the checkpoint stores the position in it; the LR is a
pure function of the step; optimizer moments, EMA weights and the noise
generator are all saved (:mod:`training.train_state`). Running N steps
straight or N/2 + resume + N/2 gives the same losses, the same weights and
the same checkpoint bytes (``tests/training/test_train_loop.py``).

**The loop owns its randomness**: the initialisation, noise, crops,
condition dropout and (when the UNet has any) dropout masks come from
generators seeded from the config (:mod:`training.seeded_random`), never
from python's, numpy's or torch's process-wide streams, which other threads
in the process (Prefect's event client, for one) draw from at any time. So a
checkpoint holds nothing of the process it ran in, and is the same whatever
ran before it.

**Distributed (DDP)**: under ``torchrun`` (:mod:`training.torchrun`),
``WORLD_SIZE > 1`` makes ``train`` join the process group, wrap the UNet in
``DistributedDataParallel`` (:mod:`training.distributed`) and shard each
*global* batch of ``batch_size * world_size`` rows deterministically by rank
(like ``DistributedSampler``, but step-indexed so resume works). Rank 0 alone
writes checkpoints and plots.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.checkpoint import CheckpointMeta, build_denoiser, load_resume_state, save_checkpoint
from training.diffusion.denoiser import Denoiser
from training.diffusion.unet import MelUNet, count_parameters
from training.distributed import (
    Ranks,
    default_device,
    gather_from_ranks,
    join_process_group,
    mean_over_ranks,
    ranks_from_env,
    wrap_for_ddp,
)
from training.seeded_random import DrawFrom, dropout_generator, seeded_init
from training.snapshot_data import SegmentData
from training.train_config import TrainConfig
from training.train_plots import save_loss_plot, save_samples
from training.train_state import LoopState, config_to_resume, lr_at

logger = logging.getLogger(__name__)


@dataclass
class RunInfo:
    """Provenance written into every checkpoint header (see :mod:`training.checkpoint`)."""

    mel_config: dict[str, Any] = field(default_factory=dict)
    mel_config_hash: str = ""
    clap_sha256: str = ""
    training_run_id: int | None = None
    snapshot_digest: str = ""
    run_name: str = ""
    # The audit chain's head (SEQ:HASH) when the run's snapshot was frozen.
    audit_head: str = ""


@dataclass
class SavedCheckpoint:
    step: int
    path: Path
    sha256: str
    is_final: bool = False


@dataclass
class TrainResult:
    config: TrainConfig  # resolved (mel stats filled in)
    step: int
    checkpoints: list[SavedCheckpoint]
    loss_history: list[tuple[int, float]]  # (step, mean train loss over the log window)
    val_history: list[tuple[int, float]]  # (step, validation loss of the EMA weights)
    segments_per_second: float
    parameters: int
    plots: list[Path]
    weights_sha256: str  # digest of the raw weights (ranks compare it under DDP)

    @property
    def final_checkpoint(self) -> SavedCheckpoint | None:
        finals = [c for c in self.checkpoints if c.is_final]
        return finals[-1] if finals else None


# --- what the loop is made of --------------------------------------------------------------


def mel_stats(data: SegmentData, *, max_segments: int) -> tuple[float, float]:
    """Mean and std of the valid frames of up to ``max_segments`` evenly spaced segments."""
    n = len(data)
    picks = np.unique(np.linspace(0, n - 1, num=min(n, max_segments)).round().astype(np.int64))
    values = [data.mels[i, :, : int(data.valid_frames[i])].float().reshape(-1) for i in picks]
    flat = torch.cat(values)
    return round(float(flat.mean()), 6), round(float(flat.std().clamp(min=1e-3)), 6)


def weights_digest(model: nn.Module) -> str:
    """sha256 over the raw weights (names and bytes in name order), unwrapped from DDP."""
    digest = hashlib.sha256()
    for name, value in sorted(getattr(model, "module", model).state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def validation_loss(denoiser: Denoiser, data: SegmentData, config: TrainConfig) -> float:
    """EDM loss over the first ``val_max_segments`` held-back segments, with *fixed* noise.

    The same sigmas/noise/crops every time (a generator seeded from the config
    seed), so successive values are comparable and differ only by the weights.
    """
    generator = torch.Generator().manual_seed(config.seed + 7919)
    rows = np.arange(min(len(data), config.val_max_segments))
    losses = []
    for start in range(0, len(rows), config.batch_size):
        idx = rows[start : start + config.batch_size]
        mel, mask, cond = data.crop_batch(idx, crop_frames=config.crop_frames, random=False)
        loss = denoiser.loss(denoiser.normalize(mel), cond, generator=generator, mask=mask)
        losses.append(loss)
    return float(torch.cat(losses).mean())


@dataclass
class TrainingModels:
    """The UNet being trained, its EMA copy, their denoisers and the optimizer."""

    net: nn.Module  # the bare UNet: its weights are what checkpoints and the EMA read
    ema_net: nn.Module
    denoiser: Denoiser  # wraps the DDP module under DDP, so backward() averages gradients
    ema_denoiser: Denoiser  # what validation and samples use
    optimizer: torch.optim.Optimizer


def build_models(config: TrainConfig, device: torch.device, ranks: Ranks) -> TrainingModels:
    # The init draws from a generator seeded with the config seed, not the process-wide one.
    net = seeded_init(lambda: MelUNet(config.unet), seed=config.seed).to(device)
    ema_net = copy.deepcopy(net).requires_grad_(False)
    train_net = wrap_for_ddp(net, ranks, device)
    return TrainingModels(
        net=net,
        ema_net=ema_net,
        denoiser=build_denoiser(config, train_net),
        ema_denoiser=build_denoiser(config, ema_net).eval(),
        optimizer=torch.optim.AdamW(
            net.parameters(),
            lr=config.lr,
            betas=(config.beta1, config.beta2),
            weight_decay=config.weight_decay,
        ),
    )


@torch.no_grad()
def update_ema(models: TrainingModels, *, step: int, ema_decay: float) -> None:
    # The usual warm-up of the decay, so early checkpoints are not dominated by the init.
    decay = min(ema_decay, (1 + step) / (10 + step))
    for p_ema, p in zip(models.ema_net.parameters(), models.net.parameters(), strict=True):
        p_ema.lerp_(p, 1 - decay)
    for b_ema, b in zip(models.ema_net.buffers(), models.net.buffers(), strict=True):
        b_ema.copy_(b)


@dataclass
class CheckpointWriter:
    """Writes the run's checkpoints (on rank 0) and remembers the last step it wrote."""

    out: Path
    config: TrainConfig  # resolved
    run_info: RunInfo
    models: TrainingModels
    ranks: Ranks
    train_rows: int
    on_checkpoint: Callable[[SavedCheckpoint], None] | None = None
    saved: list[SavedCheckpoint] = field(default_factory=list)
    last_step: int = -1  # tracked on every rank (write() is collective under DDP)

    def write(self, state: LoopState, noise_gen: torch.Generator, *, final: bool) -> None:
        self.last_step = state.step
        # Every rank contributes its noise-generator state (needed for an exact DDP resume).
        states = gather_from_ranks(noise_gen.get_state(), self.ranks)
        if not self.ranks.is_main:
            return
        step = state.step
        name = "final.safetensors" if final else f"step-{step:07d}.safetensors"
        path = self.out / name
        sha = save_checkpoint(
            path,
            meta=CheckpointMeta(config=self.config, step=step, **vars(self.run_info)),
            model=self.models.net,
            ema_model=self.models.ema_net,
            optimizer=self.models.optimizer,
            train_state=state.train_state(
                world=self.ranks.world, train_rows=self.train_rows, config=self.config
            ),
            rng_tensors={f"noise.{r}": s for r, s in enumerate(states)},
        )
        saved = SavedCheckpoint(step=step, path=path, sha256=sha, is_final=final)
        self.saved.append(saved)
        if self.on_checkpoint is not None:
            self.on_checkpoint(saved)
        logger.info("checkpoint %s (step %d, sha256 %s)", path, step, sha[:12])


# --- the loop ------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    *,
    train_data: SegmentData,
    val_data: SegmentData | None,
    out_dir: str | Path,
    run_info: RunInfo | None = None,
    resume_from: str | Path | None = None,
    stop_after: int | None = None,
    progress: bool = True,
    device: str | None = None,
    on_checkpoint: Callable[[SavedCheckpoint], None] | None = None,
) -> TrainResult:
    """Train the diffusion model on ``train_data``; checkpoints, plots go to ``out_dir``.

    ``stop_after`` ends the run early (after that global step, writing a
    resumable checkpoint) without changing the LR schedule, which always
    spans ``config.max_steps``; ``resume_from`` continues from a checkpoint
    written by this function with the same config and data.
    """
    out = Path(out_dir)
    run_info = run_info or RunInfo()

    # Distributed setup first: everything below may depend on rank / world size.
    ranks = ranks_from_env()
    dev = torch.device(device or default_device(ranks))
    join_process_group(ranks, dev)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)

    # Resume state (if any) overrides the given config: the run continues as it was defined.
    resume = load_resume_state(resume_from) if resume_from is not None else None
    if resume is not None:
        assert resume_from is not None
        config = config_to_resume(
            config,
            resume,
            resume_from=resume_from,
            snapshot_digest=run_info.snapshot_digest,
            world=ranks.world,
        )

    # Normalisation stats come from the training data (not the held-back set) once, then live
    # in the config so every checkpoint carries them.
    if not config.resolved:
        mean, std = mel_stats(train_data, max_segments=config.stats_max_segments)
        config = config.replace(mel_mean=mean, mel_std=std)
        logger.info("mel normalisation from training data: mean %.4f, std %.4f", mean, std)

    # Deterministic seeding with the loop's own generators, never the process-wide ones: one
    # for the model init, one for the training noise / crops / condition dropout (per rank).
    noise_gen = torch.Generator().manual_seed(config.seed * 1_000_003 + ranks.rank + 1)
    models = build_models(config, dev, ranks)
    state = LoopState.start(len(train_data), seed=config.seed)
    if resume is not None:
        models.net.load_state_dict(resume.model_state)
        models.ema_net.load_state_dict(resume.ema_state)
        models.optimizer.load_state_dict(resume.optimizer_state)
        state = LoopState.resume(resume.train_state, train_rows=len(train_data), seed=config.seed)
        # Older checkpoints also hold python/numpy/torch process-wide RNG states: training never
        # drew from them, so they are left unread rather than imposed on the whole process.
        noise_gen.set_state(resume.rng_tensors[f"noise.{ranks.rank}"])
        logger.info("resumed from %s at step %d", resume_from, state.step)

    checkpoints = CheckpointWriter(
        out,
        config=config,
        run_info=run_info,
        models=models,
        ranks=ranks,
        train_rows=len(train_data),
        on_checkpoint=on_checkpoint,
    )
    plots: list[Path] = []
    if ranks.is_main:
        (out / "plots").mkdir(parents=True, exist_ok=True)
    sample_source = val_data if val_data is not None and len(val_data) else train_data

    end = config.max_steps if stop_after is None else min(config.max_steps, stop_after)
    bar = None
    if progress and ranks.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=end, initial=state.step, desc=f"train {config.name}", unit="step", leave=False
        )

    global_batch = config.batch_size * ranks.world
    models.net.train()
    t_start, seen = time.perf_counter(), 0
    try:
        while state.step < end:
            step = state.step
            # This rank's slice of the global batch: same global order on every rank.
            first = ranks.rank * config.batch_size
            rows = state.order.take(global_batch)[first : first + config.batch_size]
            mel, mask, cond = train_data.crop_batch(
                rows, crop_frames=config.crop_frames, generator=noise_gen
            )
            x0 = models.denoiser.normalize(mel).to(dev)

            for group in models.optimizer.param_groups:
                group["lr"] = lr_at(step, config)
            # Dropout masks (if the UNet has dropout) from the loop's own per-step generator.
            with (
                DrawFrom(dropout_generator(config.seed, ranks.rank, step, dev))
                if config.unet.dropout > 0
                else nullcontext()
            ):
                loss = models.denoiser.loss(
                    x0,
                    cond.to(dev),
                    generator=noise_gen,
                    cond_dropout=config.cond_dropout,
                    mask=mask.to(dev),
                ).mean()
            models.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # DDP averages gradients across ranks here
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(models.net.parameters(), config.grad_clip)
            models.optimizer.step()
            update_ema(models, step=step, ema_decay=config.ema_decay)

            state.step = step = step + 1
            seen += global_batch
            loss_value = mean_over_ranks(float(loss.detach()), ranks)
            state.record_loss(loss_value, log_every=config.log_every)
            if bar is not None:
                rate = seen / max(1e-9, time.perf_counter() - t_start)
                bar.set_postfix(loss=f"{loss_value:.4f}", seg_s=f"{rate:.1f}", refresh=False)
                bar.update(1)

            if (step % config.eval_every == 0 or step == config.max_steps) and ranks.is_main:
                if val_data is not None and len(val_data):
                    val = validation_loss(models.ema_denoiser, val_data, config)
                    state.val_history.append((step, val))
                save_loss_plot(out / "plots" / "loss.png", state.loss_history, state.val_history)
            sample_now = config.sample_every and step % config.sample_every == 0
            if sample_now and step < config.max_steps and ranks.is_main:
                plots.append(save_samples(out, models.ema_denoiser, sample_source, config, step))
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step < end:
                checkpoints.write(state, noise_gen, final=False)
    except KeyboardInterrupt:
        # Steps are atomic here, so the state between two steps is exactly resumable.
        if not ranks.distributed and checkpoints.last_step != state.step:
            logger.warning("interrupted at step %d: writing a resumable checkpoint", state.step)
            checkpoints.write(state, noise_gen, final=False)
        raise
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t_start
    if state.step == config.max_steps:
        if ranks.is_main:
            plots.append(save_samples(out, models.ema_denoiser, sample_source, config, state.step))
        checkpoints.write(state, noise_gen, final=True)
    elif checkpoints.last_step != state.step:
        checkpoints.write(state, noise_gen, final=False)  # an early stop is always resumable
    if ranks.is_main and (out / "plots" / "loss.png").exists():
        plots.insert(0, out / "plots" / "loss.png")
    return TrainResult(
        config=config,
        step=state.step,
        checkpoints=checkpoints.saved,
        loss_history=state.loss_history,
        val_history=state.val_history,
        segments_per_second=seen / elapsed if elapsed > 0 else 0.0,
        parameters=count_parameters(models.net),
        plots=plots,
        weights_sha256=weights_digest(models.net),
    )
