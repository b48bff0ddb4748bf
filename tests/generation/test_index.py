"""Gate index: build → save → verified load; id mapping; validation; idempotent rebuild."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from generation.index import build_index_for_run, load_index
from provenance.models import AuditEvent, Checkpoint, EmbeddingIndex
from tests.common.gate import make_run


def _vectors(n: int = 40, d: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_build_and_load_roundtrip(session: Session) -> None:
    run = make_run(session)
    emb = _vectors()
    recs = [10 + i // 4 for i in range(40)]
    row = build_index_for_run(
        session,
        run.id,
        embeddings=emb,
        recording_ids=recs,
        segment_index=[i % 4 for i in range(40)],
        artist_ids=[[7] if r < 15 else [8, 9] for r in recs],
        embedder_sha256="ee" * 32,
        snapshot_digest=run.members_digest,
    )
    assert row.vectors == 40 and row.embedder_sha256 == "ee" * 32
    assert session.execute(
        select(AuditEvent).where(AuditEvent.action == "gate_index.built")
    ).scalar_one()
    session.add(Checkpoint(training_run_id=run.id, sha256="12" * 32, uri="x", step=1))
    session.flush()
    ckpt = session.execute(select(Checkpoint)).scalar_one()
    index = load_index(session, ckpt)  # by checkpoint object; int id works the same
    assert load_index(session, ckpt.id).sha256 == index.sha256 == row.sha256
    assert index.ntotal == 40 and index.training_run_id == run.id
    # Exact search: each stored vector is its own nearest neighbour with cosine 1.
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims, rows = index.index.search(unit[[5, 33]], 1)
    assert rows[:, 0].tolist() == [5, 33]
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)
    assert index.recording_ids[33] == 18 and index.segment_index[33] == 1
    assert index.artist_ids[33] == [8, 9]
    assert index.path is not None
    meta = json.loads((index.path / "meta.json").read_text())
    assert meta["snapshot_digest"] == run.members_digest and meta["sha256"] == row.sha256


def test_rebuild_is_idempotent(session: Session) -> None:
    run = make_run(session)
    kwargs = dict(
        embeddings=_vectors(8),
        recording_ids=list(range(8)),
        segment_index=[0] * 8,
        artist_ids=[[1]] * 8,
        embedder_sha256="ee" * 32,
        snapshot_digest=run.members_digest,
    )
    first = build_index_for_run(session, run.id, **kwargs)  # type: ignore[arg-type]
    second = build_index_for_run(session, run.id, **kwargs)  # type: ignore[arg-type]
    assert first.id == second.id
    assert len(session.execute(select(EmbeddingIndex)).scalars().all()) == 1


def test_build_rejects_bad_input(session: Session) -> None:
    run = make_run(session)
    good = dict(
        recording_ids=[1, 2],
        segment_index=[0, 0],
        artist_ids=[[1], [2]],
        embedder_sha256="ee" * 32,
        snapshot_digest=run.members_digest,
    )
    with pytest.raises(ValueError, match="one entry per embedding"):
        build_index_for_run(session, run.id, embeddings=_vectors(3), **good)  # type: ignore[arg-type]
    bad = _vectors(2)
    bad[1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        build_index_for_run(session, run.id, embeddings=bad, **good)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="members_digest"):
        build_index_for_run(
            session,
            run.id,
            embeddings=_vectors(2),
            **{**good, "snapshot_digest": "00" * 32},  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError, match="does not exist"):
        build_index_for_run(session, run.id + 99, embeddings=_vectors(2), **good)  # type: ignore[arg-type]
