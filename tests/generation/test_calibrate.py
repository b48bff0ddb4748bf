"""Calibration: thresholds from the snapshot at a stated false-block rate, stored with the index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import Session

from generation.calibrate import calibrate_run, default_transforms, threshold_at_rate
from generation.gate import SimilarityGate
from generation.index import load_index
from provenance.models import EmbeddingIndex
from tests.generation.test_gate import (
    TRAINING,
    StandInEmbedder,
    build_demo_index,
    make_run,
    tone_clip,
)


def test_threshold_at_rate_counts_negatives() -> None:
    negatives = np.linspace(0.0, 0.99, 100)
    t = threshold_at_rate(negatives, 0.01)
    assert np.sum(negatives >= t) <= 1
    assert negatives[-2] < t <= negatives[-1]  # tight: exactly the one allowed negative
    assert np.sum(negatives >= threshold_at_rate(negatives, 0.0)) == 0
    with pytest.raises(ValueError, match="must be in"):
        threshold_at_rate(negatives, 1.5)


def test_calibrate_run_stores_thresholds_and_gate_uses_them(session: Session) -> None:
    embedder = StandInEmbedder()
    run = make_run(session)
    index = build_demo_index(session, embedder, run)
    clips = {rec: tone_clip(freqs, seconds=20.0, seed=rec) for rec, (_, freqs) in TRAINING.items()}
    report = calibrate_run(
        session,
        run,
        embedder=embedder,
        clips=clips,
        transforms=default_transforms(["gain_-6db", "noise_20db", "crop_5s"]),
        false_block_rate=0.01,
    )
    assert report.recordings == len(TRAINING)
    assert report.track_negatives == len(TRAINING)
    assert report.combined_false_block_rate <= 0.01
    assert report.track_recall == 1.0  # gain/noise/crop copies of pure tones stay close
    row = session.get(EmbeddingIndex, index.row_id)
    assert row is not None and row.thresholds is not None
    assert row.thresholds["track"] == report.thresholds["track"]
    assert index.path is not None
    meta = json.loads((Path(index.path) / "meta.json").read_text())
    assert meta["thresholds"]["track"] == report.thresholds["track"]
    # Thresholds do not change the index identity: it still loads and verifies.
    reloaded = load_index(session, run, embedder_sha256=embedder.sha256)
    assert reloaded.sha256 == index.sha256
    gate = SimilarityGate(reloaded, embedder)
    assert gate.check(clips[2]).verdict == "block"
