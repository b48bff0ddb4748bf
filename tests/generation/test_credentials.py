"""Content Credentials on generated audio: what the signed manifest says, the unsigned path,
half-configured keys, and that a blocked clip is never written, signed or not."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import soundfile as sf
from sqlalchemy.orm import Session

from provenance.content_credentials import read_credential
from provenance.models import Checkpoint, TrainingRun
from provenance.policies import load_policy
from provenance.signing_keys import CERT_ENV, KEY_ENV, init_keys, trust_anchors_pem
from tests.common.generation import (
    FAST,
    PROMPT,
    SR,
    GenerateCli,
    Trained,
    add_index,
    build_world,
    content_credential_rows,
    rows,
    written,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IPTC_GENERATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


def test_signed_clip_carries_the_generation_and_training_data_claims(
    session: Session, tmp_path: Path, trained: Trained, cli: GenerateCli
) -> None:
    keys = init_keys()
    world = build_world(session, tmp_path, trained)
    flags = ["--n", "1", "--seed", "5", "--credential-prompt", "--out", str(world.out)]
    result = cli(world, PROMPT, *FAST, *flags)
    assert result.exit_code == 0, result.output
    assert "no signing keys" not in result.stderr
    clip = json.loads(result.stdout)["clips"][0]
    audio = Path(clip["audio"])
    assert clip["content_credentials"]["status"] == "signed"

    reading = read_credential(audio)
    assert reading is not None and reading.valid, reading
    assert not reading.trusted  # a self-signed development chain: nobody public vouches
    trusted = read_credential(audio, trust_anchors_pem=trust_anchors_pem())
    assert trusted is not None and trusted.trusted
    assert reading.digital_source_type == "trainedAlgorithmicMedia"
    assert reading.claim_generator is not None and reading.claim_generator.startswith("fairchord")

    gens, decisions = rows(session)
    (gen,) = gens
    gate = next(d for d in decisions if d.stage == "similarity_gate")
    ckpt = session.get(Checkpoint, world.checkpoint_id)
    run = session.get(TrainingRun, world.run_id)
    assert ckpt is not None and run is not None
    claims = reading.generation
    assert claims is not None
    assert claims["generation_id"] == gen.id
    assert claims["checkpoint"]["sha256"] == ckpt.sha256
    assert claims["snapshot_digest"] == run.members_digest
    policy = load_policy("commercial")
    assert claims["policy"] == {
        "name": policy.name,
        "version": str(policy.version),
        "sha256": policy.sha256,
    }
    assert claims["gate"]["decision_id"] == gate.id
    assert claims["gate"]["verdict"] == "allow" == gate.verdict
    assert claims["gate"]["detector_scores"] == gate.scores["detectors"]
    assert claims["gate"]["track_similarity"] == pytest.approx(gate.scores["track_similarity"])
    assert claims["prompt_screen"]["verdict"] == "allow"
    assert claims["prompt_sha256"] == hashlib.sha256(PROMPT.encode()).hexdigest()
    assert claims["prompt"] == PROMPT  # --credential-prompt
    assert (claims["seed"], claims["sampler"]) == (5, "dpmpp_2m")
    sidecar = json.loads(Path(clip["sidecar"]).read_text())
    head = sidecar["audit_head"]
    assert claims["audit_head"] == f"{head['seq']}:{head['hash']}"

    data = reading.training_data
    assert data is not None
    assert data["recordings"] == len(world.recordings)
    assert data["hours"] > 0
    assert sum(share["recordings"] for share in data["licences"]) == len(world.recordings)
    assert data["snapshot"]["merkle_root"] == run.members_digest
    assert data["consent"]["checked_at_snapshot"] is True
    assert data["consent"]["purpose"] == policy.consent_purpose

    # The record and the sidecar name the same manifest, signer and bytes.
    (row,) = content_credential_rows(session)
    assert (row.generation_id, row.status) == (gen.id, "signed")
    assert row.manifest_label == reading.manifest_label
    assert row.signer_sha256 == keys.leaf.sha256
    assert row.file_sha256 == gen.output_sha256 == hashlib.sha256(audio.read_bytes()).hexdigest()
    assert sidecar["content_credentials"] == {
        "status": "signed",
        "manifest_label": reading.manifest_label,
        "signer": reading.signer,
        "signer_sha256": keys.leaf.sha256,
    }
    wave, rate = sf.read(audio, dtype="float32")
    assert rate == SR and wave.shape == (2 * SR,)
    assert [n for n in written(world.out) if n.startswith(".")] == []  # no temporaries left


def test_flac_is_signed_and_the_prompt_stays_out_by_default(
    session: Session, tmp_path: Path, trained: Trained, cli: GenerateCli
) -> None:
    init_keys()
    world = build_world(session, tmp_path, trained)
    result = cli(world, PROMPT, *FAST, "--n", "1", "--format", "flac", "--out", str(world.out))
    assert result.exit_code == 0, result.output
    audio = Path(json.loads(result.stdout)["clips"][0]["audio"])
    assert audio.suffix == ".flac"
    reading = read_credential(audio)
    assert reading is not None and reading.valid
    assert reading.generation is not None and "prompt" not in reading.generation
    assert reading.generation["prompt_sha256"] == hashlib.sha256(PROMPT.encode()).hexdigest()
    assert sf.read(audio)[0].shape == (2 * SR,)


def test_without_keys_clips_are_written_unsigned_and_recorded_so(
    session: Session, tmp_path: Path, trained: Trained, cli: GenerateCli
) -> None:
    world = build_world(session, tmp_path, trained)
    result = cli(world, PROMPT, *FAST, "--out", str(world.out))
    assert result.exit_code == 0, result.output
    assert result.stderr.count("no signing keys") == 1  # warned once, for two clips
    clips = json.loads(result.stdout)["clips"]
    assert len(clips) == 2
    for clip in clips:
        assert read_credential(clip["audio"]) is None
        sidecar = json.loads(Path(clip["sidecar"]).read_text())
        assert sidecar["content_credentials"]["status"] == "unsigned"
        assert sidecar["content_credentials"]["manifest_label"] is None
    gens, _ = rows(session)
    creds = content_credential_rows(session)
    assert [(c.generation_id, c.status) for c in creds] == [(g.id, "unsigned") for g in gens]
    assert all(c.manifest_label is None and "no signing keys" in (c.note or "") for c in creds)


def test_half_configured_keys_stop_before_sampling(
    session: Session,
    tmp_path: Path,
    trained: Trained,
    cli: GenerateCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = build_world(session, tmp_path, trained)
    monkeypatch.setenv(CERT_ENV, str(tmp_path / "cert.pem"))
    result = cli(world, PROMPT, *FAST, "--out", str(world.out))
    assert result.exit_code == 2, result.output
    assert KEY_ENV in " ".join(result.stderr.split())
    assert cli.loads == [] and written(world.out) == []
    # A key that is not the certificate's is refused as early.
    other = init_keys(tmp_path / "other")
    mine = init_keys(tmp_path / "mine")
    monkeypatch.setenv(CERT_ENV, str(mine.chain_path))
    monkeypatch.setenv(KEY_ENV, str(other.key_path))
    result = cli(world, PROMPT, *FAST, "--out", str(world.out))
    assert result.exit_code == 2, result.output
    assert "is not the key of the first certificate" in " ".join(result.stderr.split())
    assert cli.loads == [] and written(world.out) == []


def test_a_blocked_clip_is_never_written_signed_or_not(
    session: Session, tmp_path: Path, trained: Trained, cli: GenerateCli
) -> None:
    init_keys()
    world = build_world(session, tmp_path, trained)
    first = cli(world, PROMPT, *FAST, "--seed", "3", "--out", str(tmp_path / "first"))
    assert first.exit_code == 0, first.output
    clips = json.loads(first.stdout)["clips"]
    # Clip 1 (signed) becomes training audio of recording 0: the gate must now block it.
    replayed, _ = sf.read(clips[1]["audio"], dtype="float32")
    add_index(session, world, world.embedder, extra=[(world.recordings[0], replayed)])
    session.commit()

    result = cli(world, PROMPT, *FAST, "--seed", "3", "--out", str(world.out))
    assert result.exit_code == 5, result.output
    outcome = json.loads(result.stdout)
    assert [c["verdict"] for c in outcome["clips"]] == ["allow", "block"]
    assert outcome["clips"][1]["audio"] is None
    assert outcome["clips"][1]["content_credentials"] is None
    assert [n for n in written(world.out) if "seed4" in n] == []
    gens, _ = rows(session)
    blocked = gens[-1]
    assert blocked.status == "blocked_gate"
    assert [c for c in content_credential_rows(session) if c.generation_id == blocked.id] == []
