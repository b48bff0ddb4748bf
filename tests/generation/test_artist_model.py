"""The artist model: enrolment, score normalisation against a cohort, calibration on
outside music, persistence, and the gate failing closed around it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import Session

from generation.artist_model import ArtistModel, fit_artist_model, segment_means
from generation.calibrate_artists import calibrate_artist_model, normal_tail_at
from generation.cohort import Cohort, load_cohort, write_cohort
from generation.index import GateUnavailable

DIM = 24


def artist_windows(
    rng: np.random.Generator, centre: np.ndarray, n: int, spread: float = 0.6
) -> np.ndarray:
    """Raw windows of one track: the artist's centre, a per-track offset and window noise."""
    track = centre + 0.4 * rng.standard_normal(DIM)
    return (track + spread * rng.standard_normal((n, DIM))).astype(np.float32) + 3.0


@pytest.fixture
def world() -> dict[str, object]:
    rng = np.random.default_rng(0)
    centres = {party: 2.0 * rng.standard_normal(DIM) for party in (1, 2, 3)}
    recordings, artists = {}, {}
    rec = 100
    for party, centre in centres.items():
        for _ in range(3):
            recordings[rec] = artist_windows(rng, centre, 20)
            artists[rec] = [party]
            rec += 1
    outside = [artist_windows(rng, 2.0 * rng.standard_normal(DIM), 10) for _ in range(80)]
    unseen = {party: artist_windows(rng, centre, 3) for party, centre in centres.items()}
    return {
        "recordings": recordings,
        "artists": artists,
        "outside": outside,
        "unseen": unseen,
        "rng": rng,
    }


def make_cohort(outside: list[np.ndarray]) -> Cohort:
    return Cohort(
        embedder_sha256="e" * 64,
        tracks=outside,
        roles=["cohort" if i % 2 else "calibration" for i in range(len(outside))],
        meta=[{"artist": f"o{i}", "licence": "CC0-1.0"} for i in range(len(outside))],
        sha256="c" * 64,
    )


def test_segment_means_groups_windows_and_merges_a_short_tail() -> None:
    x = np.eye(4, dtype=np.float32)[np.arange(23) % 4]
    assert segment_means(x, 10).shape == (2, 4)  # 10 + 13 (the last 3 merged)
    assert segment_means(x, 10)[0] == pytest.approx(segment_means(x[:10], 10)[0])
    assert segment_means(x[:3], 10).shape == (1, 4)
    with pytest.raises(ValueError):
        segment_means(x[:0], 10)


@pytest.mark.parametrize("method", ["cosine", "snorm", "asnorm"])
def test_unseen_tracks_score_highest_for_their_own_artist(
    world: dict[str, object], method: str
) -> None:
    model = fit_artist_model(
        world["recordings"],  # type: ignore[arg-type]
        world["artists"],  # type: ignore[arg-type]
        world["outside"][:40],  # type: ignore[index]
        method=method,
        top_n=10,
    )
    for party, windows in world["unseen"].items():  # type: ignore[attr-defined]
        scores = model.scores(windows)[0]
        assert int(model.party_ids[int(np.argmax(scores))]) == party


def test_snorm_puts_outside_music_near_zero_and_artists_far_above(
    world: dict[str, object],
) -> None:
    outside = world["outside"]
    model = fit_artist_model(
        world["recordings"],  # type: ignore[arg-type]
        world["artists"],  # type: ignore[arg-type]
        outside[:40],  # type: ignore[index]
        method="snorm",
    )
    negatives = np.array([model.scores(t).max() for t in outside[40:]])  # type: ignore[index]
    positives = np.array([model.scores(w).max() for w in world["unseen"].values()])  # type: ignore[attr-defined]
    assert abs(float(np.median(negatives))) < 1.5
    assert positives.min() > np.percentile(negatives, 95)


