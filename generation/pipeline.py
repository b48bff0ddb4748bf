"""Text-to-audio generation with its safeguards, as plain functions (no CLI, no Prefect).

:func:`generate` runs, in order:

1. the **prompt screen** (:mod:`generation.prompt_screen`): a prompt that names a
   party is blocked; nothing is sampled;
2. the **taint check** (:func:`provenance.audit.taint.run_taint`): a checkpoint
   whose snapshot no longer holds (a member opted out, a licence was
   re-assessed) is refused; ``allow_tainted`` overrides it only for a
   ``research``-policy run, and the override is an audit-log event;
3. the **checkpoint check**: the file's sha256 is the one recorded, its header
   names this training run and snapshot digest, its mel config hashes to the
   recorded hash;
4. the **CLAP check**: the embedder's sha256 is the checkpoint's ``clap_sha256``
   (the model was conditioned on that CLAP, and the gate index was built with it);
5. the **gate** is loaded before anything is sampled (no index, a corrupt or
   mismatched one, or an uncalibrated one: :class:`GateUnavailable`);
6. **sampling** (``n`` clips from consecutive seeds, or variations of an init
   audio) and **vocoding** (:class:`generation.vocoder.GriffinLimVocoder` by
   default), then the **similarity gate** on every clip;
7. **writing** the allowed clips (audio, JSON sidecar, spectrogram PNG) — only
   once every clip has a decision: if the gate cannot decide on any clip,
   nothing is written.

Every attempt becomes ``generations`` rows (one per clip; one for an attempt
that stopped before sampling) with their ``gate_decisions`` (the prompt screen's
decision on every row, the similarity gate's on every gated clip). Refusals and
gate failures record their rows and then raise, so the caller must commit the
session even when :func:`generate` raises a :class:`GenerationRefused` or
:class:`GateUnavailable`. The session is the caller's; nothing here commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from sqlalchemy.orm import Session

from generation.gate import AudioEmbedder, GateResult, SimilarityGate, record_gate_decision
from generation.index import GateUnavailable, load_index
from generation.prompt_screen import PromptScreen, ScreenResult, record_screen_decision
from generation.variation import sample_variation, variation_sigmas
from generation.vocoder import GriffinLimVocoder, Vocoder
from provenance.audit.coverage import SCREEN_TABLES, LedgerTampered, require_covered
from provenance.audit.taint import RunTaint, run_taint
from provenance.audit_log import append_event, chain_head
from provenance.models import Checkpoint, Generation, TrainingRun, utcnow
from provenance.object_store import location_path
from training.checkpoint import CheckpointMeta, load_checkpoint, sha256_file
from training.diffusion.denoiser import Denoiser
from training.diffusion.sampling import SAMPLERS, sample_mels
from training.mel import MelConfig, log_mel, mel_frames

log = logging.getLogger(__name__)

RESEARCH_POLICY = "research"
FORMATS = ("wav", "flac")
MAX_SECONDS = 120.0
MAX_CLIPS = 64
PEAK_LIMIT = 0.99  # clips louder than this are scaled down (before the gate hears them)


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


class PromptEmbedder(Protocol):
    """The CLAP towers generation needs (:class:`training.clap_embedder.ClapEmbedder` fits)."""

    sha256: str

    def embed_text(self, texts: list[str]) -> np.ndarray: ...

    def embed_audio(self, wave_16k: np.ndarray) -> np.ndarray: ...


@dataclass
class GenerationRequest:
    """What to generate. ``init_audio`` (16 kHz mono) turns it into audio-to-audio variation."""

    prompt: str
    seconds: float = 10.0
    seed: int = 0
    steps: int = 25
    cfg: float = 3.0
    sampler: str = "dpmpp_2m"
    n: int = 4
    out_dir: Path = field(default_factory=lambda: Path("generations"))
    format: str = "wav"
    init_audio: np.ndarray | None = None
    init_audio_sha256: str | None = None
    strength: float = 0.6
    allow_tainted: bool = False

    def __post_init__(self) -> None:
        self.sampler = self.sampler.replace("-", "_")
        self.out_dir = Path(self.out_dir)
        problems = []
        if not isinstance(self.prompt, str):
            problems.append(f"prompt must be text, got {type(self.prompt).__name__}")
        if not (math.isfinite(self.seconds) and 0 < self.seconds <= MAX_SECONDS):
            problems.append(f"seconds={self.seconds} must be in (0, {MAX_SECONDS:g}]")
        if not 1 <= self.steps <= 1000:
            problems.append(f"steps={self.steps} must be in [1, 1000]")
        if not (math.isfinite(self.cfg) and 0 <= self.cfg <= 30):
            problems.append(f"cfg={self.cfg} must be in [0, 30]")
        if self.sampler not in SAMPLERS:
            allowed = ", ".join(s.replace("_", "-") for s in sorted(SAMPLERS))
            problems.append(f"sampler {self.sampler!r} unknown; expected one of {allowed}")
        if not 1 <= self.n <= MAX_CLIPS:
            problems.append(f"n={self.n} must be in [1, {MAX_CLIPS}]")
        if self.format not in FORMATS:
            problems.append(f"format {self.format!r} unknown; expected one of {FORMATS}")
        if not 0 <= self.seed < 2**63 - MAX_CLIPS:
            problems.append(f"seed={self.seed} must be a non-negative 63-bit integer")
        if self.init_audio is not None:
            if not 0 < self.strength <= 1:
                problems.append(f"strength={self.strength} must be in (0, 1]")
            wave = np.asarray(self.init_audio)
            if wave.ndim != 1 or wave.size == 0 or not np.all(np.isfinite(wave)):
                problems.append("init audio must be non-empty, finite, mono 16 kHz samples")
        if problems:
            raise ValueError("; ".join(problems))

    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.n)]

    def sampler_steps(self) -> int:
        """Sampler steps per clip (a variation runs only the tail of the schedule)."""
        if self.init_audio is None:
            return self.steps
        return len(variation_sigmas(self.steps, self.strength)) - 1


@dataclass
class ClipOutcome:
    index: int
    seed: int
    generation_id: int
    verdict: str  # allow | block
    reasons: list[str]
    gate: dict[str, Any]
    audio_path: Path | None = None
    sidecar_path: Path | None = None
    png_path: Path | None = None
    output_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "seed": self.seed,
            "generation_id": self.generation_id,
            "verdict": self.verdict,
            "reasons": self.reasons,
            "track_similarity": self.gate.get("track_similarity"),
            "nearest": self.gate.get("nearest"),
            "audio": str(self.audio_path) if self.audio_path else None,
            "sidecar": str(self.sidecar_path) if self.sidecar_path else None,
            "png": str(self.png_path) if self.png_path else None,
            "output_sha256": self.output_sha256,
        }


@dataclass
class GenerationOutcome:
    """What happened: the screen's verdict and, unless the prompt was blocked, every clip."""

    status: str  # allowed | blocked_prompt | blocked_gate (at least one clip blocked)
    prompt: str
    checkpoint_id: int
    screen: ScreenResult
    clips: list[ClipOutcome] = field(default_factory=list)
    generation_ids: list[int] = field(default_factory=list)
    tainted_override: bool = False

    @property
    def allowed(self) -> list[ClipOutcome]:
        return [c for c in self.clips if c.verdict == "allow"]

    @property
    def blocked(self) -> list[ClipOutcome]:
        return [c for c in self.clips if c.verdict == "block"]

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "prompt": self.prompt,
            "checkpoint_id": self.checkpoint_id,
            "prompt_screen": self.screen.to_json(),
            "generation_ids": self.generation_ids,
            "tainted_override": self.tainted_override,
            "clips": [c.to_json() for c in self.clips],
        }


