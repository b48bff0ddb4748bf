"""Generation's gate with real parts: the LAION-CLAP towers, and `fairchord gate calibrate` and
`gate check` on a world with a tiny trained model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from flows.cli import app
from generation.checkpoint_checks import ClapMismatch
from generation.index import GateUnavailable
from generation.pipeline import generate
from generation.request import GenerationRequest
from provenance.models import Checkpoint, Recording
from provenance.settings import DB_URL_ENV
from tests.common.audio import melody, pitch_shift
from tests.common.gate import melody_cohort, stand_in_cohort
from tests.common.generation import PROMPT, PromptStandIn, Trained, add_index, build_world

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- the real CLAP ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_clap(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """LAION-CLAP's HTSAT-tiny + transformer towers (untrained), saved as our CLAP checkpoint."""
    from provenance.hashing import sha256_file
    from training.clap_embedder import (
        DEFAULT_AMODEL,
        DEFAULT_TMODEL,
        ClapEmbedder,
        build_clap_module,
    )

    torch.manual_seed(0)
    module = build_clap_module()
    module.model.eval()
    path = tmp_path_factory.mktemp("clap") / "clap.pt"
    config = {"amodel": DEFAULT_AMODEL, "tmodel": DEFAULT_TMODEL}
    torch.save({"state_dict": module.model.state_dict(), "config": config}, path)
    return ClapEmbedder(module=module, sha256=sha256_file(path), path=path, config=config)


def test_real_clap_conditions_and_gates(tmp_path: Path, trained: Trained, real_clap: Any) -> None:
    from provenance import migrate
    from provenance.db import make_engine, session_factory
    from tests.common.databases import throwaway_database

    with throwaway_database("sqlite", tmp_path) as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        with session_factory(engine)() as session:
            world = build_world(session, tmp_path, trained, index=False, embedder=real_clap)
            # An untrained CLAP finds all audio alike (cosine ~0.7-0.9), so the thresholds
            # sit near 1; what is tested is the wiring of the real towers, not their taste.
            add_index(session, world, real_clap, thresholds={"track": 0.999, "artist": 0.999})
            checkpoint = session.get(Checkpoint, world.checkpoint_id)
            assert checkpoint is not None
            request = GenerationRequest(
                prompt=PROMPT, seconds=2.0, steps=3, n=1, seed=5, out_dir=world.out
            )
            outcome = generate(
                session, request, checkpoint=checkpoint, load_embedder=lambda: real_clap
            )
            assert outcome.status == "allowed", outcome.to_json()
            clip = outcome.clips[0]
            assert clip.sidecar_path is not None and clip.audio_path is not None
            sidecar = json.loads(clip.sidecar_path.read_text())
            assert sidecar["embedder_sha256"] == real_clap.sha256
            assert 0 < sidecar["gate"]["track_similarity"] < 0.999
            # A CLAP file that is not the checkpoint's is refused before sampling.
            impostor = PromptStandIn()
            with pytest.raises(ClapMismatch, match="trained with CLAP"):
                generate(session, request, checkpoint=checkpoint, load_embedder=lambda: impostor)
            assert issubclass(ClapMismatch, GateUnavailable)
            session.commit()
        engine.dispose()


# --- calibration through the CLI ------------------------------------------------------------


def test_cli_calibrate_fingerprints_members_and_gate_check_catches_a_pitched_copy(
    session: Session,
    db_url: str,
    tmp_path: Path,
    trained: Trained,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`fairchord gate calibrate` fingerprints every member recording and stores thresholds;
    `fairchord gate check` then blocks a pitch-shifted member by its fingerprints."""
    import soundfile as sf

    world = build_world(session, tmp_path, trained)
    for i, rid in enumerate(world.recordings):
        rec = session.get(Recording, rid)
        assert rec is not None and rec.object_uri is not None
        sf.write(rec.object_uri, melody(i + 1), 16_000, format="WAV")
    session.commit()
    monkeypatch.setenv(DB_URL_ENV, db_url)
    monkeypatch.setattr("generation.gate_models.load_gate_embedder", lambda: world.embedder)
    cohort = stand_in_cohort(world.embedder, tmp_path / "cohort.npz")
    monkeypatch.setattr("generation.gate_models.load_gate_cohort", lambda _sha: cohort)
    tunes = melody_cohort(tmp_path / "melody_cohort.npz", range(100, 106))
    monkeypatch.setattr("generation.gate_models.load_gate_melody_cohort", lambda: tunes)
    checkpoint = ["--checkpoint", str(world.checkpoint_id)]
    result = CliRunner().invoke(
        app, ["gate", "calibrate", *checkpoint, "--clip-seconds", "10", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["thresholds"]["fingerprint"]["recordings"] == len(world.recordings)
    assert report["thresholds"]["fingerprint"]["threshold"] >= 10
    assert report["combined_false_block_rate"] <= 0.01
    # The artist model is enrolled on the snapshot and calibrated on the cohort.
    model_entry = report["thresholds"]["artist_model"]
    assert model_entry["cohort"]["sha256"] == cohort.sha256
    assert model_entry["negative_tracks"] == len(cohort.part("calibration"))
    assert report["outside_negatives"] == len(cohort.part("calibration"))
    # So is the melody detector, on the outside tunes, with a quarter of the budget.
    melody_entry = report["thresholds"]["melody"]
    assert melody_entry["cohort_sha256"] == tunes.sha256
    assert melody_entry["outside_negatives"]["window"] == len(tunes)
    assert melody_entry["rate"] == pytest.approx(0.01 / 4)
    assert melody_entry["recordings"] == len(world.recordings)
    # The detector is recorded with its provenance.
    from provenance.models import Embedder

    session.expire_all()
    detector = session.query(Embedder).filter_by(sha256=world.embedder.sha256).one()
    assert detector.config["cohort"]["tracks"]["calibration"] == len(cohort.part("calibration"))
    assert detector.config["melody_cohort"]["sha256"] == tunes.sha256
    session.commit()  # end the read transaction: SQLite would stay locked
    copy = tmp_path / "copy.wav"
    sf.write(copy, pitch_shift(melody(2), 2)[: 16_000 * 10], 16_000)
    other = tmp_path / "other.wav"
    sf.write(other, melody(77)[: 16_000 * 10], 16_000)
    args = ["gate", "check", str(copy), str(other), *checkpoint, "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 5, result.output
    # JSON Lines: one compact object per file, in order.
    copied, unrelated = (json.loads(line) for line in result.stdout.splitlines())
    assert copied["file"] == str(copy) and copied["verdict"] == "block"
    assert copied["extra"]["fingerprint"]["recording_id"] == world.recordings[1]
    assert copied["detector_scores"]["fingerprint"] >= 10
    assert unrelated["file"] == str(other)
    assert unrelated["detector_scores"]["fingerprint"] < 10, unrelated
