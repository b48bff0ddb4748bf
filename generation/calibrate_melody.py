"""Calibrate the melody detector (``generation.melody``) on one snapshot.

The detector's score is the best chroma correlation of a clip with any passage of the
snapshot, so how high an unrelated tune reaches depends on the snapshot's size and on the
clip's length (a short clip has fewer frames to agree on). Negatives are therefore
measured against this snapshot's own melody index, at the lengths the gate sees:

- outside music: the shipped melody cohort (``generation.melody_cohort``), 30 s excerpts
  of tracks by artists outside any snapshot; each excerpt is also cut into 10 s queries;
- the snapshot itself: a 30 s excerpt from the middle of each member (and its 10 s
  thirds), matched against the recordings of *other* artists only.

For each length the threshold is the higher of the empirical one (at most ``rate`` of the
negatives reach it) and the ``rate`` tail of a normal fitted to the negatives' Fisher z.
The gate holds a clip under 20 s to the 10 s figures, and a longer clip, scored in 30 s
windows, to the 30 s tail at ``rate / windows``, so a whole track gets no more chances
to cross than one window.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from generation.melody import HOP, SAMPLE_RATE, WINDOW_HOP_S, WINDOW_S, MelodyIndex, chroma
from generation.melody_cohort import MelodyCohort
from generation.tail import fit_tail, tail_at

__all__ = [
    "LENGTHS",
    "MelodyCalibration",
    "calibrate_melody",
    "melody_threshold",
    "melody_windows",
]

SHORT_S = 10.0
LENGTHS = {"short": SHORT_S, "window": WINDOW_S}  # query kind → seconds
SHORT_BELOW_S = 20.0  # clips shorter than this are held to the 10 s negatives
_FRAMES_PER_S = SAMPLE_RATE / HOP


def melody_windows(n_samples: int) -> int:
    """How many ``WINDOW_S`` windows ``MelodyIndex.match`` scores for a clip this long."""
    frames = 1 + max(n_samples - 1, 0) // HOP
    window = int(round(WINDOW_S * _FRAMES_PER_S))
    hop = int(round(WINDOW_HOP_S * _FRAMES_PER_S))
    starts = len(range(0, max(frames - window, 0) + 1, hop))
    if (starts - 1) * hop + window < frames:
        starts += 1
    return starts


def melody_threshold(entry: Mapping[str, Any], n_samples: int) -> float:
    """The calibrated melody threshold for a clip of ``n_samples`` 16 kHz samples."""
    rate = float(entry["rate"])
    if n_samples < SHORT_BELOW_S * SAMPLE_RATE:
        return float(entry["thresholds"]["short"])
    windows = melody_windows(n_samples)
    base = float(entry["thresholds"]["window"])
    if windows <= 1:
        return base
    return max(base, tail_at(entry["tails"]["window"], rate / windows))


def _cuts(
    classes: np.ndarray, loudness: np.ndarray
) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """A 30 s chroma excerpt as one 30 s query and its consecutive 10 s queries."""
    short = int(round(SHORT_S * _FRAMES_PER_S))
    n = classes.shape[0]
    # As many 10 s queries as fit whole, evenly spread (30 s of frames is a little short
    # of three 10 s queries' worth by the STFT's edge).
    count = int(round(n / short)) if n >= short else 0
    starts: list[int] = np.linspace(0, n - short, count).round().astype(int).tolist()
    return {
        "window": [(classes, loudness)],
        "short": [(classes[a : a + short], loudness[a : a + short]) for a in starts],
    }


def _middle(wave: np.ndarray, seconds: float) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    start = max(0, (wave.size - n) // 2)
    return wave[start : start + n]


@dataclass
class MelodyCalibration:
    index: MelodyIndex
    thresholds: dict[str, float]  # query kind → threshold
    tails: dict[str, dict[str, float]]
    rate: float
    outside_negatives: dict[str, int]
    snapshot_negatives: dict[str, int]
    false_match_rate: dict[str, float]  # share of all negatives at/above the threshold
    snapshot_recall: float | None  # members' own excerpts matched back (a sanity figure)

    def thresholds_entry(self, cohort: MelodyCohort, index_bytes: bytes) -> dict[str, Any]:
        return {
            "sha256": hashlib.sha256(index_bytes).hexdigest(),
            "thresholds": dict(self.thresholds),
            "tails": {k: dict(v) for k, v in self.tails.items()},
            "rate": self.rate,
            "short_below_s": SHORT_BELOW_S,
            "cohort_sha256": cohort.sha256,
            "cohort_excluded_as_members": cohort.excluded,
            "outside_negatives": dict(self.outside_negatives),
            "snapshot_negatives": dict(self.snapshot_negatives),
            "false_match_rate": dict(self.false_match_rate),
            "recordings": len(self.index),
            "seconds": round(self.index.seconds, 1),
        }


def _threshold(negatives: np.ndarray, rate: float) -> tuple[float, dict[str, float]]:
    values = np.sort(negatives)[::-1]
    allowed = int(np.floor(rate * values.size))
    empirical = float(np.nextafter(values[allowed], np.inf))
    tail = fit_tail(values)
    return max(empirical, tail_at(tail, rate)), tail


def calibrate_melody(
    recordings: Mapping[int, np.ndarray],
    artists: Mapping[int, Sequence[int]],
    cohort: MelodyCohort,
    *,
    rate: float,
    progress: Callable[[int], None] | None = None,
) -> MelodyCalibration:
    """Index the snapshot's whole recordings and set the melody thresholds.

    ``recordings`` maps recording id → whole 16 kHz mono wave, ``artists`` recording id →
    party ids; ``progress(1)`` is called per member and per cohort track.
    """
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate {rate} must be in (0, 1)")
    if len(cohort) == 0:
        raise ValueError("the melody cohort is empty")
    index = MelodyIndex.build(recordings, artists)
    recs_of_artist: dict[int, set[int]] = {}
    for rec, ids in artists.items():
        for a in ids:
            recs_of_artist.setdefault(int(a), set()).add(int(rec))
    outside: dict[str, list[float]] = {kind: [] for kind in LENGTHS}
    for classes, loudness in zip(cohort.classes, cohort.loudness, strict=True):
        for kind, queries in _cuts(classes, loudness).items():
            outside[kind] += [index.match_chroma(c, loud).score for c, loud in queries]
        if progress is not None:
            progress(1)
    within: dict[str, list[float]] = {kind: [] for kind in LENGTHS}
    recalled: list[bool] = []
    for rec, wave in recordings.items():
        own = set().union(*(recs_of_artist.get(int(a), set()) for a in artists.get(rec, ())))
        own.add(int(rec))
        classes, loudness = chroma(_middle(wave, WINDOW_S))
        for kind, queries in _cuts(classes, loudness).items():
            for c, loud in queries:
                found = index.match_chroma(c, loud, exclude_recordings=own)
                if found.recording_id is not None:
                    within[kind].append(found.score)
        if progress is not None:
            progress(1)
    thresholds: dict[str, float] = {}
    tails: dict[str, dict[str, float]] = {}
    false_match: dict[str, float] = {}
    for kind in LENGTHS:
        negatives = np.array(outside[kind] + within[kind], dtype=np.float64)
        if negatives.size < 2:
            raise ValueError(f"too few melody negatives for {kind} queries: {negatives.size}")
        thresholds[kind], tails[kind] = _threshold(negatives, rate)
        false_match[kind] = float(np.mean(negatives >= thresholds[kind]))
    for wave in list(recordings.values())[:8]:
        # Members' own excerpts must come back far above the threshold.
        classes, loudness = chroma(_middle(wave, WINDOW_S))
        recalled.append(index.match_chroma(classes, loudness).score >= thresholds["window"])
    return MelodyCalibration(
        index=index,
        thresholds=thresholds,
        tails=tails,
        rate=rate,
        outside_negatives={k: len(v) for k, v in outside.items()},
        snapshot_negatives={k: len(v) for k, v in within.items()},
        false_match_rate=false_match,
        snapshot_recall=float(np.mean(recalled)) if recalled else None,
    )
