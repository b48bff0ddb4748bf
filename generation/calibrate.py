"""Calibrate the similarity gate's thresholds on the run's own snapshot.

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
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from generation.calibrate_artists import calibrate_artist_model
from generation.calibrate_melody import calibrate_melody
from generation.cohort import Cohort
from generation.fingerprint import MIN_THRESHOLD, FingerprintIndex
from generation.gate import AudioEmbedder, audible
from generation.index import (
    GateIndex,
    GateUnavailable,
    build_index_for_run,
    load_index,
    store_artist_model,
    store_fingerprints,
    store_melody,
    store_thresholds,
)
from generation.melody_cohort import MelodyCohort
from generation.search import choose_search
from generation.tail import fit_tail, tail_threshold
from provenance.models import Checkpoint, EmbeddingIndex, TrainingRun

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


def calibrate_run(
    session: Session,
    checkpoint_or_run: Checkpoint | TrainingRun | int,
    *,
    embedder: AudioEmbedder,
    clips: Mapping[int, np.ndarray],
    recordings: Mapping[int, np.ndarray],
    transforms: Mapping[str, Transform],
    false_block_rate: float = 0.01,
    artist_top_k: int = 3,
    progress: Callable[[int], None] | None = None,
    cohort: Cohort | None = None,
    artists: Mapping[int, Sequence[int]] | None = None,
    melody_cohort: MelodyCohort | None = None,
    member_sha256: Collection[str] = (),
) -> CalibrationReport:
    """Calibrate the run's newest gate index and store the thresholds with it (+ audit event).

    ``clips`` (recording id → wave, usually the first N seconds) are the calibration
    queries; ``recordings`` (whole member recordings) are fingerprinted for the index.

    With a ``cohort`` (outside music embedded by the same embedder) and the recordings'
    ``artists`` (recording id → party ids), the gate index for this embedder is first
    built from the whole recordings' windows, an artist model is enrolled and calibrated
    on the cohort (``generation.calibrate_artists``), and the cohort's calibration tracks
    join the track negatives. With a ``melody_cohort`` the snapshot's melodies are indexed
    and the melody detector calibrated on it (``generation.calibrate_melody``). Cohort
    tracks whose source file has the sha256 of a member (``member_sha256``) are left out:
    a member is not outside music.
    """
    detectors = 4 if melody_cohort is not None else 3
    if cohort is not None:
        cohort = cohort.excluding(member_sha256)
    if melody_cohort is not None:
        melody_cohort = melody_cohort.excluding(member_sha256)
    windows_by_rec: dict[int, np.ndarray] = {}
    if cohort is not None:
        if artists is None:
            raise ValueError("calibrating with a cohort needs the recordings' artists")
        if cohort.embedder_sha256 != embedder.sha256:
            raise GateUnavailable(
                f"the cohort was embedded with {cohort.embedder_sha256[:12]}, the gate "
                f"embedder is {embedder.sha256[:12]}"
            )
        windows_by_rec = {
            rec: np.asarray(embedder.embed_audio(recordings[rec]), dtype=np.float32)
            for rec in sorted(recordings)
        }
        build_gate_index(session, checkpoint_or_run, embedder.sha256, windows_by_rec, artists)
        # The artist model enrols sounding windows only, as the gate scores them.
        windows_by_rec = {
            rec: w[audible(embedder, recordings[rec], w.shape[0])]
            for rec, w in windows_by_rec.items()
        }
        windows_by_rec = {rec: w for rec, w in windows_by_rec.items() if w.shape[0]}
    index = load_index(session, checkpoint_or_run, embedder_sha256=embedder.sha256)
    rec_artists: dict[int, set[int]] = {}
    for rec, ids in zip(index.recording_ids, index.artist_ids, strict=True):
        rec_artists.setdefault(int(rec), set()).update(ids)
    missing = sorted(set(rec_artists) - set(recordings))
    if missing:
        raise GateUnavailable(
            f"cannot fingerprint the whole snapshot: no audio for recordings {missing[:10]}"
        )
    fingerprints = FingerprintIndex.build(
        {rec: recordings[rec] for rec in sorted(rec_artists)}, rec_artists
    )
    report = calibrate_thresholds(
        index,
        embedder,
        clips,
        fingerprints=fingerprints,
        transforms=transforms,
        false_block_rate=false_block_rate,
        artist_top_k=artist_top_k,
        progress=progress,
        outside_windows=cohort.part("calibration") if cohort is not None else (),
        detectors=detectors,
    )
    row = session.get(EmbeddingIndex, index.row_id)
    assert row is not None
    fp_sha = store_fingerprints(row, fingerprints)
    thresholds = dict(report.thresholds)
    if cohort is not None:
        calibration = calibrate_artist_model(
            windows_by_rec,
            {rec: sorted(ids) for rec, ids in rec_artists.items()},
            cohort,
            rate=false_block_rate / detectors,
        )
        entry = calibration.thresholds_entry(cohort)
        entry["sha256"] = store_artist_model(row, calibration.model)
        # The artist model replaces the top-k artist score for this index.
        thresholds["artist"] = calibration.threshold
        thresholds["artist_tail"] = None
        thresholds["artist_model"] = entry
        report.artist_recall = calibration.snapshot_recall or 0.0
        report.artist_positives = calibration.snapshot_positives
        report.artist_negatives = calibration.negatives
        report.artist_model = {
            "method": calibration.model.method,
            "threshold": calibration.threshold,
            "calibration_segments": calibration.negatives,
            "calibration_tracks": calibration.negative_tracks,
            "false_block_rate_on_calibration": calibration.false_block_rate,
            "snapshot_recall": calibration.snapshot_recall,
            "cohort_sha256": cohort.sha256,
        }
    if melody_cohort is not None:
        melody = calibrate_melody(
            {rec: recordings[rec] for rec in sorted(rec_artists)},
            {rec: sorted(ids) for rec, ids in rec_artists.items()},
            melody_cohort,
            rate=false_block_rate / detectors,
        )
        melody_bytes = melody.index.to_bytes()
        thresholds["melody"] = melody.thresholds_entry(melody_cohort, melody_bytes)
        thresholds["melody"]["sha256"] = store_melody(row, melody_bytes)
        report.melody = {
            "thresholds": melody.thresholds,
            "outside_negatives": melody.outside_negatives,
            "snapshot_negatives": melody.snapshot_negatives,
            "false_match_rate": melody.false_match_rate,
            "snapshot_recall": melody.snapshot_recall,
            "cohort_sha256": melody_cohort.sha256,
            "cohort_excluded_as_members": melody_cohort.excluded,
        }
    thresholds["search"] = choose_search(index.index, index.recording_ids)
    thresholds["fingerprint"] = {
        **thresholds["fingerprint"],
        "sha256": fp_sha,
        "hashes": len(fingerprints),
        "recordings": len(fingerprints.artists),
    }
    report.thresholds = thresholds
    store_thresholds(session, row, {**thresholds, "report": _summary(report)})
    return report


def build_gate_index(
    session: Session,
    checkpoint_or_run: Checkpoint | TrainingRun | int,
    embedder_sha256: str,
    windows: Mapping[int, np.ndarray],
    artists: Mapping[int, Sequence[int]],
) -> EmbeddingIndex:
    """The gate's index for one embedder: every window of every whole member recording."""
    from generation.index import resolve_run

    run = resolve_run(session, checkpoint_or_run)
    recs = sorted(windows)
    missing = [r for r in recs if r not in artists]
    if missing:
        raise ValueError(f"no artists given for recordings {missing[:10]}")
    return build_index_for_run(
        session,
        run.id,
        embeddings=np.concatenate([windows[r] for r in recs]),
        recording_ids=[r for r in recs for _ in range(len(windows[r]))],
        segment_index=[i for r in recs for i in range(len(windows[r]))],
        artist_ids=[list(artists[r]) for r in recs for _ in range(len(windows[r]))],
        embedder_sha256=embedder_sha256,
        snapshot_digest=run.members_digest,
    )


def _summary(report: CalibrationReport) -> dict[str, Any]:
    data = report.to_json()
    data.pop("thresholds")
    return data


def default_transforms(names: Sequence[str] | None = None) -> dict[str, Transform]:
    """The replay transforms of ``training.augment.calibration_transforms``, optionally a subset."""
    from training.augment import calibration_transforms

    chosen = calibration_transforms()
    if names is not None:
        unknown = set(names) - set(chosen)
        if unknown:
            raise ValueError(f"unknown transforms {sorted(unknown)}; known: {sorted(chosen)}")
        chosen = {n: chosen[n] for n in names}
    return chosen
