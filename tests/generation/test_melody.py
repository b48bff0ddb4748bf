from __future__ import annotations

import numpy as np
import pytest

from generation.melody import SAMPLE_RATE, MelodyIndex
from tests.common.audio import play, tune


@pytest.fixture(scope="module")
def index() -> MelodyIndex:
    return MelodyIndex.build({1: play(*tune(1)), 2: play(*tune(2))}, {1: [10], 2: [20, 21]})


def test_reorchestrated_copy_outscores_another_melody(index: MelodyIndex) -> None:
    # The same tune two semitones up, 10 % slower, on an instrument with odd harmonics.
    copy = play(*tune(1), semitones=2, tempo=0.9, harmonics=(1.0, 0.0, 0.6, 0.0, 0.3))
    other = play(*tune(3), semitones=2, tempo=0.9, harmonics=(1.0, 0.0, 0.6, 0.0, 0.3))
    found = index.match(copy)
    unrelated = index.match(other)
    assert found.recording_id == 1
    assert found.transpose_semitones == 2
    assert found.time_scale == pytest.approx(1 / 0.9, abs=0.04)
    assert found.score > 0.75
    assert found.score > unrelated.score + 0.3
    without = index.match(copy, exclude_recordings={1})
    assert without.recording_id == 2
    assert without.score < found.score - 0.3


def test_long_clip_is_scored_in_windows(index: MelodyIndex) -> None:
    # 24 s of the copied tune between two other tunes: longer than one 30 s window.
    copy = play(*tune(1), semitones=-2, tempo=1.1)
    clip = np.concatenate([play(*tune(4)), copy, play(*tune(5))])
    assert clip.size > 60 * SAMPLE_RATE
    found = index.match(clip)
    assert found.recording_id == 1
    assert found.transpose_semitones == -2
    assert found.score > 0.75


def test_round_trip_through_bytes(index: MelodyIndex) -> None:
    restored = MelodyIndex.from_bytes(index.to_bytes())
    assert len(restored) == len(index) == 2
    assert restored.artists == {1: [10], 2: [20, 21]}
    clip = play(*tune(2))[: 10 * SAMPLE_RATE]
    before, after = index.match(clip), restored.match(clip)
    assert after.recording_id == before.recording_id == 2
    # Frames are stored as float16.
    assert after.score == pytest.approx(before.score, abs=1e-3)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "version"])
def test_corrupt_bytes_raise_value_error(index: MelodyIndex, damage: str) -> None:
    data = index.to_bytes()
    if damage == "garbage":
        data = b"not an index at all"
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data = data.replace(b"version", b"versioX")
    with pytest.raises(ValueError):
        MelodyIndex.from_bytes(data)


def test_silence_and_empty_index_do_not_match(index: MelodyIndex) -> None:
    assert index.match(np.zeros(5 * SAMPLE_RATE, np.float32)).recording_id is None
    empty = MelodyIndex.build({}, {})
    assert len(empty) == 0
    assert empty.match(play(*tune(1))).recording_id is None
    with pytest.raises(ValueError, match="mono"):
        index.match(np.zeros((2, SAMPLE_RATE), np.float32))
