"""Diffusion checkpoints as safetensors files whose header says what they are and where from.

One file holds:

- tensors ``model.*`` (raw weights) and ``ema.*`` (EMA weights, what sampling uses);
- for resumable checkpoints also ``optim.<i>.<key>`` (AdamW moments and step
  counts) and ``rng.noise.<rank>`` (each rank's training noise generator);
- one string metadata entry (safetensors' ``__metadata__["fairchord"]``), a
  JSON object: ``meta`` = {``format``, ``config`` (the resolved
  :class:`~training.train_config.TrainConfig`), ``mel_config``,
  ``mel_config_hash``, ``clap_sha256``, ``training_run_id``,
  ``snapshot_digest``, ``step``, ``run_name``, and ``audit_head``, the audit
  chain's head ``SEQ:HASH`` when the snapshot was frozen, an anchor that
  ``fairchord audit verify`` checks, when the run has one} and, when resumable,
  ``optim_param_groups`` and ``train_state`` (step, data-order position, loss
  history; the LR is a pure function of the step).

Nothing process-wide is saved: training draws only from its own generators,
so python's, numpy's and torch's global RNG states (which other threads may
move at any time) would make identical runs differ byte-wise. Older
checkpoints that carry them (``train_state`` ``python_rng``/``numpy_rng``,
tensor ``rng.torch``) still load; the resumed run ignores them.

A single key keeps the file byte-for-byte reproducible (safetensors writes
its metadata map in a random order), so a resumed run's final checkpoint has
the same sha256 as an uninterrupted one.

No pickle anywhere: loading a checkpoint cannot execute code. Files are
written to a temporary name and renamed, and identified by their sha256.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from provenance.hashing import sha256_file
from training.diffusion.denoiser import Denoiser
from training.diffusion.unet import MelUNet
from training.train_config import TrainConfig

FORMAT = "fairchord-diffusion/1"
HEADER_KEY = "fairchord"
_KEYS = (
    "config",
    "mel_config",
    "mel_config_hash",
    "clap_sha256",
    "training_run_id",
    "snapshot_digest",
    "step",
    "run_name",
)


@dataclass
class CheckpointMeta:
    """What a checkpoint is: its resolved config and the provenance it was trained under."""

    config: TrainConfig
    mel_config: dict[str, Any] = field(default_factory=dict)
    mel_config_hash: str = ""
    clap_sha256: str = ""
    training_run_id: int | None = None
    snapshot_digest: str = ""
    step: int = 0
    run_name: str = ""
    audit_head: str = ""

    def to_dict(self) -> dict[str, Any]:
        anchor = {"audit_head": self.audit_head} if self.audit_head else {}
        return {
            "format": FORMAT,
            "config": self.config.to_dict(),
            "mel_config": self.mel_config,
            "mel_config_hash": self.mel_config_hash,
            "clap_sha256": self.clap_sha256,
            "training_run_id": self.training_run_id,
            "snapshot_digest": self.snapshot_digest,
            "step": self.step,
            "run_name": self.run_name,
            **anchor,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, path: str | Path = "?") -> CheckpointMeta:
        if data.get("format") != FORMAT:
            raise ValueError(
                f"{path} is not a fairchord diffusion checkpoint (format "
                f"{data.get('format')!r}, expected {FORMAT!r})"
            )
        missing = [k for k in _KEYS if k not in data]
        if missing:
            raise ValueError(f"{path}: checkpoint header lacks {missing}")
        run_id = data["training_run_id"]
        return cls(
            config=TrainConfig.from_dict(data["config"]),
            mel_config=dict(data["mel_config"]),
            mel_config_hash=str(data["mel_config_hash"]),
            clap_sha256=str(data["clap_sha256"]),
            training_run_id=None if run_id is None else int(run_id),
            snapshot_digest=str(data["snapshot_digest"]),
            step=int(data["step"]),
            run_name=str(data["run_name"]),
            audit_head=str(data.get("audit_head", "")),
        )


def _header_json(header: dict[str, Any]) -> dict[str, str]:
    # One metadata key: safetensors stores metadata in a hash map whose order is random per
    # process, so several keys would make identical checkpoints differ byte-wise.
    return {HEADER_KEY: json.dumps(header, sort_keys=True, separators=(",", ":"))}


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def save_checkpoint(
    path: str | Path,
    *,
    meta: CheckpointMeta,
    model: nn.Module,
    ema_model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    train_state: dict[str, Any] | None = None,
    rng_tensors: dict[str, torch.Tensor] | None = None,
) -> str:
    """Write a checkpoint (tmp + rename) and return its sha256.

    With ``optimizer``/``train_state``/``rng_tensors`` it is resumable;
    without, it holds only weights and provenance (a release checkpoint).
    """
    if not meta.config.resolved:
        raise ValueError("the config must be resolved (mel_mean/mel_std set) before saving")
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in (("model", model), ("ema", ema_model)):
        for name, value in _unwrap(module).state_dict().items():
            tensors[f"{prefix}.{name}"] = value.detach().cpu().contiguous().clone()
    header: dict[str, Any] = {"meta": meta.to_dict()}
    if optimizer is not None:
        state = optimizer.state_dict()
        for index, entries in state["state"].items():
            for key, value in entries.items():
                tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).cpu().contiguous().clone()
        header["optim_param_groups"] = state["param_groups"]
    for name, value in (rng_tensors or {}).items():
        tensors[f"rng.{name}"] = value.cpu().contiguous().clone()
    if train_state is not None:
        header["train_state"] = train_state
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=_header_json(header))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return sha256_file(path)


def read_header(path: str | Path) -> dict[str, Any]:
    """The checkpoint's JSON header (``meta``, and for resumable ones ``train_state`` …)."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if HEADER_KEY not in metadata:
        raise ValueError(
            f"{path} is not a fairchord diffusion checkpoint (no {HEADER_KEY!r} header)"
        )
    header: dict[str, Any] = json.loads(metadata[HEADER_KEY])
    return header