@dataclass
class _Sampled:
    index: int
    seed: int
    mel: torch.Tensor  # [n_mels, frames], log units
    wave: np.ndarray  # what the gate hears and what is written
    gain: float
    seconds_taken: float
    gate: GateResult | None = None


# --- checks ------------------------------------------------------------------------------


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


def _taint_payload(taint: RunTaint) -> dict[str, Any]:
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


def checkpoint_path(uri: str) -> Path:
    """The local path of a checkpoint location (``home://``, ``file://`` or a plain path)."""
    try:
        return location_path(uri)
    except ValueError:
        raise CheckpointInvalid(f"checkpoint at {uri}: only local files can be loaded") from None


def load_verified_checkpoint(
    ckpt: Checkpoint, run: TrainingRun
) -> tuple[Denoiser, CheckpointMeta, MelConfig]:
    """Load the checkpoint's EMA weights after checking it is the recorded file of ``run``."""
    path = checkpoint_path(ckpt.uri)
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


def _text_condition(embedder: PromptEmbedder, prompt: str, cond_dim: int) -> np.ndarray:
    try:
        cond = np.asarray(embedder.embed_text([prompt]), dtype=np.float32)
    except Exception as exc:
        raise GateUnavailable(f"CLAP text embedding failed: {type(exc).__name__}: {exc}") from exc
    if cond.shape != (1, cond_dim):
        raise GateUnavailable(
            f"CLAP text embedding has shape {cond.shape}, the model expects (1, {cond_dim})"
        )
    if not np.all(np.isfinite(cond)):
        raise GateUnavailable("CLAP text embedding contains NaN or infinite values")
    return cond


