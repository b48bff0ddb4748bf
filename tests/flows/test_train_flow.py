"""The `train` flow for real: snapshot, training, checkpoints recorded, gate index, run finished;
then `python -m training.torchrun --spec` on the spec it wrote, which refuses a spec that
describes the run otherwise than the database (digest, audit head, mel config, a member's sha256).

On a tiny featurized corpus (four one-segment tone recordings, one CC-BY-NC) with a debug
CLAP trained and used to embed every segment, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from flows.train import run_dir, train_flow, uri_to_path
from provenance.audit.integrity import verify_everything
from provenance.db import session_factory
from provenance.hashing import sha256_file
from provenance.models import Checkpoint, TrainingRun, TrainingRunMember
from tests.common.trainable_corpus import trainable_tone_corpus
from training import torchrun
from training.checkpoint import read_meta


@pytest.mark.slow  # a debug CLAP, every segment embedded, two diffusion steps: ~1 min per engine
def test_train_flow_records_what_it_trained_on(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, clap = trainable_tone_corpus(db_url, tmp_path / "audio")

    summary = train_flow(
        policy="commercial", config_name="debug", max_steps=2, db_url=db_url, progress=False
    )

    # The snapshot holds the three commercially eligible recordings, not the CC-BY-NC one.
    assert summary["members"] == sorted(ids[t] for t in "abc")
    run_id = summary["training_run_id"]
    trained = summary["train"]
    assert trained["step"] == 2 and trained["clap_sha256"] == clap["sha256"]
    # Only members' rows were read (the ledger the flow writes beside the run).
    materialised = json.loads((run_dir(run_id) / "materialised.json").read_text())
    assert set(materialised["recordings"]) <= set(summary["members"])
    with session_factory(engine)() as session:
        check_recorded_run(session, run_id, summary)
    # The gate index over the members' segment embeddings was built.
    assert summary["gate_index"]["built"], summary["gate_index"]
    assert summary["gate_index"]["vectors"] == 3

    # The torchrun entry reads the spec the flow wrote with the same loader and records
    # its checkpoints on the same run (one more step, so other weights: a new row).
    spec = json.loads((run_dir(run_id) / "spec.json").read_text())
    spec["config"]["max_steps"] = 3
    spec["out_dir"] = str(tmp_path / "torchrun-out")
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    monkeypatch.setenv("FAIRCHORD_DB_URL", db_url)
    assert torchrun.main(["--spec", str(spec_path)]) == 0
    assert (tmp_path / "torchrun-out" / "materialised.json").is_file()
    with session_factory(engine)() as session:
        rows = session.execute(
            select(Checkpoint).where(Checkpoint.training_run_id == run_id, Checkpoint.step == 3)
        ).scalars()
        [recorded] = list(rows)
        assert recorded.sha256 == sha256_file(tmp_path / "torchrun-out" / "final.safetensors")
        count = session.execute(select(func.count()).select_from(Checkpoint)).scalar_one()

    # A spec that says anything else about its run than the database does is refused.
    member = next(iter(spec["members"]))
    for run_info, members in [
        ({"snapshot_digest": "0" * 64}, {}),
        ({"audit_head": "1:" + "0" * 64}, {}),
        ({"mel_config_hash": "0" * 16}, {}),
        ({}, {member: "0" * 64}),
    ]:
        refused = {
            **spec,
            "out_dir": str(tmp_path / "refused"),
            "run_info": {**spec["run_info"], **run_info},
            "members": {**spec["members"], **members},
        }
        spec_path.write_text(json.dumps(refused))
        assert torchrun.main(["--spec", str(spec_path)]) == 2, (run_info, members)
    assert not (tmp_path / "refused").exists()
    with session_factory(engine)() as session:
        assert session.execute(select(func.count()).select_from(Checkpoint)).scalar_one() == count


def check_recorded_run(session: Session, run_id: int, summary: dict) -> None:
    run = session.get(TrainingRun, run_id)
    assert run is not None and run.status == "finished"
    members = session.execute(
        select(TrainingRunMember.recording_id).where(TrainingRunMember.training_run_id == run_id)
    ).scalars()
    assert sorted(members) == summary["members"]
    checkpoints = (
        session.execute(select(Checkpoint).where(Checkpoint.training_run_id == run_id))
        .scalars()
        .all()
    )
    finals = [c for c in checkpoints if c.is_final]
    assert len(finals) == 1
    final = finals[0]
    path = uri_to_path(final.uri)
    # The row names the file by its digest, and the file's header names the snapshot.
    assert final.sha256 == sha256_file(path) == summary["train"]["final_sha256"]
    meta = read_meta(path)
    assert meta.training_run_id == run_id
    assert meta.snapshot_digest == summary["members_digest"]
    report = verify_everything(session)
    assert report.ok, report.discrepancies
