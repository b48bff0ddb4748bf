"""The melody detector in the gate: a re-orchestrated member is blocked with its reason, an
unrelated tune is not, and a missing, corrupt or malformed melody calibration fails closed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import Session

from generation.calibrate_melody import calibrate_melody
from generation.gate import SimilarityGate
from generation.index import (
    GateIndex,
    GateUnavailable,
    load_index,
    store_melody,
    store_thresholds,
)
from generation.melody_cohort import MelodyCohort
from provenance.models import EmbeddingIndex, TrainingRun
from tests.common.audio import play, tune
from tests.common.gate import StandInEmbedder, build_demo_index, make_run, melody_cohort

ODD = (1.0, 0.0, 0.6, 0.0, 0.3)  # a clarinet-like timbre the members were not played on


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> MelodyCohort:
    return melody_cohort(tmp_path_factory.mktemp("melody") / "cohort.npz")


def gate_with_melody(
    session: Session, embedder: StandInEmbedder, cohort: MelodyCohort
) -> tuple[GateIndex, dict[int, np.ndarray]]:
    members = {rec: play(*tune(rec)) for rec in (1, 2, 3)}
    run = make_run(session)
    build_demo_index(session, embedder, run, training=members)
    row = session.query(EmbeddingIndex).filter_by(training_run_id=run.id).one()
    calibration = calibrate_melody(
        members, {rec: [100 + rec] for rec in members}, cohort, rate=0.0025
    )
    data = calibration.index.to_bytes()
    entry = calibration.thresholds_entry(cohort, data)
    entry["sha256"] = store_melody(row, data)
    store_thresholds(session, row, {**row.thresholds, "melody": entry})
    return load_index(session, run, embedder_sha256=embedder.sha256), members


def test_reorchestrated_member_is_blocked_by_melody(session: Session, cohort: MelodyCohort) -> None:
    embedder = StandInEmbedder()
    index, _ = gate_with_melody(session, embedder, cohort)
    gate = SimilarityGate(index, embedder)
    copy = play(*tune(2), semitones=2, tempo=0.9, harmonics=ODD)
    result = gate.check(copy)
    assert result.verdict == "block"
    assert any(reason.startswith("melody ") for reason in result.reasons), result.reasons
    assert result.extra["melody"]["recording_id"] == 2
    assert result.extra["melody"]["transpose_semitones"] == 2
    other = gate.check(play(*tune(9), harmonics=ODD))
    assert other.detector_scores["melody"] < other.extra["melody"]["threshold"]
    assert not any(reason.startswith("melody ") for reason in other.reasons)


def test_missing_or_corrupt_melody_index_fails_closed(
    session: Session, cohort: MelodyCohort
) -> None:
    embedder = StandInEmbedder()
    index, _ = gate_with_melody(session, embedder, cohort)
    assert index.path is not None
    target: Path = index.path / "melody.npz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    run = session.get(TrainingRun, index.training_run_id)
    assert run is not None
    with pytest.raises(GateUnavailable, match="melody index .* corrupt"):
        load_index(session, run, embedder_sha256=embedder.sha256)
    index.melody = None
    with pytest.raises(GateUnavailable, match="melody detector that is not loaded"):
        SimilarityGate(index, embedder)


@pytest.mark.parametrize(
    "damage",
    [
        lambda e: {**e, "rate": 0.0},
        lambda e: {**e, "thresholds": {"short": float("nan"), "window": 0.9}},
        lambda e: {k: v for k, v in e.items() if k != "tails"},
    ],
)
def test_malformed_melody_calibration_fails_closed(
    session: Session, cohort: MelodyCohort, damage: object
) -> None:
    embedder = StandInEmbedder()
    index, _ = gate_with_melody(session, embedder, cohort)
    index.thresholds = {**index.thresholds, "melody": damage(index.thresholds["melody"])}
    with pytest.raises(GateUnavailable, match="melody calibration is malformed"):
        SimilarityGate(index, embedder)
