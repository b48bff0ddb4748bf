"""Training snapshots: Merkle proofs, the planted opt-out that never reaches the model, and
opt-outs recorded after a snapshot that leave the run unchanged."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import text
from sqlalchemy.orm import Session

from provenance.snapshot import (
    EMPTY_ROOT,
    leaf_hash,
    merkle_proof,
    merkle_root,
    verify_proof,
)
from training import shard_writer, shards
from training.mel import DEFAULT_MEL_CONFIG
from training.snapshot_data import MaterializationLedger, load_snapshot_segments, split_segments
from training.train_config import get_config
from training.train_loop import RunInfo, train

FRAMES = 128
PLANTED_LEVEL = 7.5  # the planted recording's mels hold only this value


class HashTextEmbedder:
    """A deterministic stand-in for ClapEmbedder.embed_text: unit vectors from a caption hash."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed_text(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
            out.append(v / np.linalg.norm(v))
        return np.stack(out)


def _leaves(n: int) -> list[str]:
    return [hashlib.sha256(f"leaf {i}".encode()).hexdigest() for i in range(n)]


# --- Merkle ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 33])
def test_every_member_has_a_proof_that_verifies(n: int) -> None:
    leaves = _leaves(n)
    root = merkle_root(leaves)
    for leaf in leaves:
        proof = merkle_proof(leaves, leaf)
        assert verify_proof(leaf, proof, root)
        assert len(proof) <= max(1, (n - 1).bit_length())
        assert not verify_proof(_leaves(n + 1)[-1], proof, root)  # a non-member
        if proof:
            side, sibling = proof[0]
            tampered = [(side, "0" * 64), *proof[1:]]
            assert not verify_proof(leaf, tampered, root)


def test_root_is_order_independent_and_sensitive_to_every_member() -> None:
    leaves = _leaves(6)
    assert merkle_root(leaves) == merkle_root(list(reversed(leaves)))
    assert merkle_root(leaves[:5]) != merkle_root(leaves)
    assert merkle_root([]) == EMPTY_ROOT
    assert merkle_root(leaves[:1]) == leaves[0]
    # An odd node is promoted, not duplicated: [a, b, c] and [a, b, c, c] cannot collide.
    with pytest.raises(ValueError, match="duplicate leaf"):
        merkle_root([*leaves[:3], leaves[2]])
    with pytest.raises(ValueError, match="not a member"):
        merkle_proof(leaves, "f" * 64)


def test_leaf_hash_covers_licence_and_consent_facts() -> None:
    base = dict(
        recording_id=3,
        sha256="a" * 64,
        concluded_licence="CC-BY-4.0",
        licence_assertion_id=5,
        consent_state="opted_in",
        consent_event_id=9,
    )
    h = leaf_hash(**base)  # type: ignore[arg-type]
    for key, other in [
        ("consent_event_id", 10),
        ("concluded_licence", "CC0-1.0"),
        ("sha256", "b" * 64),
    ]:
        assert leaf_hash(**{**base, key: other}) != h  # type: ignore[arg-type]


# --- the planted opted-out recording, loader level (no DB) -------------------------------------


def _write_feature_set(root: Path, recordings: dict[int, tuple[str, float, int]]) -> None:
    """One shard holding every recording (id → (sha256, mel level, segments)), in id order."""
    manifest = shard_writer.new_manifest(DEFAULT_MEL_CONFIG, frames=FRAMES, segment_config={})
    covered = {}
    with shard_writer.ShardWriter(root, n_mels=64, frames=FRAMES) as writer:
        for rid, (sha, level, n) in sorted(recordings.items()):
            rng = np.random.default_rng(rid)
            mels = (level + 0.1 * rng.standard_normal((n, 64, FRAMES))).astype(np.float16)
            if level == PLANTED_LEVEL:
                mels[:] = level
            writer.add_recording(
                shard_writer.segment_rows(
                    recording_id=rid,
                    recording_sha256=sha,
                    mels=mels,
                    start_s=[i * 1.28 for i in range(n)],
                    is_partial=[False] * n,
                    valid_frames=[FRAMES] * n,
                    captions=[f"caption of {rid}"] * n,
                    caption_methods=["test"] * n,
                    artist_ids=[rid * 10],
                    licence="CC0-1.0",
                )
            )
            covered[rid] = {"sha256": sha, "segments": n}
    assert len(writer.written) == 1  # all in the SAME shard
    covered = {k: {**v, "shard": writer.written[0].name} for k, v in covered.items()}
    shard_writer.write_manifest(
        root, shard_writer.add_shards_to_manifest(manifest, writer.written, covered)
    )


