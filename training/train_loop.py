"""The training loop: one function, :func:`train`, that reads top to bottom (nanoGPT style).

Data preparation is done before (featurization wrote Arrow shards; the flow
froze a snapshot and :mod:`training.snapshot_data` loaded its member rows).
``train`` gets in-memory :class:`~training.snapshot_data.SegmentData` and:
AdamW with linear warm-up then cosine decay, gradient clipping, EMA weights,
random crops, deterministic seeding, a progress bar with loss and
throughput, validation loss on held-back recordings, a loss-curve PNG and
sample spectrogram PNGs, and resumable safetensors checkpoints.

**Resume is bit-for-bit**: the data order is a pure function of
``(seed, epoch)`` and the checkpoint stores the position in it; the LR is a
pure function of the step; optimizer moments, EMA weights and the noise
generator are all saved. Running N steps straight or N/2 + resume + N/2 gives
the same losses, the same weights and the same checkpoint bytes
(``tests/training/test_train_loop.py``).

**The loop owns its randomness**: the initialisation, noise, crops,
condition dropout and (when the UNet has any) dropout masks come from
generators seeded from the config, never from python's, numpy's or torch's
process-wide streams, which other threads in the process (Prefect's event
client, for one) draw from at any time. So a checkpoint holds nothing of
the process it ran in, and is the same whatever ran before it.

**Distributed (DDP)**: launched with ``torchrun``, ``WORLD_SIZE > 1`` makes
``train`` join the process group (gloo on CPU, NCCL on GPU), wrap the UNet in
``DistributedDataParallel`` and shard each *global* batch of
``batch_size * world_size`` rows deterministically by rank (like
``DistributedSampler``, but step-indexed so resume works). Rank 0 alone writes
checkpoints and plots. On one machine::

    torchrun --nproc-per-node 2 -m training.train_loop --spec runs/7/spec.json

On a GPU cluster (one process per GPU; NCCL picked automatically, each rank
uses ``cuda:LOCAL_RANK``), on every node::

    torchrun --nnodes 4 --nproc-per-node 8 --rdzv-backend c10d \\
        --rdzv-endpoint $HEAD_NODE:29400 --rdzv-id fairchord-7 \\
        -m training.train_loop --spec /shared/fairchord/runs/7/spec.json

The spec (written by ``flows/train.py``, see :func:`write_spec`) names the
feature set, the snapshot members (id → sha256), the CLAP checkpoint and the
config; every rank loads the same member rows, so FAIRCHORD_HOME must be on
shared storage (or an fsspec URI). Use the ``base`` config, scale ``lr``
with the global batch, and keep ``--resume`` for preemptible nodes.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import inspect
import json
import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from training.checkpoint import CheckpointMeta, build_denoiser, load_resume_state, save_checkpoint
from training.diffusion.denoiser import Denoiser
from training.diffusion.sampling import sample_mels
from training.diffusion.unet import MelUNet, count_parameters
from training.snapshot_data import SegmentData
from training.train_config import TrainConfig, get_config

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


# --- small pure helpers the loop uses ------------------------------------------------------


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at ``max_steps``."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class DataOrder:
    """Endless, seeded, resumable row order: epoch ``e`` is ``permutation(rng([seed, e]))``."""

    def __init__(self, n: int, *, seed: int, epoch: int = 0, position: int = 0) -> None:
        if n <= 0:
            raise ValueError("no training segments: the snapshot has no rows to train on")
        self.n, self.seed, self.epoch, self.position = n, seed, epoch, position
        self._perm = self._permutation(epoch)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def take(self, count: int) -> np.ndarray:
        out: list[np.ndarray] = []
        needed = count
        while needed:
            if self.position >= self.n:
                self.epoch, self.position = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
            chunk = self._perm[self.position : self.position + needed]
            out.append(chunk)
            self.position += len(chunk)
            needed -= len(chunk)
        return np.concatenate(out)

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}


def mel_stats(data: SegmentData, *, max_segments: int) -> tuple[float, float]:
    """Mean and std of the valid frames of up to ``max_segments`` evenly spaced segments."""
    n = len(data)
    picks = np.unique(np.linspace(0, n - 1, num=min(n, max_segments)).round().astype(np.int64))
    values = [data.mels[i, :, : int(data.valid_frames[i])].float().reshape(-1) for i in picks]
    flat = torch.cat(values)
    return round(float(flat.mean()), 6), round(float(flat.std().clamp(min=1e-3)), 6)


def weights_digest(model: nn.Module) -> str:
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


def save_loss_plot(
    path: Path, losses: list[tuple[int, float]], val: list[tuple[int, float]]
) -> None:
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


def _dist_env() -> tuple[int, int, int]:
    return (
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


# --- the loop's own random streams ---------------------------------------------------------


# Random torch builtins that take ``generator=`` (builtins have no signature to inspect).
_RANDOM_BUILTINS = frozenset(
    {
        "bernoulli",
        "bernoulli_",
        "cauchy_",
        "exponential_",
        "geometric_",
        "log_normal_",
        "multinomial",
        "normal",
        "normal_",
        "rand",
        "randint",
        "randn",
        "randperm",
        "random_",
        "uniform_",
    }
)


def _dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    generator: torch.Generator,
) -> torch.Tensor:
    """``F.dropout`` (the same computation as torch's CPU kernel) with masks from ``generator``."""
    if not training or p == 0 or input.numel() == 0:
        return input
    keep = torch.empty_like(input).bernoulli_(1 - p, generator=generator)
    scale = keep.div_(1 - p) if p < 1 else keep
    return input.mul_(scale) if inplace else input * scale


class _DrawFrom(TorchFunctionMode):
    """Give ``generator`` to every random torch op this thread calls without one.

    Module constructors draw their initial weights, and ``nn.Dropout`` its
    masks, from torch's process-wide generator, which any other thread may
    draw from meanwhile; inside this (thread-local) mode they draw from the
    loop's own instead, so they are a pure function of its seed.
    """

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.generator = generator

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func is torch.nn.functional.dropout:  # takes no generator
            return _dropout(*args, **kwargs, generator=self.generator)
        if inspect.isfunction(func):
            # Ops called inside this one (uniform_ inside kaiming_uniform_) bypass the mode,
            # so a Python-level op like nn.init.* gets the generator to pass down.
            signature = inspect.signature(func, follow_wrapped=False)
            if "generator" in signature.parameters:
                bound = signature.bind_partial(*args, **kwargs).arguments
                if bound.get("generator") is None:
                    kwargs["generator"] = self.generator
        elif getattr(func, "__name__", "") in _RANDOM_BUILTINS and kwargs.get("generator") is None:
            kwargs["generator"] = self.generator
        return func(*args, **kwargs)


def seeded_init(make: Callable[[], nn.Module], *, seed: int) -> nn.Module:
    """``make()`` with every random initialisation drawn from a generator seeded with ``seed``.

    The same weights as ``torch.manual_seed(seed); make()``, without reading or
    moving torch's process-wide generator.
    """
    with _DrawFrom(torch.Generator().manual_seed(seed)):
        return make()


def _dropout_generator(seed: int, rank: int, step: int, device: torch.device) -> torch.Generator:
    # Masks are a pure function of (seed, rank, step): a resumed run recomputes them, so the
    # checkpoint needs no generator state for them.
    step_seed = int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(step_seed)


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
    rank, world, local_rank = _dist_env()
    distributed = world > 1
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
    is_main = rank == 0
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)

    # Resume state (if any) overrides the given config: the run continues as it was defined.
    resume = load_resume_state(resume_from) if resume_from is not None else None
    if resume is not None:
        stored = resume.meta.config
        given = config.replace(mel_mean=stored.mel_mean, mel_std=stored.mel_std)
        if given.to_dict() != stored.to_dict():
            diff = sorted(k for k, v in given.to_dict().items() if stored.to_dict().get(k) != v)
            raise ValueError(f"cannot resume {resume_from}: config differs in {diff}")
        if resume.meta.snapshot_digest != run_info.snapshot_digest:
            raise ValueError(
                f"cannot resume {resume_from}: it trained on snapshot "
                f"{resume.meta.snapshot_digest!r}, this run is {run_info.snapshot_digest!r}"
            )
        if resume.train_state.get("world_size", 1) != world:
            raise ValueError(
                f"cannot resume {resume_from}: saved with world size "
                f"{resume.train_state.get('world_size')}, now {world}"
            )
        config = stored

    # Normalisation stats come from the training data (not the held-back set) once, then live
    # in the config so every checkpoint carries them.
    if not config.resolved:
        mean, std = mel_stats(train_data, max_segments=config.stats_max_segments)
        config = config.replace(mel_mean=mean, mel_std=std)
        logger.info("mel normalisation from training data: mean %.4f, std %.4f", mean, std)

    # Deterministic seeding with the loop's own generators, never the process-wide ones: one
    # for the model init, one for the training noise / crops / condition dropout (per rank).
    noise_gen = torch.Generator().manual_seed(config.seed * 1_000_003 + rank + 1)
    has_dropout = config.unet.dropout > 0

    # Model, EMA copy, denoisers. The EMA model is what validation and samples use.
    net = seeded_init(lambda: MelUNet(config.unet), seed=config.seed).to(dev)
    ema_net = copy.deepcopy(net).requires_grad_(False)
    train_net: nn.Module = net
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        train_net = DistributedDataParallel(
            net, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    denoiser = build_denoiser(config, train_net)
    ema_denoiser = build_denoiser(config, ema_net).eval()
    n_params = count_parameters(net)

    optimizer = torch.optim.AdamW(
        net.parameters(),
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        weight_decay=config.weight_decay,
    )

    step = 0
    order = DataOrder(len(train_data), seed=config.seed)
    loss_history: list[tuple[int, float]] = []
    val_history: list[tuple[int, float]] = []
    window_sum, window_count = 0.0, 0
    if resume is not None:
        net.load_state_dict(resume.model_state)
        ema_net.load_state_dict(resume.ema_state)
        optimizer.load_state_dict(resume.optimizer_state)
        ts = resume.train_state
        step = int(ts["step"])
        order = DataOrder(len(train_data), seed=config.seed, **ts["data_order"])
        if ts["train_rows"] != len(train_data):
            raise ValueError(
                f"cannot resume: checkpoint trained on {ts['train_rows']} rows, data has "
                f"{len(train_data)}"
            )
        loss_history = [(int(s), float(v)) for s, v in ts["loss_history"]]
        val_history = [(int(s), float(v)) for s, v in ts["val_history"]]
        window_sum, window_count = float(ts["window"][0]), int(ts["window"][1])
        # Older checkpoints also hold python/numpy/torch process-wide RNG states: training never
        # drew from them, so they are left unread rather than imposed on the whole process.
        noise_gen.set_state(resume.rng_tensors[f"noise.{rank}"])
        logger.info("resumed from %s at step %d", resume_from, step)

    checkpoints: list[SavedCheckpoint] = []
    last_checkpoint_step = -1  # tracked on every rank (checkpoint() is collective under DDP)
    plots: list[Path] = []
    if is_main:
        (out / "plots").mkdir(parents=True, exist_ok=True)

    def checkpoint(final: bool) -> None:
        nonlocal last_checkpoint_step
        last_checkpoint_step = step
        # Every rank contributes its noise-generator state (needed for an exact DDP resume).
        states = [noise_gen.get_state()]
        if distributed:
            import torch.distributed as dist

            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, noise_gen.get_state())
            states = gathered
        if not is_main:
            return
        train_state = {
            "step": step,
            "world_size": world,
            "train_rows": len(train_data),
            "data_order": order.state(),
            "loss_history": loss_history,
            "val_history": val_history,
            "window": [window_sum, window_count],
            "lr": lr_at(step, config),
        }
        rng_tensors = {f"noise.{r}": s for r, s in enumerate(states)}
        meta = CheckpointMeta(config=config, step=step, **vars(run_info))
        name = "final.safetensors" if final else f"step-{step:07d}.safetensors"
        path = out / name
        sha = save_checkpoint(
            path,
            meta=meta,
            model=net,
            ema_model=ema_net,
            optimizer=optimizer,
            train_state=train_state,
            rng_tensors=rng_tensors,
        )
        saved = SavedCheckpoint(step=step, path=path, sha256=sha, is_final=final)
        checkpoints.append(saved)
        if on_checkpoint is not None:
            on_checkpoint(saved)
        logger.info("checkpoint %s (step %d, sha256 %s)", path, step, sha[:12])

    def samples(tag_step: int) -> None:
        if not is_main:
            return
        source = val_data if val_data is not None and len(val_data) else train_data
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
        path = out / "plots" / f"samples-step{tag_step:07d}.png"
        save_sample_plot(path, generated, real, [source.captions[i] for i in rows], tag_step)
        plots.append(path)

    end = config.max_steps if stop_after is None else min(config.max_steps, stop_after)
    bar = None
    if progress and is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=end, initial=step, desc=f"train {config.name}", unit="step", leave=False)

    global_batch = config.batch_size * world
    net.train()
    t_start, seen = time.perf_counter(), 0
    try:
        while step < end:
            # This rank's slice of the global batch: same global order on every rank.
            rows = order.take(global_batch)[
                rank * config.batch_size : (rank + 1) * config.batch_size
            ]
            mel, mask, cond = train_data.crop_batch(
                rows, crop_frames=config.crop_frames, generator=noise_gen
            )
            x0 = denoiser.normalize(mel).to(dev)

            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, config)
            # Dropout masks (if the UNet has dropout) from the loop's own per-step generator.
            with (
                _DrawFrom(_dropout_generator(config.seed, rank, step, dev))
                if has_dropout
                else nullcontext()
            ):
                loss = denoiser.loss(
                    x0,
                    cond.to(dev),
                    generator=noise_gen,
                    cond_dropout=config.cond_dropout,
                    mask=mask.to(dev),
                ).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # DDP averages gradients across ranks here
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
            optimizer.step()

            # EMA with the usual warm-up, so early checkpoints are not dominated by the init.
            decay = min(config.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for p_ema, p in zip(ema_net.parameters(), net.parameters(), strict=True):
                    p_ema.lerp_(p, 1 - decay)
                for b_ema, b in zip(ema_net.buffers(), net.buffers(), strict=True):
                    b_ema.copy_(b)

            step += 1
            seen += global_batch
            loss_value = float(loss.detach())
            if distributed:
                import torch.distributed as dist

                reduced = torch.tensor([loss_value], dtype=torch.float64)
                dist.all_reduce(reduced)
                loss_value = float(reduced) / world
            window_sum, window_count = window_sum + loss_value, window_count + 1
            if step % config.log_every == 0:
                loss_history.append((step, window_sum / window_count))
                window_sum, window_count = 0.0, 0
            if bar is not None:
                rate = seen / max(1e-9, time.perf_counter() - t_start)
                bar.set_postfix(loss=f"{loss_value:.4f}", seg_s=f"{rate:.1f}", refresh=False)
                bar.update(1)

            if step % config.eval_every == 0 or step == config.max_steps:
                if val_data is not None and len(val_data) and is_main:
                    val_history.append((step, validation_loss(ema_denoiser, val_data, config)))
                if is_main:
                    save_loss_plot(out / "plots" / "loss.png", loss_history, val_history)
            if config.sample_every and step % config.sample_every == 0 and step < config.max_steps:
                samples(step)
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step < end:
                checkpoint(final=False)
    except KeyboardInterrupt:
        # Steps are atomic here, so the state between two steps is exactly resumable.
        if not distributed and last_checkpoint_step != step:
            logger.warning("interrupted at step %d: writing a resumable checkpoint", step)
            checkpoint(final=False)
        raise
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t_start
    if step == config.max_steps:
        samples(step)
        checkpoint(final=True)
    elif last_checkpoint_step != step:
        checkpoint(final=False)  # an early stop is always resumable from here
    if is_main and (out / "plots" / "loss.png").exists():
        plots.insert(0, out / "plots" / "loss.png")
    return TrainResult(
        config=config,
        step=step,
        checkpoints=checkpoints,
        loss_history=loss_history,
        val_history=val_history,
        segments_per_second=seen / elapsed if elapsed > 0 else 0.0,
        parameters=n_params,
        plots=plots,
        weights_sha256=weights_digest(net),
    )


# --- torchrun entry point ------------------------------------------------------------------


def synthetic_segments(
    n: int, *, n_mels: int = 64, frames: int = 128, recordings: int = 4, seed: int = 0
) -> SegmentData:
    """Deterministic fake segments (tones + noise) for tests and the DDP smoke run."""
    g = torch.Generator().manual_seed(seed)
    bins = torch.arange(n_mels, dtype=torch.float32)[:, None]
    mels, conds, captions = [], [], []
    for _ in range(n):
        centre = float(torch.randint(4, n_mels - 4, (1,), generator=g))
        peak = torch.exp(-0.5 * ((bins - centre) / 2.0) ** 2).expand(n_mels, frames)
        mels.append(-6.0 + 5.0 * peak + 0.3 * torch.randn(n_mels, frames, generator=g))
        c = torch.zeros(512)
        c[int(centre)] = 1.0
        conds.append(c)
        captions.append(f"tone at bin {int(centre)}")
    rec = torch.arange(n) % recordings
    return SegmentData(
        mels=torch.stack(mels).to(torch.float16),
        valid_frames=torch.full((n,), frames, dtype=torch.int64),
        cond=torch.stack(conds),
        recording_ids=rec.to(torch.int64) + 1,
        segment_index=torch.arange(n, dtype=torch.int64) // recordings,
        captions=captions,
        artist_ids=[[] for _ in range(n)],
    )


def write_spec(path: str | Path, spec: dict[str, Any]) -> Path:
    """Write a run spec for ``python -m training.train_loop --spec`` (torchrun on a cluster).

    Keys: ``config`` (TrainConfig dict), ``out_dir``, ``feature_root``,
    ``members`` ({recording_id: sha256}), ``clap_path``, ``run_info`` (RunInfo fields).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2, sort_keys=True), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m training.train_loop`` — the entry point ``torchrun`` launches on each rank."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--spec", help="run spec JSON written by flows/train.py (write_spec)")
    parser.add_argument("--synthetic", type=int, default=0, help="train on N synthetic segments")
    parser.add_argument("--config", default="debug", help="named config for --synthetic")
    parser.add_argument("--out", help="output directory for --synthetic")
    parser.add_argument("--stop-after", type=int, default=None)
    parser.add_argument("--resume", default=None, help="checkpoint to resume from")
    parser.add_argument("--result-json", default=None, help="write a per-rank result summary here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.synthetic:
        config = get_config(args.config)
        data = synthetic_segments(args.synthetic, frames=max(128, config.crop_frames))
        train_rows = [i for i in range(len(data)) if int(data.recording_ids[i]) != 1]
        val_rows = [i for i in range(len(data)) if int(data.recording_ids[i]) == 1]
        train_data, val_data = data.subset(train_rows), data.subset(val_rows)
        out_dir = Path(args.out or "synthetic-run")
        info = RunInfo(run_name="synthetic")
    elif args.spec:
        from training.clap_embedder import ClapEmbedder
        from training.snapshot_data import load_snapshot_segments, split_segments

        spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
        config = TrainConfig.from_dict(spec["config"])
        embedder = ClapEmbedder.load(spec["clap_path"])
        members = {int(k): v for k, v in spec["members"].items()}
        data = load_snapshot_segments(spec["feature_root"], members, embedder=embedder)
        train_data, val_data = split_segments(
            data, val_fraction=config.val_fraction, seed=config.seed
        )
        out_dir = Path(spec["out_dir"])
        info = RunInfo(**spec["run_info"])
    else:
        parser.error("give --spec or --synthetic N")
        return 2

    result = train(
        config,
        train_data=train_data,
        val_data=val_data,
        out_dir=out_dir,
        run_info=info,
        resume_from=args.resume,
        stop_after=args.stop_after,
        progress=False,
    )
    rank = _dist_env()[0]
    if args.result_json:
        Path(args.result_json.replace("{rank}", str(rank))).write_text(
            json.dumps(
                {
                    "rank": rank,
                    "step": result.step,
                    "weights_sha256": result.weights_sha256,
                    "loss_history": result.loss_history,
                    "checkpoints": [str(c.path) for c in result.checkpoints],
                }
            ),
            encoding="utf-8",
        )
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
