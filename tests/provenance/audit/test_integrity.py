"""`audit verify` finds a corrupted object, shard, log row and checkpoint, each by name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from provenance.audit.integrity import verify_everything
from provenance.models import FeatureSet, FeatureShard
from tests.common.ledger import build_recorded_run


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _add_feature_set(session: Session, root: Path) -> Path:
    shard = root / "features" / "shard-00000.arrow"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"arrow stream bytes")
    sha = hashlib.sha256(shard.read_bytes()).hexdigest()
    manifest = root / "features" / "manifest.json"
    manifest.write_text(json.dumps({"shards": [{"path": shard.name, "sha256": sha, "rows": 1}]}))
    fs = FeatureSet(
        mel_config_hash="c" * 64,
        mel_config={},
        root_uri=str(shard.parent),
        manifest_uri=str(manifest),
        manifest_sha256=hashlib.sha256(manifest.read_bytes()).hexdigest(),
    )
    session.add(fs)
    session.flush()
    session.add(FeatureShard(feature_set_id=fs.id, uri=str(shard), sha256=sha, rows=1))
    session.flush()
    return shard


def _tamper_log_row(session: Session, row_id: int) -> None:
    """Edit an audit_log row behind the triggers' back, as an attacker with DB access would."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("DROP TRIGGER audit_log_no_update"))
        session.execute(
            text("UPDATE audit_log SET actor = 'mallory' WHERE id = :id"), {"id": row_id}
        )
        session.execute(
            text(
                "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'append-only table audit_log: UPDATE rejected'); END"
            )
        )
    else:
        session.execute(text("SET LOCAL session_replication_role = replica"))
        session.execute(
            text("UPDATE audit_log SET actor = 'mallory' WHERE id = :id"), {"id": row_id}
        )
        session.execute(text("SET LOCAL session_replication_role = origin"))


def test_everything_intact(session: Session, tmp_path: Path) -> None:
    build_recorded_run(session, tmp_path)
    _add_feature_set(session, tmp_path)
    report = verify_everything(session)
    assert report.ok, report.discrepancies
    assert report.checked["object"] == 3 and report.checked["checkpoint"] == 1
    assert report.checked["shard"] == 1 and report.checked["audit_log"] > 0


