"""Score a clip against each training artist, as speaker verification scores a voice
against an enrolled speaker.

Embedder windows (one per 3 s patch) are standardised with a cohort's per-dimension mean
and spread, L2-normalised, and averaged into segments of up to ``segment_patches``
windows. Each training artist is enrolled as the normalised mean of its recordings'
segment means (every recording weighs the same). A segment's raw score against an artist
is the cosine to that centroid. Methods:

- ``cosine``: the raw score;
- ``snorm``: symmetric score normalisation (S-norm) against a cohort of outside music,
  ``0.5 ((s - mu_a) / sd_a + (s - mu_q) / sd_q)``, where ``mu_a, sd_a`` are the artist
  centroid's score statistics over the cohort and ``mu_q, sd_q`` the segment's;
- ``asnorm``: adaptive S-norm, the same with each side's statistics taken over its
  ``top_n`` highest cohort scores only (Matejka et al., 2017, "Analysis of score
  normalization in multilingual speaker recognition").

Normalised scores are on a common, roughly standard-normal scale for non-matching music,
which is what lets one calibrated threshold serve every artist of a snapshot.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["METHODS", "ArtistModel", "fit_artist_model", "segment_means"]

METHODS = ("cosine", "snorm", "asnorm")
SEGMENT_PATCHES = 10  # 30 s of 3 s patches


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise ValueError("zero, NaN or infinite vectors cannot be normalised")
    return np.asarray(x / norms, dtype=np.float32)


def segment_means(projected: np.ndarray, segment_patches: int) -> np.ndarray:
    """Unit means of consecutive groups of ``segment_patches`` windows (the last may be short,
    but is merged into the previous one when it is under half a segment)."""
    n = projected.shape[0]
    if n == 0:
        raise ValueError("no windows to score")
    starts = list(range(0, n, segment_patches))
    if len(starts) > 1 and n - starts[-1] < segment_patches / 2:
        starts.pop()
    bounds = [*starts[1:], n]
    return _unit(
        np.stack([projected[s:e].mean(axis=0) for s, e in zip(starts, bounds, strict=True)])
    )


def _stats(scores: np.ndarray, top_n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread of each row's cohort scores (its ``top_n`` highest, if given)."""
    if top_n is not None and top_n < scores.shape[1]:
        scores = -np.sort(-scores, axis=1)[:, :top_n]
    return scores.mean(axis=1), np.maximum(scores.std(axis=1), 1e-6)


@dataclass
class ArtistModel:
    method: str
    mean: np.ndarray  # [D] cohort per-dimension mean of the raw windows
    scale: np.ndarray  # [D] cohort per-dimension spread
    party_ids: np.ndarray  # [A]
    centroids: np.ndarray  # [A, D] unit
    cohort: np.ndarray  # [C, D] unit cohort segment vectors
    artist_mu: np.ndarray  # [A]
    artist_sd: np.ndarray  # [A]
    top_n: int
    segment_patches: int = SEGMENT_PATCHES

    def project(self, windows: np.ndarray) -> np.ndarray:
        """Raw embedder windows → standardised unit vectors."""
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"windows of shape {x.shape}; expected [n, {self.mean.shape[0]}]")
        return _unit((x - self.mean) / self.scale)

    def segments(self, windows: np.ndarray) -> np.ndarray:
        return segment_means(self.project(windows), self.segment_patches)

    def score_segments(self, segments: np.ndarray) -> np.ndarray:
        """[S, D] unit segment vectors → [S, A] scores by this model's method."""
        raw = segments @ self.centroids.T
        if self.method == "cosine":
            return np.asarray(raw, dtype=np.float64)
        top = self.top_n if self.method == "asnorm" else None
        mu_q, sd_q = _stats(segments @ self.cohort.T, top)
        return 0.5 * (
            (raw - self.artist_mu[None, :]) / self.artist_sd[None, :]
            + (raw - mu_q[:, None]) / sd_q[:, None]
        )

    def scores(self, windows: np.ndarray) -> np.ndarray:
        """Raw embedder windows of one clip → [S, A] per-segment artist scores."""
        return self.score_segments(self.segments(windows))

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            method=np.array(self.method),
            mean=self.mean,
            scale=self.scale,
            party_ids=self.party_ids,
            centroids=self.centroids,
            cohort=self.cohort,
            artist_mu=self.artist_mu,
            artist_sd=self.artist_sd,
            top_n=np.array(self.top_n),
            segment_patches=np.array(self.segment_patches),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ArtistModel:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            model = cls(
                method=str(z["method"]),
                mean=z["mean"],
                scale=z["scale"],
                party_ids=z["party_ids"],
                centroids=z["centroids"],
                cohort=z["cohort"],
                artist_mu=z["artist_mu"],
                artist_sd=z["artist_sd"],
                top_n=int(z["top_n"]),
                segment_patches=int(z["segment_patches"]),
            )
        if model.method not in METHODS:
            raise ValueError(f"artist model method {model.method!r}; known: {list(METHODS)}")
        return model

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "artists": int(self.party_ids.size),
            "cohort_segments": int(self.cohort.shape[0]),
            "top_n": self.top_n,
            "segment_patches": self.segment_patches,
            "dim": int(self.mean.shape[0]),
        }


def fit_artist_model(
    recordings: Mapping[int, np.ndarray],
    artists: Mapping[int, Sequence[int]],
    cohort: Sequence[np.ndarray],
    *,
    method: str = "snorm",
    top_n: int = 50,
    segment_patches: int = SEGMENT_PATCHES,
) -> ArtistModel:
    """Enrol every artist of ``recordings`` (recording id → raw windows [n, D]; ``artists``
    maps recording id → party ids), normalising against ``cohort`` (one raw window array
    per outside track)."""
    if method not in METHODS:
        raise ValueError(f"method {method!r} is unknown; allowed: {list(METHODS)}")
    if not cohort:
        raise ValueError("an empty cohort: score normalisation needs outside music")
    pooled = np.concatenate([np.asarray(c, dtype=np.float32) for c in cohort])
    mean = pooled.mean(axis=0)
    scale = np.maximum(pooled.std(axis=0), 1e-3 * float(pooled.std()) + 1e-6)
    base = ArtistModel(
        method=method,
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        party_ids=np.zeros(0, dtype=np.int64),
        centroids=np.zeros((0, mean.size), dtype=np.float32),
        cohort=np.zeros((0, mean.size), dtype=np.float32),
        artist_mu=np.zeros(0),
        artist_sd=np.ones(0),
        top_n=top_n,
        segment_patches=segment_patches,
    )
    cohort_segments = np.concatenate([base.segments(c) for c in cohort])
    per_artist: dict[int, list[np.ndarray]] = {}
    for rec, windows in recordings.items():
        rec_mean = _unit(base.project(windows).mean(axis=0))
        for party in artists.get(rec, ()):
            per_artist.setdefault(int(party), []).append(rec_mean)
    if not per_artist:
        raise ValueError("no recording has an artist: nothing to enrol")
    party_ids = np.array(sorted(per_artist), dtype=np.int64)
    centroids = _unit(np.stack([np.mean(per_artist[int(p)], axis=0) for p in party_ids]))
    top = top_n if method == "asnorm" else None
    artist_mu, artist_sd = _stats(centroids @ cohort_segments.T, top)
    base.party_ids = party_ids
    base.centroids = centroids
    base.cohort = cohort_segments
    base.artist_mu = artist_mu
    base.artist_sd = artist_sd
    return base