# --- rows --------------------------------------------------------------------------------


def _generation_row(
    session: Session,
    request: GenerationRequest,
    ckpt: Checkpoint,
    *,
    status: str,
    seed: int | None,
    params: dict[str, Any],
    seconds: float | None = None,
) -> Generation:
    row = Generation(
        checkpoint_id=ckpt.id,
        prompt=request.prompt,
        seed=seed,
        sampler=request.sampler,
        steps=request.steps,
        cfg=request.cfg,
        seconds=seconds if seconds is not None else request.seconds,
        init_audio_sha256=request.init_audio_sha256,
        status=status,
        params={
            "n": request.n,
            "format": request.format,
            "strength": request.strength if request.init_audio is not None else None,
            **params,
        },
    )
    session.add(row)
    session.flush()
    return row


def _record_stopped(
    session: Session,
    request: GenerationRequest,
    ckpt: Checkpoint,
    screen: ScreenResult,
    *,
    status: str,
    params: dict[str, Any],
) -> Generation:
    """One row (and the screen's decision) for an attempt that stopped before sampling."""
    row = _generation_row(session, request, ckpt, status=status, seed=request.seed, params=params)
    record_screen_decision(session, row.id, screen)
    return row


# --- outputs -----------------------------------------------------------------------------


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
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


def write_spectrogram_png(path: Path, mel: torch.Tensor, *, title: str, hop_seconds: float) -> None:
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
    text = json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"
    _write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _sha256_bytes_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the pipeline --------------------------------------------------------------------------


