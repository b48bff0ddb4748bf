"""A run without a gate index is told which command builds one, and that command exists and does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from flows.cli import app
from generation.calibrate import calibrate_run, default_transforms
from generation.index import BUILD_INDEX_COMMAND, GateUnavailable, load_index
from tests.common.audio import tone_clip
from tests.common.gate import TRAINING, StandInEmbedder, make_run, stand_in_cohort


def advised_commands(error: GateUnavailable) -> list[str]:
    return re.findall(r"`(fairchord [^`]+)`", str(error))


def test_the_advice_names_a_command_of_the_cli(session: Session) -> None:
    run = make_run(session)
    with pytest.raises(GateUnavailable, match="no gate index") as caught:
        load_index(session, run, embedder_sha256=StandInEmbedder().sha256)
    assert advised_commands(caught.value) == [BUILD_INDEX_COMMAND]
    words = BUILD_INDEX_COMMAND.split()
    assert words[0] == "fairchord"
    result = CliRunner().invoke(app, [*words[1:], "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: fairchord " + " ".join(words[1:]) in result.output


def test_the_advised_calibration_builds_the_missing_index(session: Session, tmp_path: Path) -> None:
    """The CLI's calibration always brings the outside-music cohort; with it, calibrating a
    run that has no gate index builds the index first, so following the advice works."""
    embedder = StandInEmbedder()
    run = make_run(session)
    with pytest.raises(GateUnavailable, match="no gate index"):
        load_index(session, run, embedder_sha256=embedder.sha256)
    clips = {rec: tone_clip(freqs, seconds=20.0, seed=rec) for rec, (_, freqs) in TRAINING.items()}
    calibrate_run(
        session,
        run,
        embedder=embedder,
        clips=clips,
        recordings=clips,
        transforms=default_transforms(["gain_-6db", "noise_20db"]),
        cohort=stand_in_cohort(embedder, tmp_path / "cohort.npz"),
        artists={rec: [artist] for rec, (artist, _) in TRAINING.items()},
    )
    index = load_index(session, run, embedder_sha256=embedder.sha256)
    assert set(index.recording_ids.tolist()) == set(TRAINING)