def test_model_round_trips_through_bytes(world: dict[str, object]) -> None:
    model = fit_artist_model(
        world["recordings"],  # type: ignore[arg-type]
        world["artists"],  # type: ignore[arg-type]
        world["outside"][:40],  # type: ignore[index]
        method="asnorm",
        top_n=7,
    )
    again = ArtistModel.from_bytes(model.to_bytes())
    probe = world["unseen"][2]  # type: ignore[index]
    assert np.allclose(again.scores(probe), model.scores(probe))
    assert again.describe() == model.describe()
    with pytest.raises(ValueError):
        fit_artist_model({}, {}, [], method="asnorm")
    with pytest.raises(ValueError, match="unknown"):
        fit_artist_model(world["recordings"], world["artists"], world["outside"], method="plda")  # type: ignore[arg-type]


def test_calibration_keeps_outside_false_blocks_within_budget_and_finds_artists(
    world: dict[str, object],
) -> None:
    cohort = make_cohort(world["outside"])  # type: ignore[arg-type]
    result = calibrate_artist_model(
        world["recordings"],  # type: ignore[arg-type]
        world["artists"],  # type: ignore[arg-type]
        cohort,
        rate=0.01,
        method="snorm",
    )
    assert result.false_block_rate <= 0.01
    assert result.threshold >= normal_tail_at(result.tail, 0.01)
    assert result.negative_tracks == 40
    assert result.snapshot_positives == 9  # every recording's artist has two others
    assert result.snapshot_recall is not None and result.snapshot_recall >= 0.8
    entry = result.thresholds_entry(cohort)
    assert entry["cohort"]["tracks"] == {"cohort": 40, "calibration": 40}
    assert entry["method"] == "snorm"


