"""Editable rows are checked against the events that set them: one UPDATE of a gate index's
thresholds closes the gate and fails `audit verify`; so do edits of a training run's recorded
facts and a policy file changed without a version bump."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from generation.index import GateUnavailable, build_index_for_run, load_index, store_thresholds
from provenance.audit.integrity import verify_everything
from provenance.audit_log import append_event
from provenance.db import session_factory
from provenance.models import TrainingRun
from provenance.policies import load_policy
from tests.common.gate import make_run
from tests.common.ledger import as_admin

THRESHOLDS = {
    "track": 0.93,
    "artist": 0.81,
    "search": {"mode": "exact", "recall": 1.0},
}


def _problems(engine: Engine, kind: str) -> list[str]:
    with session_factory(engine)() as s:
        return [str(d) for d in verify_everything(s).discrepancies if d.kind == kind]


def _calibrated_index(engine: Engine) -> int:
    with session_factory(engine).begin() as s:
        run = make_run(s)
        vectors = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
        row = build_index_for_run(
            s,
            run.id,
            embeddings=vectors,
            recording_ids=list(range(1, 9)),
            segment_index=[0] * 8,
            artist_ids=[[1]] * 8,
            embedder_sha256="ee" * 32,
            snapshot_digest=run.members_digest,
        )
        store_thresholds(s, row, THRESHOLDS)
        return run.id


def _load(engine: Engine, run_id: int) -> None:
    with session_factory(engine)() as s:
        run = s.get(TrainingRun, run_id)
        assert run is not None
        load_index(s, run)


def test_thresholds_updated_in_one_row_close_the_gate_and_fail_verify(engine: Engine) -> None:
    run_id = _calibrated_index(engine)
    _load(engine, run_id)  # as calibrated: loads
    assert _problems(engine, "thresholds") == []

    as_admin(
        engine,
        [
            'UPDATE embedding_indexes SET thresholds = \'{"track": 2.0, "artist": 2.0, '
            '"fingerprint": {"threshold": 1000000000, "sha256": null}, '
            '"search": {"mode": "exact", "recall": 1.0}}\''
        ],
    )
    with pytest.raises(GateUnavailable, match="differ from those audit event"):
        _load(engine, run_id)
    problems = _problems(engine, "thresholds")
    assert len(problems) == 1
    assert problems[0].startswith("thresholds gate index 1: gate index 1's thresholds")
    assert "differ from those audit event" in problems[0]


def test_search_mode_edited_alone_is_caught(engine: Engine) -> None:
    run_id = _calibrated_index(engine)
    with engine.begin() as conn:  # an ordinary UPDATE: the column is editable by design
        conn.exec_driver_sql(
            'UPDATE embedding_indexes SET thresholds = \'{"track": 0.93, "artist": 0.81, '
            '"fingerprint": {"threshold": 12, "sha256": null}, '
            '"search": {"mode": "ivf", "recall": 0.5}}\''
        )
    with pytest.raises(GateUnavailable):
        _load(engine, run_id)
    assert len(_problems(engine, "thresholds")) == 1


def test_thresholds_no_event_recorded_are_refused(session: Session) -> None:
    run = make_run(session)
    row = build_index_for_run(
        session,
        run.id,
        embeddings=np.eye(4, dtype=np.float32),
        recording_ids=[1, 2, 3, 4],
        segment_index=[0] * 4,
        artist_ids=[[1]] * 4,
        embedder_sha256="ee" * 32,
        snapshot_digest=run.members_digest,
    )
    row.thresholds = dict(THRESHOLDS)  # set without store_thresholds: no calibration event
    session.flush()
    with pytest.raises(GateUnavailable, match="no audit event recorded"):
        load_index(session, run)


def _snapshotted_run(engine: Engine, *, policy_sha256: str | None = None) -> int:
    policy = load_policy("commercial")
    with session_factory(engine).begin() as s:
        run = TrainingRun(
            policy_name=policy.name,
            policy_version=str(policy.version),
            policy_sha256=policy_sha256 or policy.sha256,
            config_name="debug",
            snapshot_at=make_run(s).snapshot_at,
            members_digest="d" * 64,
            member_count=0,
        )
        s.add(run)
        s.flush()
        append_event(
            s,
            "training_run.snapshotted",
            entity="training_run",
            entity_id=run.id,
            payload={
                "policy": run.policy_name,
                "policy_version": run.policy_version,
                "policy_sha256": run.policy_sha256,
                "config_name": "debug",
                "members_digest": run.members_digest,
                "member_count": 0,
            },
        )
        return run.id


def test_training_run_facts_are_checked_against_the_snapshot_event(engine: Engine) -> None:
    run_id = _snapshotted_run(engine)
    assert [p for p in _problems(engine, "training_run") if f"run {run_id}" in p] == []
    as_admin(
        engine, [f"UPDATE training_runs SET members_digest = '{'e' * 64}' WHERE id = {run_id}"]
    )
    problems = [p for p in _problems(engine, "training_run") if f"run {run_id}:" in p]
    assert len(problems) == 1 and "members_digest" in problems[0]


def test_a_policy_file_changed_without_a_version_bump_is_named(engine: Engine) -> None:
    _snapshotted_run(engine, policy_sha256="0" * 64)  # the chain saw other bytes for v1
    problems = _problems(engine, "policy")
    assert len(problems) == 1 and "edited without a version bump" in problems[0]
