"""The ``generations`` rows of a generation attempt, each with the prompt screen's decision."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from generation.prompt_screen import ScreenResult, record_screen_decision
from generation.request import GenerationRequest
from provenance.generations import record_generation
from provenance.models import Checkpoint, Generation


def generation_row(
    session: Session,
    request: GenerationRequest,
    ckpt: Checkpoint,
    *,
    status: str,
    seed: int | None,
    params: dict[str, Any],
    seconds: float | None = None,
) -> Generation:
    """One ``generations`` row of this request (its params joined by the request's own)."""
    return record_generation(
        session,
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
            **request.sampling_used(),
            **params,
        },
    )


def record_stopped(
    session: Session,
    request: GenerationRequest,
    ckpt: Checkpoint,
    screen: ScreenResult,
    *,
    status: str,
    params: dict[str, Any],
) -> Generation:
    """One row (and the screen's decision) for an attempt that stopped before sampling."""
    row = generation_row(session, request, ckpt, status=status, seed=request.seed, params=params)
    record_screen_decision(session, row.id, screen)
    return row


def record_failed_clips(
    session: Session,
    request: GenerationRequest,
    ckpt: Checkpoint,
    screen: ScreenResult,
    error: Exception,
) -> list[int]:
    """An error row (and the screen's decision) for every clip of an attempt the gate could
    not decide on; returns their ids."""
    ids = []
    for index, seed in enumerate(request.seeds()):
        row = generation_row(
            session,
            request,
            ckpt,
            status="error",
            seed=seed,
            params={"error": str(error), "stage": "similarity_gate", "clip": index},
        )
        record_screen_decision(session, row.id, screen)
        ids.append(row.id)
    return ids