def test_each_kind_of_tamper_is_found(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    shard = _add_feature_set(session, tmp_path)
    victim = recorded.recordings[1]
    _flip_byte(recorded.objects[victim.id])
    _flip_byte(shard)
    _flip_byte(Path(recorded.checkpoint.uri))
    _tamper_log_row(session, 2)
    problems = [str(d) for d in verify_everything(session).discrepancies]
    assert any(p.startswith(f"object recording {victim.id}:") for p in problems), problems
    assert any(p.startswith("shard ") for p in problems), problems
    assert any(p.startswith(f"checkpoint {recorded.checkpoint.id}:") for p in problems), problems
    assert any(p.startswith("audit_log row 2") for p in problems), problems
    assert len(problems) == 4, problems


def test_missing_object_is_named(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    recorded.objects[recorded.recordings[0].id].unlink()
    problems = [str(d) for d in verify_everything(session).discrepancies]
    assert len(problems) == 1 and "missing file" in problems[0]


def test_a_gate_index_folder_is_checked_by_its_combined_digest(
    session: Session, tmp_path: Path
) -> None:
    from provenance.index_files import IDS_FILE, VECTORS_FILE, combined_sha256
    from provenance.models import EmbeddingIndex

    recorded = build_recorded_run(session, tmp_path)
    folder = tmp_path / "runs" / "1" / "gate-index" / "abc"
    folder.mkdir(parents=True)
    (folder / VECTORS_FILE).write_bytes(b"faiss vectors" * 100)
    (folder / IDS_FILE).write_text('{"recording_ids": [1]}')
    (folder / "meta.json").write_text('{"thresholds": {}}')  # not part of the identity

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    sha = combined_sha256(digest(folder / VECTORS_FILE), digest(folder / IDS_FILE))
    session.add(
        EmbeddingIndex(
            training_run_id=recorded.run.id,
            embedder_sha256="e" * 64,
            sha256=sha,
            uri=str(folder),
            vectors=1,
        )
    )
    session.commit()  # the commit covers the new ledger row in the audit chain
    report = verify_everything(session)
    assert report.ok, report.discrepancies
    assert report.checked["index"] == 1
    _flip_byte(folder / VECTORS_FILE)
    problems = [str(d) for d in verify_everything(session).discrepancies]
    assert len(problems) == 1 and problems[0].startswith("index "), problems


def test_calibrated_fingerprints_are_checked_against_their_recorded_digest(
    session: Session, tmp_path: Path
) -> None:
    from provenance.index_files import FINGERPRINTS_FILE
    from provenance.models import EmbeddingIndex

    recorded = build_recorded_run(session, tmp_path)
    folder = tmp_path / "gate-index"
    folder.mkdir()
    (folder / FINGERPRINTS_FILE).write_bytes(b"landmark quads" * 100)
    sha = hashlib.sha256((folder / FINGERPRINTS_FILE).read_bytes()).hexdigest()
    session.add(
        EmbeddingIndex(
            training_run_id=recorded.run.id,
            embedder_sha256="e" * 64,
            sha256="0" * 64,
            uri=str(folder),
            vectors=1,
            thresholds={"track": 0.9, "fingerprint": {"threshold": 10, "sha256": sha}},
        )
    )
    session.flush()
    report = verify_everything(session)
    assert report.checked["fingerprints"] == 1
    assert not [d for d in report.discrepancies if d.kind == "fingerprints"]
    _flip_byte(folder / FINGERPRINTS_FILE)
    problems = [d for d in verify_everything(session).discrepancies if d.kind == "fingerprints"]
    assert len(problems) == 1 and "sha256" in problems[0].detail, problems


@pytest.mark.parametrize("key", ["artist_model", "melody"])
def test_calibration_files_are_checked_against_their_recorded_digests(
    session: Session, tmp_path: Path, key: str
) -> None:
    from provenance.audit.integrity import CALIBRATION_FILES
    from provenance.index_files import ARTIST_MODEL_FILE, MELODY_FILE
    from provenance.models import EmbeddingIndex

    # The names verify checks are the names the gate writes.
    assert CALIBRATION_FILES == {"artist_model": ARTIST_MODEL_FILE, "melody": MELODY_FILE}
    name = CALIBRATION_FILES[key]
    recorded = build_recorded_run(session, tmp_path)
    folder = tmp_path / "gate-index"
    folder.mkdir()
    (folder / name).write_bytes(b"centroids, cohort and chroma" * 100)
    sha = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    session.add(
        EmbeddingIndex(
            training_run_id=recorded.run.id,
            embedder_sha256="e" * 64,
            sha256="0" * 64,
            uri=str(folder),
            vectors=1,
            thresholds={"track": 0.9, key: {"threshold": 3.0, "sha256": sha}},
        )
    )
    session.flush()
    report = verify_everything(session)
    assert report.checked[key] == 1
    assert not [d for d in report.discrepancies if d.kind == key]
    _flip_byte(folder / name)
    problems = [d for d in verify_everything(session).discrepancies if d.kind == key]
    assert len(problems) == 1 and "sha256" in problems[0].detail, problems


def test_partitioned_fingerprints_are_rehashed_file_by_file(
    session: Session, tmp_path: Path
) -> None:
    """The manifest against the thresholds' digest, every partition against the manifest."""
    import numpy as np

    from generation.fingerprint_store import quad_rows, write_store
    from provenance.index_files import FINGERPRINTS_DIR, FINGERPRINTS_LAYOUT
    from provenance.models import EmbeddingIndex

    recorded = build_recorded_run(session, tmp_path)
    folder = tmp_path / "gate-index"
    rng = np.random.default_rng(0)
    n = 5000
    rows = quad_rows(
        rng.integers(0, 1 << 24, n, dtype=np.uint32),
        rng.integers(1, 4, n),
        rng.integers(0, 10_000, n, dtype=np.int32),
        rng.integers(0, 80, n, dtype=np.int16),
        rng.integers(6, 96, n, dtype=np.int16),
    )
    sha = write_store(folder / FINGERPRINTS_DIR, [rows], {1: [7], 2: [7], 3: [8]}, partition_bits=2)
    entry = {"threshold": 10, "sha256": sha, "layout": FINGERPRINTS_LAYOUT}
    session.add(
        EmbeddingIndex(
            training_run_id=recorded.run.id,
            embedder_sha256="e" * 64,
            sha256="0" * 64,
            uri=str(folder),
            vectors=1,
            thresholds={"track": 0.9, "fingerprint": entry},
        )
    )
    session.flush()
    report = verify_everything(session)
    assert report.checked["fingerprints"] == 1 + 3 * 4  # the manifest, three files a partition
    assert not [d for d in report.discrepancies if d.kind == "fingerprints"]
    victim = folder / FINGERPRINTS_DIR / "part-0002.rows.npy"
    _flip_byte(victim)  # same size: only a re-hash sees it
    problems = [d for d in verify_everything(session).discrepancies if d.kind == "fingerprints"]
    assert len(problems) == 1, problems
    assert problems[0].ref.endswith(victim.name) and "sha256" in problems[0].detail
    manifest = folder / FINGERPRINTS_DIR / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"rows": 5000', '"rows": 5001'))
    problems = [d for d in verify_everything(session).discrepancies if d.kind == "fingerprints"]
    assert [p.ref for p in problems] == [f"index {problems[0].ref.split()[1]}"], problems