def test_cohort_file_round_trips_and_refuses_another_embedder(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tracks = [rng.standard_normal((5, DIM)).astype(np.float32) for _ in range(4)]
    path = tmp_path / "cohort.npz"
    sha = write_cohort(
        path,
        embedder_sha256="a" * 64,
        tracks=tracks,
        roles=["cohort", "calibration", "cohort", "calibration"],
        meta=[{"artist": "x", "licence": "GPL-2.0-or-later", "package": "p"}] * 4,
    )
    cohort = load_cohort(path, embedder_sha256="a" * 64)
    assert cohort.sha256 == sha
    assert len(cohort.part("cohort")) == 2
    assert np.allclose(cohort.tracks[1], tracks[1], atol=1e-2)  # stored as float16
    with pytest.raises(GateUnavailable, match="made with embedder"):
        load_cohort(path, embedder_sha256="b" * 64)
    path.write_bytes(b"not a cohort")
    with pytest.raises(GateUnavailable, match="cannot be read"):
        load_cohort(path, embedder_sha256="a" * 64)


def test_cohort_leaves_out_snapshot_members(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    path = tmp_path / "cohort.npz"
    write_cohort(
        path,
        embedder_sha256="a" * 64,
        tracks=[rng.standard_normal((3, DIM)).astype(np.float32) for _ in range(4)],
        roles=["cohort", "calibration", "cohort", "calibration"],
        meta=[{"artist": "x", "sha256": f"{i:064x}"} for i in range(4)],
        levels=[np.zeros(3) for _ in range(4)],
    )
    cohort = load_cohort(path, embedder_sha256="a" * 64)
    kept = cohort.excluding([f"{1:064x}", "f" * 64])
    assert kept.roles == ["cohort", "cohort", "calibration"]
    assert len(kept.part("calibration")) == 1
    assert kept.sha256 == cohort.sha256
    assert kept.describe()["excluded_as_members"] == 1
    assert cohort.excluding([]) is cohort


def test_gate_fails_closed_without_a_sound_artist_model(session: Session) -> None:
    """An index calibrated with an artist model loads only with that model intact."""
    from generation.gate import SimilarityGate
    from generation.index import load_index, store_artist_model, store_thresholds
    from provenance.models import EmbeddingIndex
    from tests.common.audio import tone_clip
    from tests.common.gate import StandInEmbedder, build_demo_index, make_run

    embedder = StandInEmbedder()
    run = make_run(session)
    index = build_demo_index(session, embedder, run)
    row = session.get(EmbeddingIndex, index.row_id)
    assert row is not None
    rng = np.random.default_rng(3)
    windows = {rec: embedder.embed_audio(tone_clip([200.0 + rec], seed=rec)) for rec in (1, 2)}
    cohort = [rng.standard_normal((3, windows[1].shape[1])).astype(np.float32) for _ in range(6)]
    model = fit_artist_model(windows, {1: [101], 2: [102]}, cohort, method="snorm")
    entry = {
        "threshold": 3.0,
        "tail": {"mean": 0.0, "sd": 1.0, "rate": 0.003},
        "sha256": store_artist_model(row, model),
    }
    store_thresholds(session, row, {**(row.thresholds or {}), "artist_model": entry})
    loaded = load_index(session, run, embedder_sha256=embedder.sha256)
    assert loaded.artist_model is not None
    result = SimilarityGate(loaded, embedder).check(tone_clip([440.0]))
    assert result.extra["artist_method"] == "snorm"
    assert {a["party_id"] for a in result.artist_scores} == {101, 102}
    # A tampered model file: no gate.
    assert loaded.path is not None
    (loaded.path / "artist_model.npz").write_bytes(model.to_bytes() + b"\0")
    with pytest.raises(GateUnavailable, match="corrupt"):
        load_index(session, run, embedder_sha256=embedder.sha256)
    # A malformed calibration entry: no gate.
    (loaded.path / "artist_model.npz").write_bytes(model.to_bytes())
    store_thresholds(
        session, row, {**(row.thresholds or {}), "artist_model": {**entry, "threshold": "x"}}
    )
    with pytest.raises(GateUnavailable, match="malformed"):
        SimilarityGate(load_index(session, run, embedder_sha256=embedder.sha256), embedder)


def test_silent_windows_do_not_count_as_a_replay(session: Session) -> None:
    """Digital silence embeds alike in every track: a silent clip must not "match" the
    silences of a training recording (it did, and blocked innocent music)."""
    from generation.gate import QUIET_DBFS, SimilarityGate
    from tests.common.audio import tone_clip
    from tests.common.gate import (
        HOP_S,
        SR,
        WINDOW_S,
        StandInEmbedder,
        build_demo_index,
        make_run,
    )

    class SilenceAlike(StandInEmbedder):
        """Like MSD-musicnn, gives every near-silent window the same embedding."""

        def _window(self, wave: np.ndarray) -> np.ndarray:
            if np.sqrt(np.mean(wave**2)) < 1e-3:
                return self.projection[0] / np.linalg.norm(self.projection[0])
            return super()._window(wave)

    class LevelledStandIn(SilenceAlike):
        def window_levels_db(self, wave: np.ndarray) -> np.ndarray:
            size, hop = int(WINDOW_S * SR), int(HOP_S * SR)
            wave = np.pad(wave, (0, max(0, size - wave.size)))
            starts = range(0, wave.size - size + 1, hop)
            rms = [np.sqrt(np.mean(wave[s : s + size] ** 2)) for s in starts]
            return 20 * np.log10(np.maximum(rms, 1e-12))

    def hiss(seconds: float, seed: int) -> np.ndarray:  # dithered silence, about -80 dBFS
        return 1e-4 * np.random.default_rng(seed).standard_normal(int(seconds * SR))

    silence_then_tone = np.concatenate([hiss(20, 1), tone_clip([330.0], seconds=20)])
    training = {1: silence_then_tone.astype(np.float32), 2: tone_clip([500.0], seconds=40)}
    run = make_run(session)
    silent = hiss(10, 2).astype(np.float32)
    plain = SilenceAlike()
    index = build_demo_index(session, plain, run, training=training, track_threshold=0.95)
    assert SimilarityGate(index, plain).check(silent).track_similarity > 0.95  # the old flaw
    levelled = LevelledStandIn()
    result = SimilarityGate(index, levelled).check(silent)
    assert result.track_similarity == 0.0 and result.verdict == "allow", result.reasons
    assert result.thresholds["effective"]["quiet_windows"] == 1
    assert QUIET_DBFS < -30
    # Sound is still compared: the tone part of recording 1 is found.
    loud = SimilarityGate(index, levelled).check(tone_clip([330.0], seconds=10))
    assert loud.nearest["recording_id"] == 1 and loud.verdict == "block"
