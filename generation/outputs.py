"""What an allowed clip leaves behind: its audio, a spectrogram PNG and a JSON sidecar.

Every file is written to a temporary name and renamed, so a reader never sees half a file.
The sidecar says what the clip is (prompt, seed, checkpoint, CLAP, vocoder) and why it was
allowed out (the prompt screen's and the similarity gate's decisions). With signing keys
the audio carries a signed C2PA manifest (:mod:`generation.credentials`): it is signed
from a temporary plain copy into the temporary name before the rename, so the file that
appears is already signed; the sidecar's ``content_credentials`` says signed or unsigned.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generation.credentials import (
    ClipClaims,
    credential_summary,
    generation_manifest,
    sign_audio,
)
from generation.gate import GateResult
from generation.prompt_screen import ScreenResult
from generation.request import ClipOutcome, GenerationRequest, SampledClip
from generation.vocoder import Vocoder
from provenance.content_credentials import CredentialReading
from provenance.hashing import sha256_file
from provenance.models import Checkpoint, Generation, utcnow
from provenance.signing_keys import SigningKeys
from training.checkpoint import CheckpointMeta
from training.mel import MelConfig


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary sibling and rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_audio(path: Path, wave: np.ndarray, sample_rate: int, fmt: str) -> None:
    """16-bit PCM WAV or FLAC, written to a temporary name and renamed."""
    import soundfile as sf

    _write_atomic(
        path,
        lambda tmp: sf.write(tmp, wave, sample_rate, format=fmt.upper(), subtype="PCM_16"),
    )


def write_signed_audio(
    path: Path,
    wave: np.ndarray,
    sample_rate: int,
    fmt: str,
    *,
    manifest: dict[str, Any],
    keys: SigningKeys,
) -> CredentialReading:
    """Audio as :func:`write_audio`, signed with ``manifest`` before it takes its name.

    Returns the validator's reading of the signed file; raises
    :class:`generation.credentials.SigningFailed` (nothing is left at ``path`` then).
    """
    import soundfile as sf

    plain = path.with_name(f".{path.name}.plain.tmp")
    signed: list[CredentialReading] = []
    try:
        sf.write(plain, wave, sample_rate, format=fmt.upper(), subtype="PCM_16")
        _write_atomic(
            path,
            lambda tmp: signed.append(sign_audio(plain, tmp, manifest, keys, container=fmt)),
        )
    finally:
        plain.unlink(missing_ok=True)
    return signed[0]


def write_spectrogram_png(path: Path, mel: torch.Tensor, *, title: str, hop_seconds: float) -> None:
    """The clip's log-mel spectrogram as a PNG, for a person to look at."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = mel.numpy()
    fig, ax = plt.subplots(figsize=(8, 3))
    image = ax.imshow(
        data,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0.0, data.shape[1] * hop_seconds, 0, data.shape[0]),
    )
    ax.set_xlabel("seconds")
    ax.set_ylabel("mel bin")
    ax.set_title(title[:90], fontsize=9)
    fig.colorbar(image, ax=ax, label="log magnitude")
    fig.tight_layout()
    _write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)


def write_sidecar(path: Path, doc: dict[str, Any]) -> None:
    """The sidecar document as sorted, indented JSON."""
    text = json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"
    _write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def describe_vocoder(vocoder: Vocoder) -> dict[str, Any]:
    """The vocoder's own description, else its name and sample rate."""
    describe = getattr(vocoder, "describe", None)
    if callable(describe):
        return dict(describe())
    return {"name": vocoder.name, "sample_rate": vocoder.sample_rate}


