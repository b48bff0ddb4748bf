"""Text-to-audio generation with its safeguards, as plain functions (no CLI, no Prefect).

:func:`generate` runs, in order:

1. the **prompt screen** (:mod:`generation.prompt_screen`): a prompt that names a
   party is blocked; nothing is sampled;
2. the **taint check** (:func:`provenance.audit.taint.run_taint`): a checkpoint
   whose snapshot no longer holds (a member opted out, a licence was
   re-assessed) is refused; ``allow_tainted`` overrides it only for a
   ``research``-policy run, and the override is an audit-log event;
3. the **checkpoint check** (:mod:`generation.checkpoint_checks`): the file's sha256
   is the one recorded, its header names this training run and snapshot digest, its
   mel config hashes to the recorded hash;
4. the **CLAP check**: the embedder's sha256 is the checkpoint's ``clap_sha256``
   (the model was conditioned on that CLAP, and the gate index was built with it);
5. the **gate** is loaded before anything is sampled (no index, a corrupt or
   mismatched one, or an uncalibrated one: :class:`GateUnavailable`);
6. **sampling** (``n`` clips from consecutive seeds, or variations of an init
   audio) and **vocoding** (:class:`generation.vocoder.GriffinLimVocoder` by
   default), then the **similarity gate** on every clip;
7. **writing** the allowed clips (:mod:`generation.outputs`: audio, JSON sidecar,
   spectrogram PNG) — only once every clip has a decision: if the gate cannot decide
   on any clip, nothing is written. With signing keys the audio carries a signed C2PA
   manifest (:mod:`generation.credentials`); without them, or when signing fails, it is
   written unsigned. Either way a ``content_credentials`` row says which. Blocked clips
   are never written, signed or not.

Every attempt becomes ``generations`` rows (one per clip; one for an attempt
that stopped before sampling) with their ``gate_decisions`` (the prompt screen's
decision on every row, the similarity gate's on every gated clip). Refusals and
gate failures record their rows and then raise, so the caller must commit the
session even when :func:`generate` raises a
:class:`~generation.checkpoint_checks.GenerationRefused` or
:class:`GateUnavailable`. The session is the caller's; nothing here commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import numpy as np
import torch
from sqlalchemy.orm import Session

from generation.attempt import Attempt, check_taint, screen_prompt, still_holds, stop
from generation.attempt_rows import generation_row, record_failed_clips, record_stopped
from generation.checkpoint_checks import (
    CheckpointInvalid,
    ClapMismatch,
    check_clap,
    load_verified_checkpoint,
)
from generation.clip_sampling import init_mel_for, sample_clip, step_callback
from generation.credentials import UNSIGNED_NOTE, ClipClaims, SigningFailed
from generation.gate import AudioEmbedder, SimilarityGate, record_gate_decision
from generation.index import GateUnavailable, load_index
from generation.outputs import describe_vocoder, write_clip
from generation.prompt_screen import PromptScreen, record_screen_decision
from generation.request import ClipOutcome, GenerationOutcome, GenerationRequest, SampledClip
from generation.vocoder import GriffinLimVocoder, Vocoder
from provenance.audit_log import chain_head
from provenance.credential_rows import record_output_credential
from provenance.generations import record_output
from provenance.models import Checkpoint, TrainingRun
from provenance.signing_keys import SigningKeys
from provenance.training_data_statement import training_data_statement
from provenance.training_runs import run_of_checkpoint
from training.checkpoint import CheckpointMeta
from training.diffusion.denoiser import Denoiser
from training.mel import MelConfig

log = logging.getLogger(__name__)


class PromptEmbedder(Protocol):
    """The CLAP towers generation needs (:class:`training.clap_embedder.ClapEmbedder` fits)."""

    sha256: str

    def embed_text(self, texts: list[str]) -> np.ndarray: ...

    def embed_audio(self, wave_16k: np.ndarray) -> np.ndarray: ...


@dataclass
class _Models:
    """The verified checkpoint, its CLAP and its gate: everything sampling needs."""

    denoiser: Denoiser
    meta: CheckpointMeta
    mel_config: MelConfig
    embedder: PromptEmbedder
    gate: SimilarityGate
    cond: np.ndarray


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


# --- the steps ---------------------------------------------------------------------------


def _load_models(
    attempt: Attempt,
    run: TrainingRun,
    load_embedder: Callable[[], PromptEmbedder],
    load_gate_embedder: Callable[[], AudioEmbedder] | None,
) -> _Models:
    """The checkpoint, its CLAP and its gate, all verified; a failure is recorded, then raised."""
    try:
        denoiser, meta, mel_config = load_verified_checkpoint(attempt.ckpt, run)
        try:
            embedder = load_embedder()
        except GateUnavailable:
            raise
        except Exception as exc:
            raise GateUnavailable(f"cannot load the CLAP embedder: {exc}") from exc
        check_clap(attempt.ckpt, meta, embedder.sha256)
        gate_embedder: AudioEmbedder = embedder
        if load_gate_embedder is not None:
            try:
                gate_embedder = load_gate_embedder()
            except GateUnavailable:
                raise
            except Exception as exc:
                raise GateUnavailable(f"cannot load the gate's embedder: {exc}") from exc
        index = load_index(attempt.session, attempt.ckpt, embedder_sha256=gate_embedder.sha256)
        gate = SimilarityGate(index, gate_embedder)
        cond = _text_condition(embedder, attempt.request.prompt, meta.config.unet.cond_dim)
    except CheckpointInvalid as exc:
        stop(attempt, "error", exc, stage="checkpoint")
        raise
    except GateUnavailable as exc:
        stage = "clap" if isinstance(exc, ClapMismatch) else "similarity_gate"
        stop(attempt, "error", exc, stage=stage)
        raise
    return _Models(denoiser, meta, mel_config, embedder, gate, cond)


def _sample_all(
    attempt: Attempt,
    models: _Models,
    vocode: Vocoder,
    *,
    init_mel: torch.Tensor | None,
    frames: int,
    on_step: Callable[[], None] | None,
) -> list[SampledClip]:
    """Sample, vocode and gate every clip before writing any; fail closed on any of them."""
    request = attempt.request
    callback = step_callback(on_step)
    try:
        return [
            sample_clip(
                request,
                denoiser=models.denoiser,
                cond=models.cond,
                gate=models.gate,
                vocode=vocode,
                index=index,
                seed=seed,
                init_mel=init_mel,
                frames=frames,
                callback=callback,
            )
            for index, seed in enumerate(request.seeds())
        ]
    except GateUnavailable as exc:
        # Fail closed: every clip of the attempt is recorded as an error, none is written.
        attempt.outcome.generation_ids = record_failed_clips(
            attempt.session, request, attempt.ckpt, attempt.screened, exc
        )
        raise


def _record_and_write(
    attempt: Attempt, models: _Models, vocode: Vocoder, sampled: list[SampledClip], frames: int
) -> None:
    """Record every clip's decisions; write the allowed clips."""
    session, request, outcome = attempt.session, attempt.request, attempt.outcome
    mel_config = models.mel_config
    request.out_dir.mkdir(parents=True, exist_ok=True)
    seconds = (frames - 1) * mel_config.hop_length / mel_config.sample_rate
    statement: dict[str, Any] | None = None  # the run's training-data statement, read once
    for item in sampled:
        result = item.gate
        assert result is not None
        row = generation_row(
            session,
            request,
            attempt.ckpt,
            status="allowed" if result.verdict == "allow" else "blocked_gate",
            seed=item.seed,
            seconds=seconds,
            params={"clip": item.index, "gain": item.gain, "vocoder": describe_vocoder(vocode)},
        )
        screen_decision = record_screen_decision(session, row.id, attempt.screened)
        gate_decision = record_gate_decision(session, row.id, result)
        clip = ClipOutcome(
            index=item.index,
            seed=item.seed,
            generation_id=row.id,
            verdict=result.verdict,
            reasons=list(result.reasons),
            gate=result.to_json(),
        )
        if result.verdict == "allow":
            if statement is None:
                statement = training_data_statement(session, attempt.run).to_dict()
            head = chain_head(session)
            claims = ClipClaims(
                request=request,
                item=item,
                result=result,
                screened=attempt.screened,
                generation_id=row.id,
                checkpoint=attempt.ckpt,
                snapshot_digest=models.meta.snapshot_digest,
                gate_decision=gate_decision,
                screen_decision=screen_decision,
                audit_head=str(head),
                training_data=statement,
            )
            write = partial(
                write_clip,
                clip,
                item,
                result,
                attempt.screened,
                request=request,
                row=row,
                ckpt=attempt.ckpt,
                meta=models.meta,
                mel_config=mel_config,
                embedder_sha256=models.embedder.sha256,
                vocoder=vocode,
                seconds=seconds,
                tainted_override=outcome.tainted_override,
                audit_head=head.to_dict(),
                claims=claims,
            )
            note = None if attempt.keys is not None else UNSIGNED_NOTE
            try:
                signed = write(keys=attempt.keys)
            except SigningFailed as exc:
                # Fail closed on the gate, not on signing: the allowed clip goes out unsigned.
                note = f"signing failed, written unsigned: {exc}"
                log.warning("clip %d (seed %d): %s", item.index, item.seed, note)
                signed = write(keys=None, signing_error=note)
            assert clip.audio_path is not None and clip.output_sha256 is not None
            record_output(
                session, row, uri=clip.audio_path.resolve().as_uri(), sha256=clip.output_sha256
            )
            record_output_credential(
                session,
                generation_id=row.id,
                file_sha256=clip.output_sha256,
                signed=signed,
                signer_sha256=(
                    attempt.keys.leaf.sha256
                    if signed is not None and attempt.keys is not None
                    else None
                ),
                note=note,
            )
        else:
            log.info(
                "clip %d (seed %d) blocked: %s", item.index, item.seed, "; ".join(result.reasons)
            )
        outcome.clips.append(clip)
        outcome.generation_ids.append(row.id)
    outcome.status = "blocked_gate" if outcome.blocked else "allowed"


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
    signing_keys: SigningKeys | None = None,
    release: Callable[[], None] | None = None,
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
    ``on_step`` is called after every sampler step. ``signing_keys`` sign every written
    clip's audio (:func:`provenance.signing_keys.find_signing_keys` finds the configured
    ones); without them the clips are written unsigned, and recorded as such.

    ``release`` is called once everything is read and verified, before sampling: the
    caller may end its transaction there (the CLI commits, so on SQLite, where every
    transaction holds the write lock, other commands can write while it samples). The
    ledger may then change under the sampling, so the prompt screen and the taint check
    run again before anything is recorded or written.
    """
    ckpt = checkpoint
    screened = screen_prompt(session, request, screen)
    outcome = GenerationOutcome(
        status="allowed", prompt=request.prompt, checkpoint_id=ckpt.id, screen=screened
    )

    # 1. The prompt screen: a blocked prompt samples nothing.
    if screened.verdict == "block":
        row = record_stopped(session, request, ckpt, screened, status="blocked_prompt", params={})
        outcome.status = "blocked_prompt"
        outcome.generation_ids = [row.id]
        log.info("prompt blocked: %s", "; ".join(screened.reasons))
        return outcome

    run = run_of_checkpoint(session, ckpt)
    if run is None:
        raise CheckpointInvalid(
            f"checkpoint {ckpt.id}: training run {ckpt.training_run_id} is gone"
        )
    attempt = Attempt(session, request, ckpt, screened, outcome, run, signing_keys)

    # 2. Taint: refuse a checkpoint whose snapshot no longer holds, unless overridden.
    check_taint(attempt, run)

    # 3-5. The checkpoint, its CLAP and its gate, all verified before any sampling.
    models = _load_models(attempt, run, load_embedder, load_gate_embedder)
    vocode = vocoder if vocoder is not None else GriffinLimVocoder(models.mel_config)
    if vocode.sample_rate != models.mel_config.sample_rate:
        raise ValueError(
            f"vocoder {vocode.name} makes {vocode.sample_rate} Hz audio, the model's mels are "
            f"{models.mel_config.sample_rate} Hz"
        )
    init_mel, frames = init_mel_for(request, models.mel_config)

    # 6. Sample, vocode and gate every clip before writing any.
    if release is not None:
        release()
    sampled = _sample_all(
        attempt, models, vocode, init_mel=init_mel, frames=frames, on_step=on_step
    )
    if release is not None and not still_holds(attempt, screen, run):
        return outcome

    # 7. Record every decision; write the allowed clips.
    _record_and_write(attempt, models, vocode, sampled, frames)
    return outcome
