"""The checks a checkpoint passes before generation samples from it, and the refusals they raise.

A checkpoint must be the recorded file of its training run (sha256, run id, snapshot
digest, mel config), and the CLAP loaded with it the one it was conditioned on. A tainted
snapshot is described here; :func:`generation.pipeline.generate` decides what to do about it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from generation.index import GateUnavailable
from provenance.audit.taint import RunTaint
from provenance.hashing import sha256_file
from provenance.models import Checkpoint, TrainingRun
from provenance.object_store import location_path
from provenance.s3_objects import StoreIntegrityError
from provenance.store_cache import cached_copy
from training.checkpoint import CheckpointMeta, load_checkpoint
from training.diffusion.denoiser import Denoiser
from training.mel import MelConfig


class GenerationRefused(RuntimeError):
    """Generation did not run; the message says why."""


class TaintedCheckpoint(GenerationRefused):
    """The checkpoint's training snapshot no longer holds (see :mod:`provenance.audit.taint`)."""

    def __init__(self, message: str, taint: RunTaint) -> None:
        super().__init__(message)
        self.taint = taint


class CheckpointInvalid(GenerationRefused):
    """The checkpoint file is missing, altered, or does not belong to its training run."""


class ClapMismatch(GateUnavailable):
    """The loaded CLAP is not the one the checkpoint was conditioned on and gated with."""


def describe_taint(taint: RunTaint) -> str:
    """One line naming every tainted member with its reasons and the events behind them."""
    parts = []
    for member in taint.members:
        evidence = [f"consent event {e}" for e in member.event_ids]
        evidence += [f"licence assertion {a}" for a in member.assertion_ids]
        part = (
            f"recording {member.recording_id} ({member.sha256[:12]}): {', '.join(member.reasons)}"
        )
        if evidence:
            part += f" by {', '.join(evidence)}"
        parts.append(part)
    return "; ".join(parts)


def taint_payload(taint: RunTaint) -> dict[str, Any]:
    """The taint as an audit payload: the run, its policy and every tainted member's evidence."""
    return {
        "training_run_id": taint.training_run_id,
        "policy": taint.policy,
        "members": [
            {
                "recording_id": m.recording_id,
                "sha256": m.sha256,
                "reasons": list(m.reasons),
                "consent_event_ids": list(m.event_ids),
                "licence_assertion_ids": list(m.assertion_ids),
            }
            for m in taint.members
        ],
    }


def checkpoint_path(uri: str, sha256: str | None = None) -> Path:
    """The local path of a checkpoint location (``home://``, ``file://`` or a plain path), or
    with ``sha256`` a verified cached copy of one in an S3 store."""
    try:
        if sha256 is not None:
            return cached_copy(uri, sha256)
        return location_path(uri)
    except StoreIntegrityError as exc:
        raise CheckpointInvalid(f"checkpoint at {uri}: {exc}") from None
    except ValueError:
        raise CheckpointInvalid(f"checkpoint at {uri}: only local files can be loaded") from None


def load_verified_checkpoint(
    ckpt: Checkpoint, run: TrainingRun
) -> tuple[Denoiser, CheckpointMeta, MelConfig]:
    """Load the checkpoint's EMA weights after checking it is the recorded file of ``run``."""
    path = checkpoint_path(ckpt.uri, ckpt.sha256)
    if not path.is_file():
        raise CheckpointInvalid(f"checkpoint {ckpt.id}: file {path} does not exist")
    actual = sha256_file(path)
    if actual != ckpt.sha256:
        raise CheckpointInvalid(
            f"checkpoint {ckpt.id}: {path} has sha256 {actual[:12]}, the record says "
            f"{ckpt.sha256[:12]}; refusing a file that is not the one trained"
        )
    try:
        denoiser, meta = load_checkpoint(path)
    except (ValueError, RuntimeError, OSError) as exc:
        raise CheckpointInvalid(f"checkpoint {ckpt.id}: cannot load {path}: {exc}") from exc
    if meta.training_run_id != run.id:
        raise CheckpointInvalid(
            f"checkpoint {ckpt.id}: its header says training run {meta.training_run_id}, "
            f"the record says {run.id}"
        )
    if run.members_digest is not None and meta.snapshot_digest != run.members_digest:
        raise CheckpointInvalid(
            f"checkpoint {ckpt.id}: trained on snapshot {meta.snapshot_digest[:12]}, run "
            f"{run.id}'s snapshot is {run.members_digest[:12]}"
        )
    try:
        mel_config = MelConfig.from_dict(meta.mel_config)
    except (TypeError, ValueError) as exc:
        raise CheckpointInvalid(f"checkpoint {ckpt.id}: bad mel config: {exc}") from exc
    if meta.mel_config_hash and mel_config.hash() != meta.mel_config_hash:
        raise CheckpointInvalid(
            f"checkpoint {ckpt.id}: mel config hashes to {mel_config.hash()}, header says "
            f"{meta.mel_config_hash}"
        )
    if mel_config.n_mels != meta.config.unet.n_mels:
        raise CheckpointInvalid(
            f"checkpoint {ckpt.id}: mel config has {mel_config.n_mels} bins, the UNet "
            f"{meta.config.unet.n_mels}"
        )
    return denoiser, meta, mel_config


def check_clap(ckpt: Checkpoint, meta: CheckpointMeta, embedder_sha256: str) -> None:
    """The loaded CLAP is the one the checkpoint records (it was conditioned on that CLAP)."""
    if not meta.clap_sha256:
        raise ClapMismatch(
            f"checkpoint {ckpt.id} records no CLAP sha256: cannot tell which CLAP it was "
            "conditioned on, so neither the prompt nor the gate can be trusted"
        )
    if embedder_sha256 != meta.clap_sha256:
        raise ClapMismatch(
            f"the loaded CLAP has sha256 {str(embedder_sha256)[:12]}, checkpoint {ckpt.id} "
            f"was trained with CLAP {meta.clap_sha256[:12]}; load that CLAP (--clap PATH)"
        )
