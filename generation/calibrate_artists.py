"""Calibrate the gate's artist model: enrol the snapshot's artists, normalise against the
cohort, and set the threshold on outside music the normalisation never saw.

- Negatives: every ``calibration`` track of the cohort, cut into segments as short as a
  generated clip (``query_patches`` windows, 3 patches = 9 s by default), each scored
  against every snapshot artist; a segment counts by its highest artist score, since
  the gate blocks on any artist.
- Threshold: the higher of the empirical ``rate`` quantile of those negatives and the
  ``rate`` tail of a normal fitted to them (a few hundred negatives cannot show a 0.3 %
  quantile directly). The fitted tail is stored, so the gate holds a clip of ``S``
  segments to ``rate / S`` per segment.
- Back-end: S-norm over the mean- and max-pooled mid-end features (``feature="pool"``).
  On the tune half of ``benchmarks/data/gate_music.csv`` (11 unseen same-artist tracks,
  98 outside calibration tracks) it reached ROC AUC 0.739, against 0.653 for raw cosine,
  0.628 for the previous gate's top-k score and 0.742-0.747 for AS-norm with 20-100
  cohort scores; LDA trained on the cohort's artists did not do better (0.73-0.77 at 40
  dimensions). The normalised variants differ by less than the noise of 11 positives,
  so the simplest is kept.
- Recall inside the snapshot (a report, not a tuning input): each recording is scored
  against a model enrolled without it; a recording whose artist has other recordings
  counts as an unseen track by a training artist.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from generation.artist_model import ArtistModel, fit_artist_model
from generation.cohort import Cohort

__all__ = ["ArtistCalibration", "calibrate_artist_model", "normal_tail_at"]

QUERY_PATCHES = 3  # a 10 s generated clip is 3 patches of 3 s


@dataclass
class ArtistCalibration:
    model: ArtistModel
    threshold: float
    tail: dict[str, float]  # mean, sd, rate of the per-segment negatives
    negatives: int  # calibration segments
    negative_tracks: int
    false_block_rate: float  # of calibration segments at/above the threshold
    snapshot_recall: float | None  # leave-one-recording-out, same-artist recordings
    snapshot_positives: int

    def thresholds_entry(self, cohort: Cohort) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "tail": self.tail,
            "negatives": self.negatives,
            "negative_tracks": self.negative_tracks,
            "cohort": cohort.describe(),
            **self.model.describe(),
        }


def normal_tail_at(tail: Mapping[str, float], rate: float) -> float:
    """The (1 - rate) quantile of the fitted normal."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate {rate} must be in (0, 1)")
    return float(tail["mean"] + NormalDist().inv_cdf(1.0 - rate) * tail["sd"])


def _query_segments(windows: np.ndarray, size: int) -> list[np.ndarray]:
    chunks = [windows[s : s + size] for s in range(0, len(windows) - size + 1, size)]
    return chunks or [windows]


def calibrate_artist_model(
    recordings: Mapping[int, np.ndarray],
    artists: Mapping[int, Sequence[int]],
    cohort: Cohort,
    *,
    rate: float,
    method: str = "snorm",
    top_n: int = 50,
    query_patches: int = QUERY_PATCHES,
) -> ArtistCalibration:
    """``recordings``: snapshot recording id → raw embedder windows of the whole recording;
    ``artists``: recording id → its artist party ids."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"false-block rate {rate} must be in (0, 1)")
    negatives_tracks = cohort.part("calibration")
    if len(negatives_tracks) < 2:
        raise ValueError("the cohort has fewer than two calibration tracks")
    model = fit_artist_model(recordings, artists, cohort.part("cohort"), method=method, top_n=top_n)
    negatives = np.array(
        [
            float(model.scores(segment).max())
            for track in negatives_tracks
            for segment in _query_segments(track, query_patches)
        ]
    )
    tail = {"mean": float(negatives.mean()), "sd": float(negatives.std(ddof=1)), "rate": rate}
    ordered = np.sort(negatives)[::-1]
    empirical = float(np.nextafter(ordered[int(np.floor(rate * ordered.size))], np.inf))
    threshold = max(empirical, normal_tail_at(tail, rate))
    recall_hits: list[bool] = []
    for rec, windows in recordings.items():
        own = set(artists.get(rec, ()))
        others = {r for r in recordings if r != rec and own & set(artists.get(r, ()))}
        if not own or not others:
            continue
        held_out = fit_artist_model(
            {r: w for r, w in recordings.items() if r != rec},
            {r: a for r, a in artists.items() if r != rec},
            cohort.part("cohort"),
            method=method,
            top_n=top_n,
        )
        scores = held_out.scores(windows[: query_patches * 10]).max(axis=0)
        own_cols = [i for i, p in enumerate(held_out.party_ids) if int(p) in own]
        recall_hits.append(bool(scores[own_cols].max() >= threshold))
    return ArtistCalibration(
        model=model,
        threshold=threshold,
        tail=tail,
        negatives=int(negatives.size),
        negative_tracks=len(negatives_tracks),
        false_block_rate=float(np.mean(negatives >= threshold)),
        snapshot_recall=float(np.mean(recall_hits)) if recall_hits else None,
        snapshot_positives=len(recall_hits),
    )