def generate(
    session: Session,
    request: GenerationRequest,
    *,
    checkpoint: Checkpoint,
    load_embedder: Callable[[], PromptEmbedder],
    load_gate_embedder: Callable[[], AudioEmbedder] | None = None,
    vocoder: Vocoder | None = None,
    screen: PromptScreen | None = None,
    on_step: Callable[[], None] | None = None,
) -> GenerationOutcome:
    """Screen, check, sample, vocode, gate and write; see the module docstring for the order.

    Returns the outcome for an allowed or blocked prompt and for gated clips
    (allowed or blocked). Raises :class:`TaintedCheckpoint`,
    :class:`CheckpointInvalid` or :class:`GateUnavailable` (including
    :class:`ClapMismatch`) after recording the attempt; nothing is written then.
    ``load_embedder`` is called once the prompt and the checkpoint have passed
    (a blocked prompt never loads CLAP); any error it raises counts as
    :class:`GateUnavailable`. ``load_gate_embedder`` loads the similarity gate's audio
    embedder (the CLI's is MSD-musicnn); without it the gate embeds with the CLAP.
    ``on_step`` is called after every sampler step.
    """
    ckpt = checkpoint
    if screen is None:
        # The screen blocks named artists and style opt-outs: refuse to screen with parties,
        # aliases or consent rows that differ from what the audit chain recorded.
        try:
            require_covered(session, SCREEN_TABLES, purpose="the prompt screen")
        except LedgerTampered as exc:
            raise GateUnavailable(str(exc)) from exc
    prompt_screen = screen if screen is not None else PromptScreen.from_session(session)
    screened = prompt_screen.screen(request.prompt)
    outcome = GenerationOutcome(
        status="allowed", prompt=request.prompt, checkpoint_id=ckpt.id, screen=screened
    )

    # 1. The prompt screen: a blocked prompt samples nothing.
    if screened.verdict == "block":
        row = _record_stopped(session, request, ckpt, screened, status="blocked_prompt", params={})
        outcome.status = "blocked_prompt"
        outcome.generation_ids = [row.id]
        log.info("prompt blocked: %s", "; ".join(screened.reasons))
        return outcome

    run = session.get(TrainingRun, ckpt.training_run_id)
    if run is None:
        raise CheckpointInvalid(
            f"checkpoint {ckpt.id}: training run {ckpt.training_run_id} is gone"
        )

    def stop(status: str, error: Exception, **params: Any) -> None:
        row = _record_stopped(
            session, request, ckpt, screened, status=status, params={"error": str(error), **params}
        )
        outcome.generation_ids = [row.id]

    # 2. Taint: refuse a checkpoint whose snapshot no longer holds, unless overridden (research).
    taint = run_taint(session, run)
    if taint.tainted:
        named = describe_taint(taint)
        if not request.allow_tainted or run.policy_name != RESEARCH_POLICY:
            if request.allow_tainted:
                message = (
                    f"checkpoint {ckpt.id} is tainted and --allow-tainted is accepted only for "
                    f"'{RESEARCH_POLICY}' runs; training run {run.id} is '{run.policy_name}': "
                    f"{named}"
                )
            else:
                message = (
                    f"checkpoint {ckpt.id} (training run {run.id}, policy '{run.policy_name}') "
                    f"is tainted: {named}"
                )
            error = TaintedCheckpoint(message, taint)
            stop("refused_tainted", error, taint=_taint_payload(taint))
            append_event(
                session,
                "generation.refused_tainted",
                entity="checkpoint",
                entity_id=ckpt.id,
                payload={"generation_id": outcome.generation_ids[0], **_taint_payload(taint)},
            )
            raise error
        append_event(
            session,
            "generation.tainted_override",
            entity="checkpoint",
            entity_id=ckpt.id,
            payload={
                "prompt_sha256": hashlib.sha256(request.prompt.encode("utf-8")).hexdigest(),
                **_taint_payload(taint),
            },
        )
        outcome.tainted_override = True
        log.warning("generating from tainted checkpoint %d (research override): %s", ckpt.id, named)

    # 3-5. The checkpoint, its CLAP and its gate, all verified before any sampling.
    try:
        denoiser, meta, mel_config = load_verified_checkpoint(ckpt, run)
        try:
            embedder = load_embedder()
        except GateUnavailable:
            raise
        except Exception as exc:
            raise GateUnavailable(f"cannot load the CLAP embedder: {exc}") from exc
        if not meta.clap_sha256:
            raise ClapMismatch(
                f"checkpoint {ckpt.id} records no CLAP sha256: cannot tell which CLAP it was "
                "conditioned on, so neither the prompt nor the gate can be trusted"
            )
        if embedder.sha256 != meta.clap_sha256:
            raise ClapMismatch(
                f"the loaded CLAP has sha256 {str(embedder.sha256)[:12]}, checkpoint {ckpt.id} "
                f"was trained with CLAP {meta.clap_sha256[:12]}; load that CLAP (--clap PATH)"
            )
        gate_embedder: AudioEmbedder = embedder
        if load_gate_embedder is not None:
            try:
                gate_embedder = load_gate_embedder()
            except GateUnavailable:
                raise
            except Exception as exc:
                raise GateUnavailable(f"cannot load the gate's embedder: {exc}") from exc
        index = load_index(session, ckpt, embedder_sha256=gate_embedder.sha256)
        gate = SimilarityGate(index, gate_embedder)
        cond = _text_condition(embedder, request.prompt, meta.config.unet.cond_dim)
    except CheckpointInvalid as exc:
        stop("error", exc, stage="checkpoint")
        raise
    except GateUnavailable as exc:
        stop("error", exc, stage="clap" if isinstance(exc, ClapMismatch) else "similarity_gate")
        raise
    vocode = vocoder if vocoder is not None else GriffinLimVocoder(mel_config)
    if vocode.sample_rate != mel_config.sample_rate:
        raise ValueError(
            f"vocoder {vocode.name} makes {vocode.sample_rate} Hz audio, the model's mels are "
            f"{mel_config.sample_rate} Hz"
        )

    init_mel: torch.Tensor | None = None
    frames = mel_frames(request.seconds, mel_config)
    if request.init_audio is not None:
        wave = np.asarray(request.init_audio, dtype=np.float32)
        samples = int(round(request.seconds * mel_config.sample_rate))
        if wave.size < samples:  # loop a short init to the requested length
            wave = np.resize(wave, samples)
        init_mel = log_mel(wave[:samples], mel_config)
        frames = int(init_mel.shape[1])

    # 6. Sample, vocode and gate every clip before writing any.
    sampled: list[_Sampled] = []

    def callback(_: dict[str, Any]) -> None:
        if on_step is not None:
            on_step()

    try:
        for index_, seed in enumerate(request.seeds()):
            started = time.perf_counter()
            if init_mel is None:
                mel = sample_mels(
                    denoiser,
                    cond,
                    frames=frames,
                    steps=request.steps,
                    cfg_scale=request.cfg,
                    sampler=request.sampler,
                    seed=seed,
                    callback=callback,
                )[0]
            else:
                mel = sample_variation(
                    denoiser,
                    cond,
                    init_mel,
                    strength=request.strength,
                    steps=request.steps,
                    cfg_scale=request.cfg,
                    sampler=request.sampler,
                    seed=seed,
                    callback=callback,
                )[0]
            if not torch.isfinite(mel).all():
                raise GateUnavailable(f"clip {index_} (seed {seed}): the model produced NaN mels")
            wave = np.asarray(vocode(mel), dtype=np.float32)
            peak = float(np.max(np.abs(wave))) if wave.size else 0.0
            gain = PEAK_LIMIT / peak if peak > PEAK_LIMIT else 1.0
            if gain != 1.0:
                wave = wave * np.float32(gain)
            item = _Sampled(index_, seed, mel, wave, gain, time.perf_counter() - started)
            item.gate = gate.check(wave)
            sampled.append(item)
    except GateUnavailable as exc:
        # Fail closed: every clip of the attempt is recorded as an error, none is written.
        ids = []
        for index_, seed in enumerate(request.seeds()):
            row = _generation_row(
                session,
                request,
                ckpt,
                status="error",
                seed=seed,
                params={"error": str(exc), "stage": "similarity_gate", "clip": index_},
            )
            record_screen_decision(session, row.id, screened)
            ids.append(row.id)
        outcome.generation_ids = ids
        raise

    # 7. Record every decision; write the allowed clips.
    request.out_dir.mkdir(parents=True, exist_ok=True)
    seconds = (frames - 1) * mel_config.hop_length / mel_config.sample_rate
    for item in sampled:
        result = item.gate
        assert result is not None
        status = "allowed" if result.verdict == "allow" else "blocked_gate"
        row = _generation_row(
            session,
            request,
            ckpt,
            status=status,
            seed=item.seed,
            seconds=seconds,
            params={"clip": item.index, "gain": item.gain, "vocoder": _describe(vocode)},
        )
        record_screen_decision(session, row.id, screened)
        record_gate_decision(session, row.id, result)
        clip = ClipOutcome(
            index=item.index,
            seed=item.seed,
            generation_id=row.id,
            verdict=result.verdict,
            reasons=list(result.reasons),
            gate=result.to_json(),
        )
        if result.verdict == "allow":
            stem = f"gen-{row.id:06d}-seed{item.seed}"
            clip.audio_path = request.out_dir / f"{stem}.{request.format}"
            clip.png_path = request.out_dir / f"{stem}.png"
            clip.sidecar_path = request.out_dir / f"{stem}.json"
            write_audio(clip.audio_path, item.wave, mel_config.sample_rate, request.format)
            write_spectrogram_png(
                clip.png_path,
                item.mel,
                title=f"{request.prompt} (seed {item.seed})",
                hop_seconds=mel_config.hop_length / mel_config.sample_rate,
            )
            clip.output_sha256 = _sha256_bytes_of(clip.audio_path)
            sidecar = _sidecar(
                request,
                item,
                result,
                screened,
                row=row,
                ckpt=ckpt,
                meta=meta,
                embedder_sha256=embedder.sha256,
                vocoder=vocode,
                output_sha256=clip.output_sha256,
                audio_name=clip.audio_path.name,
                seconds=seconds,
                tainted_override=outcome.tainted_override,
            )
            # The chain's head after this clip's gate decision: an anchor that leaves with
            # the clip (provenance.audit.anchors).
            sidecar["audit_head"] = chain_head(session).to_dict()
            write_sidecar(clip.sidecar_path, sidecar)
            row.output_uri = clip.audio_path.resolve().as_uri()
            row.output_sha256 = clip.output_sha256
        else:
            log.info(
                "clip %d (seed %d) blocked: %s", item.index, item.seed, "; ".join(result.reasons)
            )
        outcome.clips.append(clip)
        outcome.generation_ids.append(row.id)
    session.flush()
    outcome.status = "blocked_gate" if outcome.blocked else "allowed"
    return outcome


def _describe(vocoder: Vocoder) -> dict[str, Any]:
    describe = getattr(vocoder, "describe", None)
    if callable(describe):
        return dict(describe())
    return {"name": vocoder.name, "sample_rate": vocoder.sample_rate}


def _sidecar(
    request: GenerationRequest,
    item: _Sampled,
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
        "vocoder": _describe(vocoder),
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
