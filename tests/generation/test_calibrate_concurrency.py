"""`fairchord gate calibrate` holds no transaction during its long work: on SQLite, where a
transaction holds the write lock, a `consent add` made while it calibrates succeeds."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from flows.cli import app
from provenance.models import ConsentEvent, EmbeddingIndex, Recording
from provenance.settings import DB_URL_ENV
from tests.common.audio import melody
from tests.common.gate import melody_cohort, stand_in_cohort
from tests.common.generation import Trained, build_world

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_consent_add_succeeds_while_gate_calibrate_runs(
    session: Session,
    db_url: str,
    tmp_path: Path,
    trained: Trained,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import soundfile as sf

    import generation.calibrate
    from flows.calibrate import calibrate_flow
    from flows.local_runs import run_flow

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

    # Hold the calibration inside its long work until the consent change has gone through.
    inside, release = threading.Event(), threading.Event()
    real = generation.calibrate.calibrate_thresholds

    def paused(*args: Any, **kwargs: Any) -> Any:
        inside.set()
        assert release.wait(120), "the test never released the calibration"
        return real(*args, **kwargs)

    monkeypatch.setattr("generation.calibrate.calibrate_thresholds", paused)
    outcome: dict[str, Any] = {}

    def calibrate() -> None:
        try:
            outcome["report"] = run_flow(
                calibrate_flow, checkpoint_id=world.checkpoint_id, clip_seconds=10.0
            )
        except BaseException as exc:  # reported below, on the test's thread
            outcome["error"] = exc
        finally:
            inside.set()

    calibrating = threading.Thread(target=calibrate, daemon=True)
    calibrating.start()
    try:
        assert inside.wait(300), "the calibration never reached its long work"
        assert "error" not in outcome, outcome.get("error")
        added: dict[str, Any] = {}
        adding = threading.Thread(
            target=lambda: added.update(
                result=CliRunner().invoke(
                    app, ["consent", "add", "--party", "Will Savino", "--opt-out", "--json"]
                )
            ),
            daemon=True,
        )
        adding.start()
        # On a held write lock this would wait out SQLite's 60 s busy timeout and fail.
        adding.join(timeout=30)
        assert not adding.is_alive(), "consent add waited for the calibration's write lock"
        result = added["result"]
        assert result.exit_code == 0, result.output
    finally:
        release.set()
        calibrating.join(timeout=300)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["report"]["thresholds"]["fingerprint"]["recordings"] == len(world.recordings)
    session.expire_all()
    assert session.query(ConsentEvent).filter_by(origin="cli").count() == 1
    index = session.query(EmbeddingIndex).order_by(EmbeddingIndex.id.desc()).first()
    assert index is not None and index.thresholds is not None
