"""Calibrate a run's similarity gate and store the result with its index.

:func:`calibrate_run` builds the gate index for the gate's embedder (with a cohort),
fingerprints the whole snapshot, sets the track, artist and fingerprint thresholds
(:mod:`generation.calibrate_thresholds`), enrols and calibrates the artist model
(:mod:`generation.calibrate_artists`) and the melody detector
(:mod:`generation.calibrate_melody`), and stores all of it beside the index with an
audit event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from generation.calibrate_artists import calibrate_artist_model
from generation.calibrate_melody import calibrate_melody
from generation.calibrate_thresholds import CalibrationReport, Transform, calibrate_thresholds
from generation.cohort import Cohort
from generation.fingerprint import FingerprintIndex
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
from provenance.gate_indexes import gate_index_by_id
from provenance.index_files import FINGERPRINTS_LAYOUT
from provenance.models import Checkpoint, EmbeddingIndex, TrainingRun

log = logging.getLogger(__name__)


@dataclass
class IndexedSnapshot:
    """What calibration reads from the database: the gate index it calibrates (built from
    the whole members' windows when there is a cohort), each member's artists, and the
    sounding windows the artist model enrols. Read in one short transaction
    (:func:`index_snapshot`); the long work (:func:`compute_calibration`) needs no session."""

    index: GateIndex
    # The index's row, loaded (its uri names the folder the calibration files go to).
    row: EmbeddingIndex
    rec_artists: dict[int, set[int]]
    windows: dict[int, np.ndarray]
    cohort: Cohort | None
    melody_cohort: MelodyCohort | None

    @property
    def detectors(self) -> int:
        return 4 if self.melody_cohort is not None else 3


def embed_members(
    embedder: AudioEmbedder, recordings: Mapping[int, np.ndarray]
) -> dict[int, np.ndarray]:
    """Every window of every whole member recording (no database)."""
    return {
        rec: np.asarray(embedder.embed_audio(recordings[rec]), dtype=np.float32)
        for rec in sorted(recordings)
    }


def index_snapshot(
    session: Session,
    checkpoint_or_run: Checkpoint | TrainingRun | int,
    *,
    embedder: AudioEmbedder,
    recordings: Mapping[int, np.ndarray],
    windows: Mapping[int, np.ndarray] | None = None,
    cohort: Cohort | None = None,
    artists: Mapping[int, Sequence[int]] | None = None,
    melody_cohort: MelodyCohort | None = None,
    member_sha256: Collection[str] = (),
) -> IndexedSnapshot:
    """Build the gate index for this embedder (with a cohort) and load the index to calibrate.

    ``windows`` are :func:`embed_members` of ``recordings`` when the caller embedded them
    before opening its transaction; otherwise they are embedded here.
    """
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
        windows_by_rec = (
            dict(windows) if windows is not None else embed_members(embedder, recordings)
        )
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
    assert index.row_id is not None
    row = gate_index_by_id(session, index.row_id)
    if row is None:
        raise GateUnavailable(f"gate index {index.row_id} has no row")
    return IndexedSnapshot(index, row, rec_artists, windows_by_rec, cohort, melody_cohort)


def compute_calibration(
    snapshot: IndexedSnapshot,
    *,
    embedder: AudioEmbedder,
    clips: Mapping[int, np.ndarray],
    recordings: Mapping[int, np.ndarray],
    transforms: Mapping[str, Transform],
    false_block_rate: float = 0.01,
    artist_top_k: int = 3,
    progress: Callable[[int], None] | None = None,
) -> CalibrationReport:
    """Fingerprint the snapshot, set every threshold, enrol the artist model and the melody
    detector, and write their files beside the index. No database: the thresholds are
    recorded afterwards by :func:`store_calibration`."""
    index, rec_artists = snapshot.index, snapshot.rec_artists
    cohort, melody_cohort, detectors = snapshot.cohort, snapshot.melody_cohort, snapshot.detectors
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
    fp_sha = store_fingerprints(snapshot.row, fingerprints)
    thresholds = dict(report.thresholds)
    if cohort is not None:
        calibration = calibrate_artist_model(
            snapshot.windows,
            {rec: sorted(ids) for rec, ids in rec_artists.items()},
            cohort,
            rate=false_block_rate / detectors,
        )
        entry = calibration.thresholds_entry(cohort)
        entry["sha256"] = store_artist_model(snapshot.row, calibration.model)
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
        thresholds["melody"]["sha256"] = store_melody(snapshot.row, melody_bytes)
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
        "layout": FINGERPRINTS_LAYOUT,
        "hashes": len(fingerprints),
        "recordings": len(fingerprints.artists),
    }
    report.thresholds = thresholds
    return report


def store_calibration(
    session: Session, snapshot: IndexedSnapshot, report: CalibrationReport
) -> None:
    """Record the calibrated thresholds on the index row, with their audit event."""
    assert snapshot.index.row_id is not None
    row = gate_index_by_id(session, snapshot.index.row_id)
    if row is None:
        raise GateUnavailable(f"gate index {snapshot.index.row_id} vanished while calibrating")
    store_thresholds(session, row, {**report.thresholds, "report": _summary(report)})


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
    """Calibrate the run's newest gate index and store the thresholds with it (+ audit event),
    all in the caller's one session (the flow splits the same three steps over short
    transactions: :func:`index_snapshot`, :func:`compute_calibration`,
    :func:`store_calibration`).

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
    snapshot = index_snapshot(
        session,
        checkpoint_or_run,
        embedder=embedder,
        recordings=recordings,
        cohort=cohort,
        artists=artists,
        melody_cohort=melody_cohort,
        member_sha256=member_sha256,
    )
    report = compute_calibration(
        snapshot,
        embedder=embedder,
        clips=clips,
        recordings=recordings,
        transforms=transforms,
        false_block_rate=false_block_rate,
        artist_top_k=artist_top_k,
        progress=progress,
    )
    store_calibration(session, snapshot, report)
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
