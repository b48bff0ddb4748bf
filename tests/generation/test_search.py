"""Gate search: two-stage candidates re-scored exactly, used only where planted recall >= 0.999."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from sqlalchemy.orm import Session

from generation.gate import GateUnavailable, SimilarityGate
from generation.search import (
    MIN_RECALL,
    ExactSearch,
    TwoStageSearch,
    choose_search,
    flat_vectors,
    planted_recall,
    search_for,
)
from tests.common.audio import tone_clip
from tests.common.gate import TRAINING, StandInEmbedder, build_demo_index, make_run


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(tracks: int = 300, per_track: int = 40, dim: int = 64, seed: int = 0):  # type: ignore[no-untyped-def]
    """Segments clustered per track, tracks clustered per artist, like CLAP segments."""
    rng = np.random.default_rng(seed)
    artists = normalise(rng.standard_normal((tracks // 10, dim)))
    centres = normalise(
        artists[rng.integers(0, artists.shape[0], tracks)]
        + 0.3 * rng.standard_normal((tracks, dim))
    )
    track_of = np.repeat(np.arange(tracks) + 1000, per_track)
    vectors = normalise(centres[track_of - 1000] + 0.15 * rng.standard_normal((track_of.size, dim)))
    index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    return index, vectors, track_of


def test_flat_vectors_is_the_stored_data() -> None:
    index, vectors, _ = clustered(tracks=20)
    np.testing.assert_array_equal(flat_vectors(index), vectors)


def test_two_stage_similarities_are_exact_and_agree_with_exact_search() -> None:
    index, vectors, track_of = clustered()
    two = TwoStageSearch(vectors, track_of, probe_tracks=16)
    queries = normalise(
        vectors[::97]
        + 0.05 * np.random.default_rng(1).standard_normal((vectors[::97].shape[0], 64))
    )
    sims, rows = two.search(queries, 8)
    exact_sims, exact_rows = ExactSearch(index).search(queries, 8)
    # Every reported similarity is the exact inner product of query and row.
    np.testing.assert_allclose(sims, np.einsum("qd,qkd->qk", queries, vectors[rows]), atol=1e-5)
    np.testing.assert_array_equal(rows[:, 0], exact_rows[:, 0])
    np.testing.assert_allclose(sims[:, 0], exact_sims[:, 0], atol=1e-5)


def test_two_stage_pads_when_probed_tracks_hold_fewer_than_k() -> None:
    _, vectors, track_of = clustered(tracks=20, per_track=3)
    sims, rows = TwoStageSearch(vectors, track_of, probe_tracks=2).search(vectors[:2], 10)
    assert np.all(rows[:, :6] >= 0) and np.all(rows[:, 6:] == -1)
    assert np.all(np.isneginf(sims[:, 6:]))


def test_choose_search_takes_two_stage_only_with_measured_recall() -> None:
    index, vectors, track_of = clustered()
    chosen = choose_search(index, track_of, min_segments=0, probe_tracks=32, queries=300)
    assert chosen["method"] == "two-stage"
    assert chosen["planted_recall"] >= MIN_RECALL
    assert isinstance(search_for(index, track_of, chosen), TwoStageSearch)
    # Unclustered vectors: a recording's centroid says nothing about its segments.
    rng = np.random.default_rng(3)
    noise = normalise(rng.standard_normal((6000, 64)))
    flat = faiss.IndexFlatIP(64)
    flat.add(noise)
    tracks = np.repeat(np.arange(200), 30)
    poor = choose_search(flat, tracks, min_segments=0, probe_tracks=2, queries=300)
    assert poor["method"] == "exact" and poor["planted_recall"] < MIN_RECALL
    assert isinstance(search_for(flat, tracks, poor), ExactSearch)
    assert choose_search(flat, tracks)["method"] == "exact"  # small index: exact, unmeasured


def test_planted_recall_of_exact_search_is_one() -> None:
    index, vectors, _ = clustered(tracks=30)
    assert planted_recall(ExactSearch(index), ExactSearch(index), vectors, queries=100) == 1.0


@pytest.mark.parametrize(
    "entry",
    [
        {"method": "two-stage", "probe_tracks": 4},  # recall never measured
        {"method": "two-stage", "probe_tracks": 4, "planted_recall": 0.98},
        {"method": "hnsw", "planted_recall": 1.0},
    ],
)
def test_gate_refuses_an_unmeasured_or_weak_search(
    session: Session, entry: dict[str, object]
) -> None:
    embedder = StandInEmbedder()
    index = build_demo_index(session, embedder, make_run(session))
    index.thresholds = {**index.thresholds, "search": entry}
    with pytest.raises(GateUnavailable, match="search"):
        SimilarityGate(index, embedder)


def test_gate_with_two_stage_search_decides_as_exact(session: Session) -> None:
    embedder = StandInEmbedder()
    index = build_demo_index(session, embedder, make_run(session))
    exact_gate = SimilarityGate(index, embedder)
    index.thresholds = {
        **index.thresholds,
        "search": {"method": "two-stage", "probe_tracks": 2, "planted_recall": 1.0},
    }
    two_gate = SimilarityGate(index, embedder)
    assert isinstance(two_gate.search, TwoStageSearch)
    for rec, (_, freqs) in TRAINING.items():
        clip = tone_clip(freqs, seconds=10.0, seed=rec + 50)
        a, b = exact_gate.check(clip), two_gate.check(clip)
        assert a.verdict == b.verdict
        assert a.nearest["recording_id"] == b.nearest["recording_id"]
        assert a.nearest["segment_index"] == b.nearest["segment_index"]
        assert a.track_similarity == pytest.approx(b.track_similarity, abs=1e-6)
        assert b.extra["search"] == "two-stage"
