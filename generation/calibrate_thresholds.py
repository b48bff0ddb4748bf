"""Leave-one-recording-out thresholds for the gate's track, artist and fingerprint scores.

For every snapshot recording r (leave-one-recording-out over the exact index vectors):

- track negatives: r's windows against segments of *other artists only* — the best a
  non-copy by someone outside the snapshot can be expected to score;
- track positives: transformed copies of r (``transforms``) against the full index;
- artist positives: r's windows against r's artists' *other* recordings (an unseen track
  by a training artist), scored as the gate scores artists (mean of top-k similarities);
- artist negatives: r's windows against every other artist's segments, r's artists removed;
- fingerprint negatives / positives: r against the fingerprints of other artists'
  recordings only, and r's transformed copies against all fingerprints.

Each of the three thresholds is set so at most ``false_block_rate / 3`` of its negatives
reach it, so the detectors together stay within the stated false-block rate on negatives.
The two embedding thresholds are also at least the ``false_block_rate / 3`` tail of a
normal fitted to the per-window negatives' Fisher z (``tail_threshold``): a snapshot has
too few recordings to read such a quantile off directly. The fitted tails are stored too,
so the gate can hold a clip of w windows to rate / (3 w) per window (a whole track must
not get more chances to cross than a 10 s clip). The fingerprint threshold never
goes below ``fingerprint.MIN_THRESHOLD``. The thresholds
are stored in ``EmbeddingIndex.thresholds`` and the index's meta.json, the fingerprints
beside the vectors with their sha256 in the thresholds; the index sha256 covers the
vectors and id map only, so calibration does not change it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from generation.fingerprint import MIN_THRESHOLD, FingerprintIndex
from generation.gate import AudioEmbedder, audible
from generation.index import GateIndex, GateUnavailable
from generation.tail import fit_tail, tail_threshold

log = logging.getLogger(__name__)

Transform = Callable[[np.ndarray], np.ndarray]


@dataclass
class CalibrationReport:
    thresholds: dict[str, Any]
    false_block_rate: float
    recordings: int
    track_negatives: int
    track_positives: int
    artist_negatives: int
    artist_positives: int
    track_recall: float  # share of transformed copies at/above the track threshold
    artist_recall: float  # share of unseen same-artist tracks at/above the artist threshold
    fingerprint_recall: float  # share of transformed copies at/above the fingerprint threshold
    replay_recall: float  # share of transformed copies blocked by either detector
    combined_false_block_rate: float  # negatives blocked by any score
    per_transform_recall: dict[str, float] = field(default_factory=dict)  # either detector
    outside_negatives: int = 0  # cohort calibration tracks added to the track negatives
    artist_model: dict[str, Any] | None = None  # the artist model's calibration summary
    melody: dict[str, Any] | None = None  # the melody detector's calibration summary

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def threshold_at_rate(negatives: np.ndarray, rate: float) -> float:
    """Smallest threshold that at most ``rate`` of the negatives reach (score >= threshold)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"false-block rate {rate} must be in [0, 1)")
    values = np.sort(np.asarray(negatives, dtype=np.float64))[::-1]
    if values.size == 0:
        raise ValueError("no negatives to calibrate on: need recordings by at least two artists")
    allowed = int(np.floor(rate * values.size))  # negatives allowed at/above the threshold
    return float(np.nextafter(values[allowed], np.inf))


def _artist_windows(sims: np.ndarray, top_k: int) -> np.ndarray:
    """Per window, the mean of its top-k similarities."""
    k = min(top_k, sims.shape[1])
    return np.asarray(-np.sort(-sims, axis=1)[:, :k].mean(axis=1))


def _artist_score(sims: np.ndarray, top_k: int) -> float:
    """Per-window mean of top-k similarities, max over windows (the gate's artist score)."""
    return float(_artist_windows(sims, top_k).max())