def read_meta(path: str | Path) -> CheckpointMeta:
    """The checkpoint's metadata without loading any tensor."""
    return CheckpointMeta.from_dict(read_header(path).get("meta", {}), path=path)


def build_denoiser(config: TrainConfig, model: nn.Module | None = None) -> Denoiser:
    """The EDM denoiser for a resolved config around ``model`` (a fresh UNet by default)."""
    if not config.resolved:
        raise ValueError("config has no mel_mean/mel_std yet; resolve it from data first")
    assert config.mel_mean is not None and config.mel_std is not None
    return Denoiser(
        model if model is not None else MelUNet(config.unet),
        sigma_data=config.sigma_data,
        p_mean=config.p_mean,
        p_std=config.p_std,
        mel_mean=config.mel_mean,
        mel_std=config.mel_std,
    )


def load_checkpoint(
    path: str | Path, *, weights: str = "ema", device: str | torch.device = "cpu"
) -> tuple[Denoiser, CheckpointMeta]:
    """Rebuild the denoiser from the header's config; load ``ema`` (default) or ``model`` weights.

    The returned denoiser is in eval mode; give it to
    :func:`training.diffusion.sampling.sample_mels`.
    """
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    meta = read_meta(path)
    tensors = load_file(str(path), device=str(device))
    prefix = f"{weights}."
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    net = MelUNet(meta.config.unet)
    net.load_state_dict(state, strict=True)
    denoiser = build_denoiser(meta.config, net).to(device)
    denoiser.eval()
    return denoiser, meta


@dataclass
class ResumeState:
    """Everything :func:`training.train_loop.train` needs to continue a run exactly."""

    meta: CheckpointMeta
    model_state: dict[str, torch.Tensor]
    ema_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    rng_tensors: dict[str, torch.Tensor]
    train_state: dict[str, Any]


def load_resume_state(path: str | Path) -> ResumeState:
    header = read_header(path)
    meta = CheckpointMeta.from_dict(header.get("meta", {}), path=path)
    if "train_state" not in header or "optim_param_groups" not in header:
        raise ValueError(f"{path} is a weights-only checkpoint; it cannot be resumed")
    tensors = load_file(str(path))
    model_state: dict[str, torch.Tensor] = {}
    ema_state: dict[str, torch.Tensor] = {}
    optim: dict[int, dict[str, torch.Tensor]] = {}
    rng: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        kind, _, rest = key.partition(".")
        if kind == "model":
            model_state[rest] = value
        elif kind == "ema":
            ema_state[rest] = value
        elif kind == "optim":
            index, _, name = rest.partition(".")
            optim.setdefault(int(index), {})[name] = value
        elif kind == "rng":
            rng[rest] = value
    return ResumeState(
        meta=meta,
        model_state=model_state,
        ema_state=ema_state,
        optimizer_state={
            "state": optim,
            "param_groups": header["optim_param_groups"],
        },
        rng_tensors=rng,
        train_state=header["train_state"],
    )
