"""`fairchord generate` end to end on a tiny trained model: what is written, refused and recorded.

The diffusion model is the ``debug`` config trained for two steps (once per
module). The gate-path tests use a stand-in embedder (the gate tests' band-energy
projection, plus a hashed text embedding) whose sha256 is written into the
checkpoint and the gate index.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from flows.cli import app
from generation.variation import sample_variation
from provenance.models import AuditEvent, Checkpoint
from provenance.parties import find_party
from tests.common.audio import tone_clip
from tests.common.generation import (
    FAST,
    PROMPT,
    SR,
    GenerateCli,
    PromptStandIn,
    Trained,
    add_index,
    audit_actions,
    build_world,
    rows,
    written,
)
from tests.common.ledger import party_opt_out
from training.diffusion.sampling import resolve_precision
from training.mel import log_mel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class NaNAudioEmbedder(PromptStandIn):
    def embed_audio(self, wave_16k: np.ndarray) -> np.ndarray:
        out = super().embed_audio(wave_16k)
        out[:, 0] = np.nan
        return out


# --- allowed ---------------------------------------------------------------------------------


def test_allowed_clips_are_written_with_sidecar_png_and_rows(
    session: Session, tmp_path: Path, trained: Trained, cli: GenerateCli
) -> None:
    world = build_world(session, tmp_path, trained)
    result = cli(world, PROMPT, *FAST, "--seed", "7", "--out", str(world.out))
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "allowed"
    assert [c["seed"] for c in outcome["clips"]] == [7, 8]

    gens, decisions = rows(session)
    assert [g.status for g in gens] == ["allowed", "allowed"]
    ckpt = session.get(Checkpoint, world.checkpoint_id)
    assert ckpt is not None
    for gen, clip in zip(gens, outcome["clips"], strict=True):
        audio = Path(clip["audio"])
        assert audio.suffix == ".wav" and audio.parent == world.out
        wave, rate = sf.read(audio, dtype="float32")
        assert rate == SR and wave.shape == (2 * SR,) and np.abs(wave).max() > 0
        assert gen.output_sha256 == hashlib.sha256(audio.read_bytes()).hexdigest()
        assert gen.output_uri == audio.resolve().as_uri()
        assert (gen.seed, gen.steps, gen.sampler, gen.checkpoint_id) == (
            clip["seed"],
            4,
            "dpmpp_2m",
            world.checkpoint_id,
        )
        png = Path(clip["png"])
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        sidecar = json.loads(Path(clip["sidecar"]).read_text())
        assert sidecar["prompt"] == PROMPT and sidecar["seed"] == clip["seed"]
        assert (sidecar["sampler"], sidecar["steps"], sidecar["cfg"]) == ("dpmpp_2m", 4, 3.0)
        # What the clip was sampled with, resolved: enough to sample it again.
        used = {"cfg_interval": [0.28, 5.42], "precision": resolve_precision("auto")}
        assert {k: sidecar[k] for k in used} == used
        assert {k: gen.params[k] for k in used} == used
        assert sidecar["checkpoint"]["sha256"] == ckpt.sha256
        assert sidecar["checkpoint"]["snapshot_digest"] == "d" * 64
        assert sidecar["embedder_sha256"] == world.embedder.sha256
        assert sidecar["gate"]["verdict"] == "allow"
        assert sidecar["gate"]["track_similarity"] < sidecar["gate"]["thresholds"]["track"]
        assert sidecar["audio_sha256"] == gen.output_sha256
        assert sidecar["vocoder"]["name"] == "griffin-lim"
        created = dt.datetime.fromisoformat(sidecar["created_at"])
        assert abs((dt.datetime.now(dt.UTC) - created).total_seconds()) < 600
        stages = sorted((d.stage, d.verdict) for d in decisions if d.generation_id == gen.id)
        assert stages == [("prompt_screen", "allow"), ("similarity_gate", "allow")]
    # Same seed, same clip: generation is reproducible.
    again = cli(world, PROMPT, *FAST, "--seed", "8", "--n", "1", "--out", str(tmp_path / "again"))
    assert again.exit_code == 0, again.output
    first = json.loads(result.stdout)["clips"][1]
    repeat = json.loads(again.stdout)["clips"][0]
    assert sf.read(repeat["audio"])[0].tolist() == sf.read(first["audio"])[0].tolist()


def test_gate_blocks_a_clip_that_replays_training_audio(
    session: Session, tmp_path: Path, trained: Trained, cli: GenerateCli
) -> None:
    world = build_world(session, tmp_path, trained)
    first = cli(world, PROMPT, *FAST, "--seed", "3", "--out", str(tmp_path / "first"))
    assert first.exit_code == 0, first.output
    clips = json.loads(first.stdout)["clips"]
    # The model "memorised" clip 1: it is now a training segment of recording 0 in the index.
    replayed, _ = sf.read(clips[1]["audio"], dtype="float32")
    add_index(session, world, world.embedder, extra=[(world.recordings[0], replayed)])
    session.commit()

    result = cli(world, PROMPT, *FAST, "--seed", "3", "--out", str(world.out))
    assert result.exit_code == 5, result.output
    assert "clip 1 (seed 4" in result.stderr and "blocked" in result.stderr
    assert "track_similarity" in result.stderr
    outcome = json.loads(result.stdout)
    assert [c["verdict"] for c in outcome["clips"]] == ["allow", "block"]
    assert outcome["clips"][1]["nearest"]["recording_id"] == world.recordings[0]
    names = written(world.out)
    assert len(names) == 3 and all(
        n.endswith("seed3" + ext) for n, ext in zip(names, [".json", ".png", ".wav"], strict=True)
    )
    gens, decisions = rows(session)
    blocked = gens[-1]
    assert (blocked.status, blocked.seed, blocked.output_uri) == ("blocked_gate", 4, None)
    gate = [d for d in decisions if d.generation_id == blocked.id and d.stage == "similarity_gate"]
    assert gate[0].verdict == "block" and gate[0].nearest[0]["recording_id"] == world.recordings[0]


# --- the prompt screen --------------------------------------------------------------------


def test_blocked_prompt_samples_nothing(
    session: Session, tmp_path: Path, trained: Trained, cli: GenerateCli
) -> None:
    world = build_world(session, tmp_path, trained)
    result = cli(world, "dark synths in the style of W1ll Sav1no", *FAST, "--out", str(world.out))
    assert result.exit_code == 7, result.output
    assert "prompt blocked" in result.stderr and "Will Savino" in result.stderr
    assert written(world.out) == []
    assert cli.loads == []  # CLAP was never even loaded
    gens, decisions = rows(session)
    assert [g.status for g in gens] == ["blocked_prompt"]
    assert [(d.stage, d.verdict, d.generation_id) for d in decisions] == [
        ("prompt_screen", "block", gens[0].id)
    ]
    party = find_party(session, "Will Savino")
    assert party is not None and decisions[0].scores["matches"][0]["party_id"] == party.id


# --- fail closed --------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["no_index", "other_clap", "nan_scores"])
def test_gate_that_cannot_decide_writes_nothing(
    session: Session, tmp_path: Path, trained: Trained, cli: GenerateCli, failure: str
) -> None:
    world = build_world(session, tmp_path, trained, index=failure != "no_index")
    embedder = {
        "no_index": None,
        "other_clap": PromptStandIn(seed=1),  # a different CLAP than the checkpoint's
        "nan_scores": NaNAudioEmbedder(),  # same sha256, broken audio tower
    }[failure]
    result = cli(world, PROMPT, *FAST, "--out", str(world.out), embedder=embedder)
    assert result.exit_code == 6, result.output
    assert "nothing was written" in result.stderr
    expected = {"no_index": "no gate index", "other_clap": "CLAP", "nan_scores": "NaN"}[failure]
    assert expected in result.stderr
    assert written(world.out) == []
    gens, decisions = rows(session)
    assert gens and all(g.status == "error" and g.output_uri is None for g in gens)
    assert all(d.stage == "prompt_screen" for d in decisions)  # no gate verdict was reached
    assert len(gens) == (2 if failure == "nan_scores" else 1)  # per clip once sampling ran


# --- tainted checkpoints ------------------------------------------------------------------


def opt_out(session: Session, name: str) -> int:
    event = party_opt_out(session, name, at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    session.commit()
    return event.id


def test_tainted_checkpoint_is_refused(
    session: Session, tmp_path: Path, trained: Trained, cli: GenerateCli
) -> None:
    world = build_world(session, tmp_path, trained)
    event_id = opt_out(session, "Will Savino")
    result = cli(world, PROMPT, *FAST, "--out", str(world.out))
    assert result.exit_code == 8, result.output
    message = " ".join(result.stderr.split())
    assert f"recording {world.recordings[0]}" in message
    assert f"recording {world.recordings[1]}" in message
    assert f"consent event {event_id}" in message and "opted_out_since_snapshot" in message
    assert written(world.out) == [] and cli.loads == []
    # The override is for research runs only.
    override = cli(world, PROMPT, *FAST, "--allow-tainted", "--out", str(world.out))
    assert override.exit_code == 8
    assert "only for 'research' runs" in " ".join(override.stderr.split())
    gens, _ = rows(session)
    assert [g.status for g in gens] == ["refused_tainted", "refused_tainted"]
    assert audit_actions(session).count("generation.refused_tainted") == 2
    assert "generation.tainted_override" not in audit_actions(session)


def test_research_override_is_logged(
    session: Session, tmp_path: Path, trained: Trained, cli: GenerateCli
) -> None:
    world = build_world(session, tmp_path, trained, policy="research")
    event_id = opt_out(session, "Mattias Westlund")
    refused = cli(world, PROMPT, *FAST, "--out", str(world.out))
    assert refused.exit_code == 8
    result = cli(world, PROMPT, *FAST, "--n", "1", "--allow-tainted", "--out", str(world.out))
    assert result.exit_code == 0, result.output
    assert "tainted checkpoint" in result.stderr
    session.expire_all()
    event = session.execute(
        select(AuditEvent).where(AuditEvent.action == "generation.tainted_override")
    ).scalar_one()
    payload = json.loads(event.payload) if isinstance(event.payload, str) else event.payload
    assert payload["training_run_id"] == world.run_id
    assert payload["members"][0]["recording_id"] == world.recordings[2]
    assert payload["members"][0]["consent_event_ids"] == [event_id]
    sidecar = json.loads(Path(json.loads(result.stdout)["clips"][0]["sidecar"]).read_text())
    assert sidecar["tainted_override"] is True


# --- inputs --------------------------------------------------------------------------------


def test_audio_to_audio_variation_is_gated_and_recorded(
    session: Session, tmp_path: Path, trained: Trained, cli: GenerateCli
) -> None:
    world = build_world(session, tmp_path, trained)
    init = tmp_path / "init.flac"
    sf.write(init, tone_clip([330.0, 660.0], seconds=1.5), SR)
    result = cli(
        world, PROMPT, "--init-audio", str(init), "--strength", "0.5", "--format", "flac",
        "--steps", "4", "--n", "1", "--json", "--out", str(world.out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    clip = json.loads(result.stdout)["clips"][0]
    assert clip["audio"].endswith(".flac")
    wave, rate = sf.read(clip["audio"])
    assert rate == SR and wave.shape == (int(1.5 * SR),)  # the init audio's length
    sidecar = json.loads(Path(clip["sidecar"]).read_text())
    init_sha = hashlib.sha256(init.read_bytes()).hexdigest()
    assert sidecar["init_audio"] == {"sha256": init_sha, "strength": 0.5}
    gens, _ = rows(session)
    assert gens[0].init_audio_sha256 == init_sha and gens[0].params["strength"] == 0.5


def test_strength_sets_how_far_a_variation_moves(trained: Trained) -> None:
    init = log_mel(tone_clip([440.0], seconds=1.0))
    cond = np.eye(512, dtype=np.float32)[:1]
    distance = {}
    for strength in (0.1, 1.0):
        out = sample_variation(trained.denoiser, cond, init, strength=strength, steps=10, seed=0)
        assert out.shape == (1, *init.shape) and torch.isfinite(out).all()
        distance[strength] = float((out[0] - init).abs().mean())
    assert distance[0.1] < 0.5 * distance[1.0], distance
    with pytest.raises(ValueError, match="strength"):
        sample_variation(trained.denoiser, cond, init, strength=0.0)


def test_bad_input_exits_2(
    session: Session, tmp_path: Path, trained: Trained, cli: GenerateCli
) -> None:
    world = build_world(session, tmp_path, trained)
    for args, needle in [
        (["--steps", "0"], "steps=0"),
        (["--format", "mp3"], "format"),
        (["--sampler", "ddim"], "sampler"),
        (["--cfg-interval", "5,0.5"], "cfg interval"),
        (["--cfg-interval", "high"], "cfg interval 'high' must be 'LO,HI' or 'all'"),
        (["--precision", "fp16"], "precision 'fp16' unknown"),
        (["--init-audio", str(tmp_path / "missing.wav")], "not a file"),
    ]:
        result = cli(world, PROMPT, *args, "--out", str(world.out))
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.stderr
    unknown = CliRunner().invoke(app, ["generate", PROMPT, "--checkpoint", "999"])
    assert unknown.exit_code == 2
    # A checkpoint file that is not the recorded one is refused (and the attempt recorded).
    world.checkpoint_path.write_bytes(world.checkpoint_path.read_bytes() + b"\0")
    altered = cli(world, PROMPT, *FAST, "--out", str(world.out))
    assert altered.exit_code == 2 and "not the one trained" in altered.stderr
    gens, _ = rows(session)
    assert [g.status for g in gens] == ["error"] and written(world.out) == []


def test_sampler_options_default_to_the_benchmarked_setting() -> None:
    from flows.cli.generate import sampling_options
    from generation.request import DEFAULT_SAMPLING, GenerationRequest

    request = GenerationRequest(prompt=PROMPT, **sampling_options(None, None, None, None, None))
    assert (request.steps, request.sampler, request.cfg) == (
        DEFAULT_SAMPLING.steps,
        DEFAULT_SAMPLING.sampler,
        DEFAULT_SAMPLING.cfg,
    )
    assert (request.cfg_interval, request.precision) == (
        DEFAULT_SAMPLING.cfg_interval,
        DEFAULT_SAMPLING.precision,
    )
    given = sampling_options(8, 2.0, "dpmpp-3m", "0.3,5", "fp32")
    assert given == {
        "steps": 8,
        "cfg": 2.0,
        "sampler": "dpmpp-3m",
        "cfg_interval": (0.3, 5.0),
        "precision": "fp32",
    }
    assert GenerationRequest(prompt=PROMPT, **given).sampler == "dpmpp_3m"
    assert sampling_options(None, None, None, "all", None) == {"cfg_interval": None}