def _embed(embedder: AudioEmbedder, wave: np.ndarray) -> np.ndarray:
    """Unit windows of the clip's sounding parts, as the gate scores them (may be empty)."""
    windows = np.asarray(embedder.embed_audio(wave), dtype=np.float32)
    if windows.ndim != 2 or not np.all(np.isfinite(windows)):
        raise GateUnavailable(f"embedder returned unusable windows (shape {windows.shape})")
    windows = windows[audible(embedder, wave, windows.shape[0])]
    return windows / np.linalg.norm(windows, axis=1, keepdims=True)


def _best(sims: np.ndarray) -> float:
    """The highest similarity, or -1 when the clip had no sounding window."""
    return float(sims.max()) if sims.size else -1.0


def calibrate_thresholds(
    index: GateIndex,
    embedder: AudioEmbedder,
    clips: Mapping[int, np.ndarray],
    *,
    fingerprints: FingerprintIndex,
    transforms: Mapping[str, Transform],
    false_block_rate: float = 0.01,
    artist_top_k: int = 3,
    progress: Callable[[int], None] | None = None,
    outside_windows: Sequence[np.ndarray] = (),
    detectors: int = 3,
) -> CalibrationReport:
    """Thresholds from the snapshot: ``clips`` maps recording id → 16 kHz mono wave.

    ``outside_windows`` (raw embedder windows of tracks outside the snapshot, e.g. the
    cohort's calibration part) are track negatives too. ``progress(n)`` is called after
    each clip is done (n = 1 per clip). Each of the gate's ``detectors`` gets an equal
    share of ``false_block_rate``.
    """
    if embedder.sha256 != index.embedder_sha256:
        raise GateUnavailable(
            f"embedder {embedder.sha256[:12]} does not match index embedder "
            f"{index.embedder_sha256[:12]}"
        )
    if not transforms:
        raise ValueError("need at least one transform to make track positives")
    vectors = index.vectors()
    rec_of_row = index.recording_ids
    artists_of_row = index.artist_ids
    rec_artists: dict[int, set[int]] = {}
    for row, rec in enumerate(rec_of_row):
        rec_artists.setdefault(int(rec), set()).update(artists_of_row[row])
    all_artists = sorted({a for ids in rec_artists.values() for a in ids})
    rows_of_artist = {
        a: np.array([i for i, ids in enumerate(artists_of_row) if a in ids]) for a in all_artists
    }
    recs_of_artist: dict[int, set[int]] = {}
    for rec_id, ids in rec_artists.items():
        for a in ids:
            recs_of_artist.setdefault(a, set()).add(rec_id)
    track_neg: list[float] = []
    track_neg_windows: list[np.ndarray] = []
    artist_neg_windows: list[np.ndarray] = []
    track_pos: list[float] = []
    fp_neg: list[float] = []
    fp_pos: list[float] = []
    per_transform: dict[str, list[tuple[float, float]]] = {name: [] for name in transforms}
    artist_neg: list[float] = []
    artist_pos: list[float] = []
    used = 0
    for rec, wave in clips.items():
        if rec not in rec_artists:
            log.warning("recording %d is not in the index; skipped", rec)
            continue
        used += 1
        own = rec_artists[rec]
        sims = _embed(embedder, wave) @ vectors.T  # [w, n]
        if sims.shape[0] == 0:  # silence throughout: it resembles nothing
            sims = np.full((1, vectors.shape[0]), -1.0, dtype=np.float32)
        # Negatives are other artists' recordings, never r itself: a member with no
        # credited artist (an anonymous folk tune) would otherwise be its own negative.
        others = np.array([not (own & set(ids)) for ids in artists_of_row]) & (rec_of_row != rec)
        other_scores: list[float] = []
        other_windows: list[np.ndarray] = []
        for artist in all_artists:
            rows = rows_of_artist[artist]
            if artist in own:
                unseen = rows[rec_of_row[rows] != rec]
                if unseen.size:
                    artist_pos.append(_artist_score(sims[:, unseen], artist_top_k))
            else:
                other_windows.append(_artist_windows(sims[:, rows], artist_top_k))
                other_scores.append(float(other_windows[-1].max()))
        if others.any() and other_scores:
            # Negatives are per recording; the gate blocks on any artist, so a negative
            # counts by its highest other-artist score.
            track_neg.append(float(sims[:, others].max()))
            track_neg_windows.append(sims[:, others].max(axis=1))
            artist_neg_windows.append(np.max(other_windows, axis=0))
            artist_neg.append(max(other_scores))
            same_artist = set().union(*(recs_of_artist[a] for a in own)) | {rec}
            fp_neg.append(fingerprints.match_windows(wave, exclude_recordings=same_artist).score)
        for name, transform in transforms.items():
            copy = transform(wave)
            score = _best(_embed(embedder, copy) @ vectors.T)
            fp_score = float(fingerprints.match_windows(copy).score)
            track_pos.append(score)
            fp_pos.append(fp_score)
            per_transform[name].append((score, fp_score))
        if progress is not None:
            progress(1)
    if used == 0:
        raise ValueError("none of the clips are in the index; nothing to calibrate on")
    outside_track_neg: list[float] = []
    for raw in outside_windows:
        unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
        sims = (unit @ vectors.T).max(axis=1)
        outside_track_neg.append(float(sims.max()))
        track_neg_windows.append(sims)
    share = false_block_rate / detectors
    # Per-window negatives (every 10 s window of every recording) feed the tail fit.
    track_windows = np.concatenate(track_neg_windows)
    artist_windows = np.concatenate(artist_neg_windows)
    t_track = max(
        threshold_at_rate(np.array(track_neg + outside_track_neg), share),
        tail_threshold(track_windows, share),
    )
    neg_by_rec_max = np.array(artist_neg)
    t_artist = max(
        threshold_at_rate(neg_by_rec_max, share),
        tail_threshold(artist_windows, share),
    )
    t_fp = max(float(MIN_THRESHOLD), threshold_at_rate(np.array(fp_neg), share))
    track_neg_a = np.array(track_neg)
    # The negative lists are per recording and in the same order: count any detector.
    blocked = (track_neg_a >= t_track) | (neg_by_rec_max >= t_artist) | (np.array(fp_neg) >= t_fp)
    combined_fbr = float(np.mean(blocked))
    thresholds: dict[str, Any] = {
        "track": t_track,
        "artist": t_artist,
        "fingerprint": {"threshold": t_fp},
        # Per-window tails: the gate raises the thresholds for clips of many windows.
        "track_tail": {**fit_tail(track_windows), "rate": share}
        if track_windows.size >= 2
        else None,
        "artist_tail": {**fit_tail(artist_windows), "rate": share}
        if artist_windows.size >= 2
        else None,
        "false_block_rate": false_block_rate,
        "artist_top_k": artist_top_k,
        "method": f"leave-one-recording-out on snapshot; each of {detectors} detectors at "
        f"rate/{detectors}; track/artist at least the fitted Fisher-z normal tail",
    }
    pos = np.array(track_pos)
    apos = np.array(artist_pos)
    fpos = np.array(fp_pos)
    return CalibrationReport(
        thresholds=thresholds,
        false_block_rate=false_block_rate,
        recordings=used,
        track_negatives=len(track_neg),
        track_positives=len(track_pos),
        artist_negatives=len(artist_neg),
        artist_positives=len(artist_pos),
        track_recall=float(np.mean(pos >= t_track)) if pos.size else 0.0,
        artist_recall=float(np.mean(apos >= t_artist)) if apos.size else 0.0,
        fingerprint_recall=float(np.mean(fpos >= t_fp)) if fpos.size else 0.0,
        replay_recall=float(np.mean((pos >= t_track) | (fpos >= t_fp))) if pos.size else 0.0,
        combined_false_block_rate=combined_fbr,
        per_transform_recall={
            name: float(np.mean([a >= t_track or b >= t_fp for a, b in v])) if v else 0.0
            for name, v in per_transform.items()
        },
        outside_negatives=len(outside_track_neg),
    )
