"""Nearest-segment search for the gate: exact by default, two-stage only where measured safe.

Exact search is ``IndexFlatIP`` over every segment. At a million segments that costs
about 190 ms per query on two cores, so large indexes may use a two-stage search instead:

1. exact search over one centroid per training recording (a few thousand vectors);
2. exact scoring of every segment of the ``probe_tracks`` best recordings.

Every candidate is re-scored exactly, so a reported similarity is never an
approximation — only the candidate set is. Whether the candidate set loses replays is
measured on the index's own vectors with planted near-copies (``planted_recall``); the
gate uses two-stage search only when calibration measured that recall at or above
``MIN_RECALL`` and recorded it with the thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

MIN_RECALL = 0.999
TWO_STAGE_MIN_SEGMENTS = 100_000  # below this, exact search is already fast enough
DEFAULT_PROBE_TRACKS = 64


class Search(Protocol):
    name: str

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities [q, k], rows [q, k]) best first; rows of -1 pad missing hits."""
        ...


def flat_vectors(index: Any) -> np.ndarray:
    """A read-only [n, d] view of a faiss flat index's stored vectors (no copy)."""
    import faiss

    n, d = int(index.ntotal), int(index.d)
    flat = faiss.downcast_index(index)
    return faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d)  # type: ignore[attr-defined]


@dataclass
class ExactSearch:
    index: Any  # faiss.IndexFlatIP
    name: str = "exact"

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return sims, rows


class TwoStageSearch:
    """Per-recording centroids first, then exact scoring of the best recordings' segments."""

    name = "two-stage"

    def __init__(
        self, vectors: np.ndarray, track_of: np.ndarray, *, probe_tracks: int = DEFAULT_PROBE_TRACKS
    ) -> None:
        import faiss

        if probe_tracks < 1:
            raise ValueError(f"probe_tracks must be >= 1, got {probe_tracks}")
        self.vectors = vectors
        tracks, dense = np.unique(np.asarray(track_of), return_inverse=True)
        self.order = np.argsort(dense, kind="stable")
        counts = np.bincount(dense, minlength=tracks.size)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        sums = np.add.reduceat(vectors[self.order], self.offsets[:-1], axis=0)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = (sums / np.where(norms == 0, 1.0, norms)).astype(np.float32)
        self.centroids = faiss.IndexFlatIP(vectors.shape[1])
        self.centroids.add(np.ascontiguousarray(centroids))
        self.probe_tracks = min(probe_tracks, tracks.size)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        _, tracks = self.centroids.search(queries, self.probe_tracks)
        sims_out = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
        rows_out = np.full((queries.shape[0], k), -1, dtype=np.int64)
        for q in range(queries.shape[0]):
            rows = np.concatenate(
                [self.order[self.offsets[t] : self.offsets[t + 1]] for t in tracks[q] if t >= 0]
            )
            sims = self.vectors[rows] @ queries[q]
            top = min(k, rows.size)
            best = np.argpartition(-sims, top - 1)[:top] if top < rows.size else np.arange(top)
            best = best[np.argsort(-sims[best], kind="stable")]
            sims_out[q, :top] = sims[best]
            rows_out[q, :top] = rows[best]
        return sims_out, rows_out


def planted_recall(
    search: Search,
    exact: Search,
    vectors: np.ndarray,
    *,
    queries: int = 1000,
    noise: float = 0.02,
    seed: int = 0,
) -> float:
    """Share of planted near-copies (a stored vector + per-dimension Gaussian ``noise``,
    re-normalised) whose best ``search`` hit scores as high as the ``exact`` best hit."""
    rng = np.random.default_rng(seed)
    n, d = vectors.shape
    picks = np.sort(rng.choice(n, size=min(queries, n), replace=False))
    planted = vectors[picks] + noise * rng.standard_normal((picks.size, d)).astype(np.float32)
    planted /= np.linalg.norm(planted, axis=1, keepdims=True)
    planted = np.ascontiguousarray(planted, dtype=np.float32)
    best_exact, _ = exact.search(planted, 1)
    best, _ = search.search(planted, 1)
    return float(np.mean(best[:, 0] >= best_exact[:, 0] - 1e-5))


def choose_search(
    index: Any,
    track_of: np.ndarray,
    *,
    probe_tracks: int = DEFAULT_PROBE_TRACKS,
    min_segments: int = TWO_STAGE_MIN_SEGMENTS,
    queries: int = 1000,
) -> dict[str, Any]:
    """The search the gate should use for this index, as recorded with the thresholds."""
    n = int(index.ntotal)
    if n < min_segments:
        return {"method": "exact", "segments": n}
    vectors = flat_vectors(index)
    two = TwoStageSearch(vectors, track_of, probe_tracks=probe_tracks)
    recall = planted_recall(two, ExactSearch(index), vectors, queries=queries)
    entry: dict[str, Any] = {
        "segments": n,
        "probe_tracks": two.probe_tracks,
        "planted_recall": recall,
        "planted_queries": min(queries, n),
    }
    return {"method": "two-stage" if recall >= MIN_RECALL else "exact", **entry}


def search_for(index: Any, track_of: np.ndarray, entry: dict[str, Any] | None) -> Search:
    """Build the recorded search; two-stage only with a recorded recall >= MIN_RECALL."""
    if not entry or entry.get("method", "exact") == "exact":
        return ExactSearch(index)
    recall = entry.get("planted_recall")
    if entry.get("method") != "two-stage" or not isinstance(recall, (int, float)):
        raise ValueError(f"unknown or unmeasured search {entry!r}")
    if recall < MIN_RECALL:
        raise ValueError(f"two-stage recall {recall} is below {MIN_RECALL}")
    return TwoStageSearch(
        flat_vectors(index), track_of, probe_tracks=int(entry.get("probe_tracks", 0))
    )