def sidecar_document(
    request: GenerationRequest,
    item: SampledClip,
    result: GateResult,
    screened: ScreenResult,
    *,
    row: Generation,
    ckpt: Checkpoint,
    meta: CheckpointMeta,
    embedder_sha256: str,
    vocoder: Vocoder,
    output_sha256: str,
    audio_name: str,
    seconds: float,
    tainted_override: bool,
) -> dict[str, Any]:
    """Everything needed to know what this clip is and why it was allowed out."""
    created = row.created_at or utcnow()
    return {
        "format": "fairchord-generation/1",
        "generation_id": row.id,
        "audio": audio_name,
        "audio_sha256": output_sha256,
        "prompt": request.prompt,
        "seed": item.seed,
        "clip": item.index,
        "sampler": request.sampler,
        "steps": request.steps,
        "cfg": request.cfg,
        **request.sampling_used(),
        "seconds": seconds,
        "sample_rate": vocoder.sample_rate,
        "init_audio": (
            {"sha256": request.init_audio_sha256, "strength": request.strength}
            if request.init_audio is not None
            else None
        ),
        "checkpoint": {
            "id": ckpt.id,
            "sha256": ckpt.sha256,
            "step": ckpt.step,
            "training_run_id": ckpt.training_run_id,
            "snapshot_digest": meta.snapshot_digest,
            "mel_config_hash": meta.mel_config_hash,
        },
        "embedder_sha256": embedder_sha256,
        "vocoder": describe_vocoder(vocoder),
        "gain": item.gain,
        "prompt_screen": screened.to_json(),
        "gate": {
            "verdict": result.verdict,
            "reasons": list(result.reasons),
            "track_similarity": result.track_similarity,
            "nearest": result.nearest,
            "artist_scores": result.artist_scores,
            "detector_scores": result.detector_scores,
            "thresholds": result.thresholds,
            "index_sha256": result.index_sha256,
            "audio_sha256": result.audio_sha256,
        },
        "tainted_override": tainted_override,
        "elapsed_s": round(item.seconds_taken, 3),
        "created_at": created.astimezone(dt.UTC).isoformat(timespec="seconds"),
    }


def write_clip(
    clip: ClipOutcome,
    item: SampledClip,
    result: GateResult,
    screened: ScreenResult,
    *,
    request: GenerationRequest,
    row: Generation,
    ckpt: Checkpoint,
    meta: CheckpointMeta,
    mel_config: MelConfig,
    embedder_sha256: str,
    vocoder: Vocoder,
    seconds: float,
    tainted_override: bool,
    audit_head: dict[str, Any],
    claims: ClipClaims,
    keys: SigningKeys | None,
    signing_error: str | None = None,
) -> CredentialReading | None:
    """Write an allowed clip's audio, spectrogram and sidecar; sets the clip's paths, sha256
    and credential summary, and returns the signed file's credential reading (None unsigned).

    ``audit_head`` is the audit chain's head after the clip's gate decision: an anchor that
    leaves with the clip (:mod:`provenance.audit.anchors`). ``claims`` is what the
    clip's Content Credential states; without ``keys`` the audio is written unsigned
    (``signing_error`` says why, when signing was tried and failed).
    """
    stem = f"gen-{row.id:06d}-seed{item.seed}"
    clip.audio_path = request.out_dir / f"{stem}.{request.format}"
    clip.png_path = request.out_dir / f"{stem}.png"
    clip.sidecar_path = request.out_dir / f"{stem}.json"
    reading = None
    if keys is not None:
        manifest = generation_manifest(claims, title=clip.audio_path.name)
        reading = write_signed_audio(
            clip.audio_path,
            item.wave,
            mel_config.sample_rate,
            request.format,
            manifest=manifest,
            keys=keys,
        )
    else:
        write_audio(clip.audio_path, item.wave, mel_config.sample_rate, request.format)
    clip.credential = credential_summary(
        reading, keys.leaf.sha256 if keys is not None and reading is not None else None
    )
    if signing_error is not None:
        clip.credential["note"] = signing_error
    write_spectrogram_png(
        clip.png_path,
        item.mel,
        title=f"{request.prompt} (seed {item.seed})",
        hop_seconds=mel_config.hop_length / mel_config.sample_rate,
    )
    clip.output_sha256 = sha256_file(clip.audio_path)
    sidecar = sidecar_document(
        request,
        item,
        result,
        screened,
        row=row,
        ckpt=ckpt,
        meta=meta,
        embedder_sha256=embedder_sha256,
        vocoder=vocoder,
        output_sha256=clip.output_sha256,
        audio_name=clip.audio_path.name,
        seconds=seconds,
        tainted_override=tainted_override,
    )
    sidecar["audit_head"] = audit_head
    sidecar["content_credentials"] = clip.credential
    write_sidecar(clip.sidecar_path, sidecar)
    return reading
