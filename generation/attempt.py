"""One call of :func:`generation.pipeline.generate`: the attempt every step records its rows
against, and the checks on the ledger that run before sampling and, when the caller released
its transaction for the sampling, again before anything is recorded or written: the prompt
screen and the taint check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from generation.attempt_rows import record_stopped
from generation.checkpoint_checks import TaintedCheckpoint, describe_taint, taint_payload
from generation.index import GateUnavailable
from generation.prompt_screen import PromptScreen, ScreenResult
from generation.request import GenerationOutcome, GenerationRequest
from provenance.audit.coverage import SCREEN_TABLES, LedgerTampered, require_covered
from provenance.audit.taint import run_taint
from provenance.audit_log import append_event
from provenance.hashing import sha256_bytes
from provenance.models import Checkpoint, TrainingRun
from provenance.signing_keys import SigningKeys

log = logging.getLogger(__name__)

RESEARCH_POLICY = "research"


@dataclass
class Attempt:
    """One call of :func:`generate`: what every step records its rows against."""

    session: Session
    request: GenerationRequest
    ckpt: Checkpoint
    screened: ScreenResult
    outcome: GenerationOutcome
    run: TrainingRun
    keys: SigningKeys | None = None


def stop(attempt: Attempt, status: str, error: Exception, **params: Any) -> None:
    """Record an attempt that stopped on ``error`` before sampling; its row is the outcome's."""
    row = record_stopped(
        attempt.session,
        attempt.request,
        attempt.ckpt,
        attempt.screened,
        status=status,
        params={"error": str(error), **params},
    )
    attempt.outcome.generation_ids = [row.id]


def screen_prompt(
    session: Session, request: GenerationRequest, screen: PromptScreen | None
) -> ScreenResult:
    """The prompt screen's verdict, from the given screen or one built from the session."""
    if screen is None:
        # The screen blocks named artists and style opt-outs: refuse to screen with parties,
        # aliases or consent rows that differ from what the audit chain recorded.
        try:
            require_covered(session, SCREEN_TABLES, purpose="the prompt screen")
        except LedgerTampered as exc:
            raise GateUnavailable(str(exc)) from exc
    prompt_screen = screen if screen is not None else PromptScreen.from_session(session)
    return prompt_screen.screen(request.prompt)


def check_taint(attempt: Attempt, run: TrainingRun) -> None:
    """Refuse a checkpoint whose snapshot no longer holds, unless overridden (research)."""
    session, request, ckpt = attempt.session, attempt.request, attempt.ckpt
    taint = run_taint(session, run)
    if not taint.tainted:
        return
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
        stop(attempt, "refused_tainted", error, taint=taint_payload(taint))
        append_event(
            session,
            "generation.refused_tainted",
            entity="checkpoint",
            entity_id=ckpt.id,
            payload={"generation_id": attempt.outcome.generation_ids[0], **taint_payload(taint)},
        )
        raise error
    append_event(
        session,
        "generation.tainted_override",
        entity="checkpoint",
        entity_id=ckpt.id,
        payload={
            "prompt_sha256": sha256_bytes(request.prompt.encode("utf-8")),
            **taint_payload(taint),
        },
    )
    attempt.outcome.tainted_override = True
    log.warning("generating from tainted checkpoint %d (research override): %s", ckpt.id, named)


def still_holds(attempt: Attempt, screen: PromptScreen | None, run: TrainingRun) -> bool:
    """After sampling with the transaction released: screen the prompt and check the taint
    again on the ledger as it is now. False (recorded) when the prompt is now refused;
    raises :class:`TaintedCheckpoint` (recorded) when the checkpoint became tainted."""
    session, request, outcome = attempt.session, attempt.request, attempt.outcome
    screened = screen_prompt(session, request, screen)
    if screened.verdict == "block":
        row = record_stopped(
            session,
            request,
            attempt.ckpt,
            screened,
            status="blocked_prompt",
            params={"screened_again": "after sampling"},
        )
        outcome.status = "blocked_prompt"
        outcome.screen = screened
        outcome.generation_ids = [row.id]
        log.info("prompt blocked after sampling: %s", "; ".join(screened.reasons))
        return False
    if not outcome.tainted_override:
        check_taint(attempt, run)
    return True
