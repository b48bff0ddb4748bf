"""A gate index in an S3 store (moto_server): published on build and calibration, checked in
place by audit verify, loaded on another machine from a verified mirror, refused when changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import Session

from generation.index import (
    GateUnavailable,
    build_index_for_run,
    load_index,
    store_melody,
    store_thresholds,
)
from provenance.audit.integrity import verify_everything
from provenance.index_files import IDS_FILE, MELODY_FILE, META_FILE, VECTORS_FILE
from tests.common.gate import make_run
from tests.common.s3 import S3Bucket

GATE_KINDS = ("index", "fingerprints", "artist_model", "melody")
EMBEDDER = "ee" * 32


def gate_problems(session: Session) -> list[str]:
    report = verify_everything(session)
    return [d.kind for d in report.discrepancies if d.kind in GATE_KINDS]


def test_gate_index_in_s3(
    session: Session, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FAIRCHORD_STORE_URL", f"{s3_bucket.url}/store")
    run = make_run(session)
    vectors = np.random.default_rng(0).standard_normal((12, 8)).astype(np.float32)
    row = build_index_for_run(
        session,
        run.id,
        embeddings=vectors,
        recording_ids=[1 + i // 4 for i in range(12)],
        segment_index=[i % 4 for i in range(12)],
        artist_ids=[[7]] * 12,
        embedder_sha256=EMBEDDER,
        snapshot_digest=run.members_digest,
    )
    prefix = f"store/indexes/run-{run.id}/{row.sha256[:12]}"
    assert row.uri == f"{s3_bucket.url}/{prefix}"
    client = s3_bucket.client()

    def keys() -> set[str]:
        listing = client.list_objects_v2(Bucket=s3_bucket.name, Prefix=prefix + "/")
        return {o["Key"].removeprefix(prefix + "/") for o in listing["Contents"]}

    assert keys() == {VECTORS_FILE, IDS_FILE, META_FILE}

    # Another machine (another cache) loads it from a mirror checked against the row, and
    # calibrates it there: the new file and meta.json are published.
    monkeypatch.setenv("FAIRCHORD_STAGING_DIR", str(tmp_path / "machine-2"))
    loaded = load_index(session, run, embedder_sha256=EMBEDDER)
    assert loaded.sha256 == row.sha256 and loaded.ntotal == 12
    assert loaded.path is not None and loaded.path.is_relative_to(tmp_path / "machine-2")
    melody_sha = store_melody(row, b"a serialised melody index")
    store_thresholds(session, row, {"track": 0.9, "melody": {"sha256": melody_sha}})
    assert keys() == {VECTORS_FILE, IDS_FILE, META_FILE, MELODY_FILE}
    assert gate_problems(session) == []
    assert verify_everything(session).checked["melody"] == 1

    client.put_object(Bucket=s3_bucket.name, Key=f"{prefix}/{VECTORS_FILE}", Body=b"changed")
    client.put_object(Bucket=s3_bucket.name, Key=f"{prefix}/{MELODY_FILE}", Body=b"changed")
    assert gate_problems(session) == ["index", "melody"]
    monkeypatch.setenv("FAIRCHORD_STAGING_DIR", str(tmp_path / "machine-3"))
    with pytest.raises(GateUnavailable, match="corrupt"):
        load_index(session, run, embedder_sha256=EMBEDDER)
