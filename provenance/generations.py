"""Generation rows: one per clip of an attempt (or one for an attempt that stopped), and its output.

Plain functions: the caller owns the session and its transaction (they flush, never commit).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from provenance.models import Generation


def record_generation(
    session: Session,
    *,
    checkpoint_id: int,
    prompt: str,
    seed: int | None,
    sampler: str | None,
    steps: int | None,
    cfg: float | None,
    seconds: float | None,
    init_audio_sha256: str | None,
    status: str,
    params: dict[str, Any],
) -> Generation:
    """Add one ``generations`` row and flush it, so it has its id and creation time."""
    row = Generation(
        checkpoint_id=checkpoint_id,
        prompt=prompt,
        seed=seed,
        sampler=sampler,
        steps=steps,
        cfg=cfg,
        seconds=seconds,
        init_audio_sha256=init_audio_sha256,
        status=status,
        params=params,
    )
    session.add(row)
    session.flush()
    return row


def record_output(
    session: Session, generation: Generation, *, uri: str, sha256: str | None
) -> None:
    """Record where a generation's written audio is and its sha256."""
    generation.output_uri = uri
    generation.output_sha256 = sha256
    session.flush()


def newest_output_uri(session: Session) -> str | None:
    """The output URI of the newest generation that wrote a file, or None."""
    from sqlalchemy import select

    return session.execute(
        select(Generation.output_uri)
        .where(Generation.output_uri.is_not(None))
        .order_by(Generation.id.desc())
        .limit(1)
    ).scalar_one_or_none()