def _spy_on_mel_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the recording id of every row whose mel is turned into an array."""
    seen: list[int] = []
    original = shards.mel_array

    def spy(table):  # type: ignore[no-untyped-def]
        seen.extend(table.column("recording_id").to_pylist())
        return original(table)

    monkeypatch.setattr(shards, "mel_array", spy)
    return seen


def _train_and_watch(data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> set[int]:  # type: ignore[no-untyped-def]
    """Train two debug steps; return the recording ids of every row cropped into a batch."""
    seen: set[int] = set()
    original = type(data).crop_batch

    def spy(self, indices, **kwargs):  # type: ignore[no-untyped-def]
        seen.update(int(self.recording_ids[i]) for i in indices)
        x, mask, cond = original(self, indices, **kwargs)
        assert not torch.any(x == PLANTED_LEVEL)  # the planted mel values never reach a batch
        return x, mask, cond

    monkeypatch.setattr(type(data), "crop_batch", spy)
    train_data, val_data = split_segments(data, val_fraction=0.25, seed=0)
    config = get_config("debug", max_steps=2, crop_frames=64)
    train(
        config,
        train_data=train_data,
        val_data=val_data,
        out_dir=tmp_path / "run",
        run_info=RunInfo(snapshot_digest="x"),
        progress=False,
    )
    return seen


def test_planted_recording_in_the_same_shard_never_reaches_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recordings = {
        1: ("a" * 64, -4.0, 3),
        2: ("b" * 64, PLANTED_LEVEL, 4),  # planted between two members, same shard
        3: ("c" * 64, -6.0, 3),
        4: ("d" * 64, -5.0, 2),
    }
    root = tmp_path / "features"
    _write_feature_set(root, recordings)
    members = {1: "a" * 64, 3: "c" * 64, 4: "d" * 64}
    mel_reads = _spy_on_mel_reads(monkeypatch)
    ledger = MaterializationLedger()
    embedder = HashTextEmbedder()
    data = load_snapshot_segments(root, members, embedder=embedder, ledger=ledger)

    assert 2 not in mel_reads and set(mel_reads) == {1, 3, 4}
    assert sorted(ledger.rows) == [(1, 0), (1, 1), (1, 2), (3, 0), (3, 1), (3, 2), (4, 0), (4, 1)]
    assert sorted(set(data.recording_ids.tolist())) == [1, 3, 4]
    assert not torch.any(data.mels == PLANTED_LEVEL)
    assert [c for call in embedder.calls for c in call] == [
        "caption of 1",
        "caption of 3",
        "caption of 4",
    ]  # one embedding per unique caption; the planted caption is never embedded
    assert 2 not in _train_and_watch(data, tmp_path, monkeypatch)


def test_loader_refuses_rows_whose_content_differs_from_the_snapshot(tmp_path: Path) -> None:
    root = tmp_path / "features"
    _write_feature_set(root, {1: ("a" * 64, -4.0, 2)})
    with pytest.raises(ValueError, match="recording 1: shard sha256 a+ differs from the snapshot"):
        load_snapshot_segments(root, {1: "e" * 64}, embedder=HashTextEmbedder())
    with pytest.raises(ValueError, match="mel config"):
        load_snapshot_segments(
            root, {1: "a" * 64}, embedder=HashTextEmbedder(), expected_mel_config_hash="0" * 16
        )


# --- the planted opt-out through the provenance DB (needs the eligibility layer) ---------------


def _seed_catalog(session: Session, t0: dt.datetime) -> dict[str, int]:
    from provenance.consent import ConsentSubject, record_consent
    from provenance.licences import record_licence
    from provenance.models import Recording
    from provenance.parties import add_credit, get_or_create_party

    ids = {}
    for name in ("alpha", "planted", "gamma"):
        rec = Recording(
            sha256=hashlib.sha256(name.encode()).hexdigest(),
            size_bytes=1000,
            title=name,
            status="accepted",
            duration_s=3.0,
        )
        session.add(rec)
        session.flush()
        ids[name] = rec.id
        record_licence(session, recording_id=rec.id, declared="CC0-1.0", asserted_by="test")
        artist = get_or_create_party(session, f"Artist {name}")
        add_credit(session, recording_id=rec.id, party_id=artist.id, role="artist")
        # Opted in (so the test holds for opt-in-required and not-opted-out policies alike).
        record_consent(
            session,
            subject=ConsentSubject("recording", rec.id),
            action="opt_in",
            purpose="any",
            effective_at=t0 - dt.timedelta(days=10),
            origin="manifest",
        )
    record_consent(
        session,
        subject=ConsentSubject("recording", ids["planted"]),
        action="opt_out",
        purpose="any",
        effective_at=t0 - dt.timedelta(days=1),
        origin="cli",
    )
    return ids


def test_snapshot_excludes_opted_out_and_later_opt_outs_do_not_change_it(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip(
        "provenance.eligibility", reason="the eligibility layer (issue 2) is not merged yet"
    )
    from provenance.consent import ConsentSubject, record_consent
    from provenance.features import get_or_create_feature_set
    from provenance.models import AuditEvent, FeatureSetRecording, TrainingRunMember, utcnow
    from provenance.policies import load_policy
    from provenance.snapshot import (
        freeze_snapshot,
        member_sha256s,
        membership_proof,
        run_members,
        verify_snapshot,
    )

    # Licences are asserted "now", so the snapshot is taken just after.
    t0 = utcnow() + dt.timedelta(minutes=1)
    ids = _seed_catalog(session, t0)
    policy = load_policy("commercial")
    root = tmp_path / "features"
    shas = {name: hashlib.sha256(name.encode()).hexdigest() for name in ids}
    _write_feature_set(
        root,
        {
            ids["alpha"]: (shas["alpha"], -4.0, 3),
            ids["planted"]: (shas["planted"], PLANTED_LEVEL, 3),
            ids["gamma"]: (shas["gamma"], -6.0, 3),
        },
    )
    fs = get_or_create_feature_set(
        session,
        mel_config_hash=DEFAULT_MEL_CONFIG.hash(),
        mel_config=DEFAULT_MEL_CONFIG.to_dict(),
        root_uri=str(root),
    )
    for rid in ids.values():
        session.add(FeatureSetRecording(feature_set_id=fs.id, recording_id=rid, segments=3))
    session.flush()

    run = freeze_snapshot(
        session,
        policy=policy,
        config_name="debug",
        config={"name": "debug"},
        feature_set_id=fs.id,
        at=t0,
    )
    members = run_members(session, run.id)
    assert [m.recording_id for m in members] == sorted([ids["alpha"], ids["gamma"]])
    assert all(m.consent_state == "opted_in" and m.consent_event_id for m in members)
    assert all(m.concluded_licence == "CC0-1.0" and m.licence_assertion_id for m in members)
    assert run.member_count == 2 and run.members_digest == merkle_root(
        [m.leaf_hash for m in members]
    )
    assert (run.policy_name, run.policy_sha256) == (policy.name, policy.sha256)
    assert verify_snapshot(session, run.id) == []
    proof = membership_proof(session, run.id, ids["alpha"])
    assert proof.verify()
    with pytest.raises(ValueError, match="not a member"):
        membership_proof(session, run.id, ids["planted"])
    event = session.query(AuditEvent).filter_by(action="training_run.snapshotted").one()
    assert run.members_digest in event.payload

    # The planted, opted-out recording's rows never reach the model.
    mel_reads = _spy_on_mel_reads(monkeypatch)
    ledger = MaterializationLedger()
    data = load_snapshot_segments(
        root, member_sha256s(session, run.id), embedder=HashTextEmbedder(), ledger=ledger
    )
    assert ids["planted"] not in mel_reads
    assert ledger.recording_ids() == {ids["alpha"], ids["gamma"]}
    assert ids["planted"] not in _train_and_watch(data, tmp_path, monkeypatch)

    # alpha opts out after the snapshot: the run is unchanged, the next snapshot excludes it.
    digest = run.members_digest
    record_consent(
        session,
        subject=ConsentSubject("recording", ids["alpha"]),
        action="opt_out",
        purpose="any",
        effective_at=t0 + dt.timedelta(hours=1),
        origin="cli",
    )
    session.flush()
    session.expire_all()
    assert [m.recording_id for m in run_members(session, run.id)] == sorted(
        [ids["alpha"], ids["gamma"]]
    )
    assert session.get(type(run), run.id).members_digest == digest  # type: ignore[union-attr]
    assert verify_snapshot(session, run.id) == []
    later = freeze_snapshot(
        session,
        policy=policy,
        config_name="debug",
        config={},
        feature_set_id=fs.id,
        at=t0 + dt.timedelta(hours=2),
    )
    assert [m.recording_id for m in run_members(session, later.id)] == [ids["gamma"]]
    assert later.members_digest != digest

    # Member rows are append-only in the database itself.
    member_id = session.query(TrainingRunMember).filter_by(training_run_id=run.id).first().id  # type: ignore[union-attr]
    with pytest.raises(Exception):  # noqa: B017 - the driver's integrity/operational error
        with session.begin_nested():
            session.execute(
                text("UPDATE training_run_members SET consent_state = 'none' WHERE id = :i"),
                {"i": member_id},
            )
