"""`torchrun --nproc-per-node 2 -m training.torchrun --spec` on a real snapshot, two gloo ranks.

The train flow freezes the snapshot of the tone corpus and writes its spec; torchrun then
trains on the spec's run for real (two processes) and rank 0 records its checkpoints on the
run, with the headers a single-process run writes. A spec that adds a recording the snapshot
left out (the CC-BY-NC one, with its true sha256, so its shard rows match) is refused on
both ranks before any shard is read, and nothing is recorded.

SQLite only: each engine costs the whole setup again (a debug CLAP, the flow) plus two
launches of two processes; the database reads and writes torchrun makes are the flow's own
functions, which tests/flows/test_train_flow.py runs on PostgreSQL too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from flows.train import run_dir, train_flow, uri_to_path
from provenance.audit.integrity import verify_everything
from provenance.db import session_factory
from provenance.hashing import sha256_file
from provenance.models import Checkpoint, Recording, TrainingRun
from provenance.snapshot import leaf_hash, merkle_root, run_members, verify_snapshot
from tests.common.trainable_corpus import trainable_tone_corpus
from training.checkpoint import CheckpointMeta, load_resume_state, read_meta

REPO = Path(__file__).resolve().parents[2]
# The provenance a checkpoint header carries: a 2-rank checkpoint must match the flow's.
PROVENANCE = (
    "mel_config",
    "mel_config_hash",
    "clap_sha256",
    "training_run_id",
    "snapshot_digest",
    "run_name",
    "audit_head",
)


def run_torchrun(spec: dict[str, Any], path: Path, db_url: str) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node 2 -m training.torchrun --spec PATH``."""
    path.write_text(json.dumps(spec), encoding="utf-8")
    env = {**os.environ, "FAIRCHORD_DB_URL": db_url, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        + ["-m", "training.torchrun", "--spec", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def provenance_of(meta: CheckpointMeta) -> dict[str, Any]:
    return {name: getattr(meta, name) for name in PROVENANCE}


def recomputed_digest(session: Session, run_id: int) -> str:
    """The Merkle root over the leaves recomputed from the member rows' facts."""
    return merkle_root(
        [
            leaf_hash(
                recording_id=m.recording_id,
                sha256=m.sha256,
                concluded_licence=m.concluded_licence,
                licence_assertion_id=m.licence_assertion_id,
                consent_state=m.consent_state,
                consent_event_id=m.consent_event_id,
            )
            for m in run_members(session, run_id)
        ]
    )


@pytest.mark.slow  # a debug CLAP, one flow step, two launches of two ranks: ~1 min
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_two_gloo_ranks_train_on_the_snapshot_and_record_like_the_flow(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    ids, clap = trainable_tone_corpus(db_url, tmp_path / "audio", embed=False)
    summary = train_flow(
        policy="commercial", config_name="debug", max_steps=1, db_url=db_url, progress=False
    )
    run_id = summary["training_run_id"]
    spec = json.loads((run_dir(run_id) / "spec.json").read_text())
    # Other steps than the flow's single one, so other weights: new rows, a mid-run one too.
    spec["config"].update(max_steps=3, checkpoint_every=2)
    spec["out_dir"] = str(tmp_path / "ddp")

    proc = run_torchrun(spec, tmp_path / "spec.json", db_url)
    assert proc.returncode == 0, proc.stderr[-3000:]

    factory = session_factory(engine)
    with factory() as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        flow_final = session.execute(
            select(Checkpoint).where(Checkpoint.training_run_id == run_id, Checkpoint.step == 1)
        ).scalar_one()
        recorded = (
            session.execute(
                select(Checkpoint)
                .where(Checkpoint.training_run_id == run_id, Checkpoint.step > 1)
                .order_by(Checkpoint.step)
            )
            .scalars()
            .all()
        )
        # Rank 0 alone recorded both checkpoints, once each, by the digest of the file.
        assert [(c.step, c.is_final) for c in recorded] == [(2, False), (3, True)]
        single = provenance_of(read_meta(uri_to_path(flow_final.uri)))
        for row in recorded:
            path = uri_to_path(row.uri)
            assert path.parent == tmp_path / "ddp"
            assert row.sha256 == sha256_file(path)
            meta = read_meta(path)
            assert meta.step == row.step
            assert provenance_of(meta) == single  # the single-process run's headers
            assert meta.snapshot_digest == run.members_digest == summary["members_digest"]
            assert meta.audit_head == run.audit_head and meta.clap_sha256 == clap["sha256"]
        assert load_resume_state(uri_to_path(recorded[0].uri)).train_state["world_size"] == 2
        # The members' digest, recomputed from the member rows, is the run's.
        assert recomputed_digest(session, run_id) == run.members_digest
        assert verify_snapshot(session, run_id) == []
        report = verify_everything(session)
        assert report.ok, report.discrepancies
        nc = session.get(Recording, ids["d"])
        assert nc is not None
        count = session.execute(select(func.count()).select_from(Checkpoint)).scalar_one()
    materialised = json.loads((tmp_path / "ddp" / "materialised.json").read_text())
    assert set(materialised["recordings"]) <= set(summary["members"])

    # The CC-BY-NC recording slipped into the spec, with its true sha256: refused, on both ranks.
    tampered = {**spec, "out_dir": str(tmp_path / "tampered")}
    tampered["members"] = {**spec["members"], str(nc.id): nc.sha256}
    proc = run_torchrun(tampered, tmp_path / "tampered.json", db_url)
    assert proc.returncode != 0
    refusal = f"refusing to train: {tmp_path / 'tampered.json'} does not describe training run"
    assert proc.stderr.count(refusal) == 2, proc.stderr[-3000:]  # one line per rank
    assert f"recordings [{nc.id}] are not members of training run {run_id}" in proc.stderr
    assert not (tmp_path / "tampered").exists()
    with factory() as session:
        after = session.execute(select(func.count()).select_from(Checkpoint)).scalar_one()
        assert after == count
