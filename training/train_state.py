"""What a training run carries from step to step: data order, LR schedule, loss histories.

Everything here is either a pure function of the config and the step
(:func:`lr_at`, the epoch permutations of :class:`DataOrder`) or saved in
every resumable checkpoint (:class:`LoopState`'s ``train_state``), which is
what makes a resumed run continue bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.checkpoint import ResumeState
from training.train_config import TrainConfig


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


@dataclass
class LoopState:
    """The loop's position and loss record; a resumable checkpoint stores it as ``train_state``."""

    step: int
    order: DataOrder
    loss_history: list[tuple[int, float]] = field(default_factory=list)  # (step, window mean)
    val_history: list[tuple[int, float]] = field(default_factory=list)  # (step, EMA val loss)
    # Train losses since the last logged mean: their sum and count.
    window_sum: float = 0.0
    window_count: int = 0

    @classmethod
    def start(cls, train_rows: int, *, seed: int) -> LoopState:
        return cls(step=0, order=DataOrder(train_rows, seed=seed))

    @classmethod
    def resume(cls, train_state: dict[str, Any], *, train_rows: int, seed: int) -> LoopState:
        """The state a checkpoint's ``train_state`` saved, for data of ``train_rows`` rows."""
        order = DataOrder(train_rows, seed=seed, **train_state["data_order"])
        if train_state["train_rows"] != train_rows:
            raise ValueError(
                f"cannot resume: checkpoint trained on {train_state['train_rows']} rows, data has "
                f"{train_rows}"
            )
        window_sum, window_count = train_state["window"]
        return cls(
            step=int(train_state["step"]),
            order=order,
            loss_history=[(int(s), float(v)) for s, v in train_state["loss_history"]],
            val_history=[(int(s), float(v)) for s, v in train_state["val_history"]],
            window_sum=float(window_sum),
            window_count=int(window_count),
        )

    def record_loss(self, value: float, *, log_every: int) -> None:
        """Add a step's loss to the window; every ``log_every`` steps log the window's mean."""
        self.window_sum, self.window_count = self.window_sum + value, self.window_count + 1
        if self.step % log_every == 0:
            self.loss_history.append((self.step, self.window_sum / self.window_count))
            self.window_sum, self.window_count = 0.0, 0

    def train_state(self, *, world: int, train_rows: int, config: TrainConfig) -> dict[str, Any]:
        return {
            "step": self.step,
            "world_size": world,
            "train_rows": train_rows,
            "data_order": self.order.state(),
            "loss_history": self.loss_history,
            "val_history": self.val_history,
            "window": [self.window_sum, self.window_count],
            "lr": lr_at(self.step, config),
        }


def config_to_resume(
    config: TrainConfig,
    resume: ResumeState,
    *,
    resume_from: str | Path,
    snapshot_digest: str,
    world: int,
) -> TrainConfig:
    """The checkpoint's own config, after checking the run it continues is the same run.

    Refuses another config (apart from the mel statistics, which the first
    run computed), another snapshot or another world size.
    """
    stored = resume.meta.config
    given = config.replace(mel_mean=stored.mel_mean, mel_std=stored.mel_std)
    if given.to_dict() != stored.to_dict():
        diff = sorted(k for k, v in given.to_dict().items() if stored.to_dict().get(k) != v)
        raise ValueError(f"cannot resume {resume_from}: config differs in {diff}")
    if resume.meta.snapshot_digest != snapshot_digest:
        raise ValueError(
            f"cannot resume {resume_from}: it trained on snapshot "
            f"{resume.meta.snapshot_digest!r}, this run is {snapshot_digest!r}"
        )
    if resume.train_state.get("world_size", 1) != world:
        raise ValueError(
            f"cannot resume {resume_from}: saved with world size "
            f"{resume.train_state.get('world_size')}, now {world}"
        )
    return stored
