"""The melody detector's calibration: outside chroma as negatives, thresholds per query
length, a re-orchestrated member above them, and a cohort file that refuses other settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from generation.calibrate_melody import (
    SHORT_BELOW_S,
    calibrate_melody,
    melody_threshold,
    melody_windows,
)
from generation.index import GateUnavailable
from generation.melody import SAMPLE_RATE, MelodyIndex
from generation.melody_cohort import MelodyCohort, load_melody_cohort
from tests.common.audio import play, tune
from tests.common.gate import melody_cohort

MEMBERS = {rec: play(*tune(rec)) for rec in (1, 2, 3, 4)}
ARTISTS = {1: [10], 2: [10], 3: [20], 4: [30]}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> MelodyCohort:
    return melody_cohort(tmp_path_factory.mktemp("melody") / "cohort.npz")


def test_cohort_round_trip_and_description(cohort: MelodyCohort) -> None:
    assert len(cohort) == 24
    assert cohort.classes[0].shape[1] == 12
    assert cohort.classes[0].shape[0] == cohort.loudness[0].shape[0]
    described = cohort.describe()
    assert described["tracks"] == 24 and described["licences"] == {"CC0-1.0": 24}
    assert len(described["sha256"]) == 64


def test_cohort_from_other_chroma_settings_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cohort.npz"
    melody_cohort(path, range(3))
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    config = json.loads(str(arrays["config"]))
    config["hop"] = 800
    arrays["config"] = np.array(json.dumps(config, sort_keys=True))
    np.savez(path, **arrays)
    with pytest.raises(GateUnavailable, match="chroma settings"):
        load_melody_cohort(path)
    path.write_bytes(b"not a cohort")
    with pytest.raises(GateUnavailable, match="cannot be read"):
        load_melody_cohort(path)


def test_thresholds_sit_between_outside_tunes_and_a_reorchestrated_member(
    cohort: MelodyCohort,
) -> None:
    calibration = calibrate_melody(MEMBERS, ARTISTS, cohort, rate=0.0025)
    entry = calibration.thresholds_entry(cohort, calibration.index.to_bytes())
    assert calibration.outside_negatives == {"short": 72, "window": 24}
    assert calibration.snapshot_recall == 1.0
    assert entry["cohort_sha256"] == cohort.sha256
    assert MelodyIndex.from_bytes(calibration.index.to_bytes()).artists == {
        1: [10],
        2: [10],
        3: [20],
        4: [30],
    }
    # Short queries agree by chance more often than 30 s ones.
    assert entry["thresholds"]["short"] > entry["thresholds"]["window"]
    copy = play(*tune(3), semitones=-2, tempo=1.1, harmonics=(1.0, 0.0, 0.6, 0.0, 0.3))
    found = calibration.index.match(copy)
    assert found.recording_id == 3
    assert found.score >= melody_threshold(entry, copy.size)
    for seed in (200, 201, 202):
        other = play(*tune(seed), harmonics=(1.0, 0.0, 0.6, 0.0, 0.3))
        assert calibration.index.match(other).score < melody_threshold(entry, other.size)


def test_long_clips_are_held_to_a_stricter_threshold(cohort: MelodyCohort) -> None:
    calibration = calibrate_melody(MEMBERS, ARTISTS, cohort, rate=0.0025)
    entry = calibration.thresholds_entry(cohort, b"")
    short = melody_threshold(entry, 10 * SAMPLE_RATE)
    assert short == entry["thresholds"]["short"]
    assert melody_threshold(entry, int(SHORT_BELOW_S * SAMPLE_RATE)) == pytest.approx(
        entry["thresholds"]["window"]
    )
    assert melody_windows(30 * SAMPLE_RATE) == 1
    assert melody_windows(60 * SAMPLE_RATE) == 3
    assert melody_threshold(entry, 300 * SAMPLE_RATE) > entry["thresholds"]["window"]


def test_rate_and_cohort_are_checked(cohort: MelodyCohort) -> None:
    with pytest.raises(ValueError, match="rate"):
        calibrate_melody(MEMBERS, ARTISTS, cohort, rate=0.0)
    empty = MelodyCohort(classes=[], loudness=[], meta=[], sha256="0" * 64)
    with pytest.raises(ValueError, match="empty"):
        calibrate_melody(MEMBERS, ARTISTS, empty, rate=0.01)


def test_a_member_is_left_out_of_the_outside_negatives(cohort: MelodyCohort) -> None:
    # The first cohort tune is also a member: as a negative it would push the threshold
    # to its own perfect match and switch the detector off.
    member = play(*tune(100, notes=64), harmonics=(1.0, 0.3, 0.6))
    members = {**MEMBERS, 5: member}
    artists = {**ARTISTS, 5: [40]}
    kept = cohort.excluding([f"{100:064x}"])
    assert len(kept) == len(cohort) - 1 and kept.excluded == 1
    assert kept.describe()["excluded_as_members"] == 1
    assert cohort.excluding(["f" * 64]) is cohort
    with_member = calibrate_melody(members, artists, cohort, rate=0.0025)
    without = calibrate_melody(members, artists, kept, rate=0.0025)
    assert with_member.thresholds["window"] > 0.95
    assert without.thresholds["window"] < with_member.thresholds["window"] - 0.1
