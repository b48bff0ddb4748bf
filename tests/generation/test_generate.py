"""`fairchord generate` end to end on a tiny trained model: what is written, refused and recorded.

The diffusion model is the ``debug`` config trained for two steps (once per
module). The gate-path tests use a stand-in embedder (the gate tests' band-energy
projection, plus a hashed text embedding) whose sha256 is written into the
checkpoint and the gate index; one test runs the real LAION-CLAP towers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from flows.cli import app
from generation.checkpoint_checks import ClapMismatch
from generation.index import GateUnavailable, build_index_for_run
from generation.pipeline import generate
from generation.request import GenerationRequest
from generation.variation import sample_variation
from provenance.consent import ConsentSubject, record_consent
from provenance.models import (
    AuditEvent,
    Checkpoint,
    Credit,
    GateDecision,
    Generation,
    Recording,
)
from provenance.parties import find_party
from provenance.settings import DB_URL_ENV
from tests.common.audio import melody, pitch_shift, tone_clip
from tests.common.gate import StandInEmbedder, attach_fingerprints, melody_cohort, stand_in_cohort
from tests.common.ledger import build_recorded_run
from training.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from training.diffusion.denoiser import Denoiser
from training.mel import MelConfig, log_mel
from training.synthetic_data import synthetic_segments
from training.train_config import TrainConfig, get_config
from training.train_loop import train

SR = 16_000
PROMPT = "slow ambient pads, minor key, soft dynamics"
FAST = ["--seconds", "2", "--steps", "4", "--n", "2", "--json"]


class PromptStandIn(StandInEmbedder):
    """The gate tests' audio stand-in plus a deterministic 512-d text embedding."""

    def embed_text(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            vec = np.random.default_rng(seed).standard_normal(512)
            rows.append(vec / np.linalg.norm(vec))
        return np.asarray(rows, dtype=np.float32)


class NaNAudioEmbedder(PromptStandIn):
    def embed_audio(self, wave_16k: np.ndarray) -> np.ndarray:
        out = super().embed_audio(wave_16k)
        out[:, 0] = np.nan
        return out


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one thread is 10x faster than two contending."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class Trained:
    config: TrainConfig
    denoiser: Denoiser


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The debug UNet after two real training steps on synthetic tone mels."""
    data = synthetic_segments(8, frames=64, recordings=2)
    config = get_config("debug").replace(max_steps=2, warmup_steps=1, eval_every=2)
    result = train(
        config,
        train_data=data,
        val_data=None,
        out_dir=tmp_path_factory.mktemp("train"),
        progress=False,
    )
    final = result.final_checkpoint
    assert final is not None
    denoiser, _ = load_checkpoint(final.path)
    return Trained(result.config, denoiser)


@dataclass
class World:
    run_id: int
    checkpoint_id: int
    checkpoint_path: Path
    recordings: list[int]
    embedder: PromptStandIn
    out: Path


# Recording i of the recorded run is rendered as these partials in the gate index.
PARTIALS = [[220.0, 440.0, 660.0], [1200.0, 2400.0, 3600.0], [80.0, 160.0, 5000.0]]


def write_checkpoint(
    path: Path, trained: Trained, *, run_id: int, digest: str, clap_sha256: str
) -> str:
    mel = MelConfig()
    meta = CheckpointMeta(
        config=trained.config,
        mel_config=mel.to_dict(),
        mel_config_hash=mel.hash(),
        clap_sha256=clap_sha256,
        training_run_id=run_id,
        snapshot_digest=digest,
        step=2,
        run_name="test",
    )
    net = trained.denoiser.inner_model
    return save_checkpoint(path, meta=meta, model=net, ema_model=net)


def add_index(
    session: Session,
    world: World,
    embedder: Any,
    *,
    extra: Sequence[tuple[int, np.ndarray]] = (),
    thresholds: dict[str, float] | None = None,
) -> None:
    """A gate index over the run's recordings (tones), plus ``extra`` (recording, wave) items."""
    vectors, rec_ids, seg_ids, artists = [], [], [], []
    items = [
        (rid, tone_clip(PARTIALS[i], seconds=15.0, seed=i))
        for i, rid in enumerate(world.recordings)
    ]
    for rid, wave in [*items, *extra]:
        party_ids = (
            session.execute(select(Credit.party_id).where(Credit.recording_id == rid))
            .scalars()
            .all()
        )
        for j, vec in enumerate(embedder.embed_audio(wave)):
            vectors.append(vec)
            rec_ids.append(rid)
            seg_ids.append(len([r for r in rec_ids if r == rid]) + j)
            artists.append(list(party_ids))
    row = build_index_for_run(
        session,
        world.run_id,
        embeddings=np.stack(vectors),
        recording_ids=rec_ids,
        segment_index=seg_ids,
        artist_ids=artists,
        embedder_sha256=embedder.sha256,
        snapshot_digest="d" * 64,
        thresholds=thresholds or {"track": 0.95, "artist": 0.9},
    )
    attach_fingerprints(
        session, row, dict([*items, *extra]), {rid: [] for rid, _ in [*items, *extra]}
    )


def build_world(
    session: Session,
    tmp_path: Path,
    trained: Trained,
    *,
    index: bool = True,
    policy: str | None = None,
    embedder: Any = None,
) -> World:
    recorded = build_recorded_run(session, tmp_path / "corpus")
    run = recorded.run
    if policy is not None:
        run.policy_name = policy
    embedder = embedder if embedder is not None else PromptStandIn()
    path = tmp_path / "model" / "final.safetensors"
    sha = write_checkpoint(
        path, trained, run_id=run.id, digest=str(run.members_digest), clap_sha256=embedder.sha256
    )
    ckpt = recorded.checkpoint
    ckpt.sha256, ckpt.uri = sha, path.resolve().as_uri()
    world = World(
        run_id=run.id,
        checkpoint_id=ckpt.id,
        checkpoint_path=path,
        recordings=[r.id for r in recorded.recordings],
        embedder=embedder,
        out=tmp_path / "out",
    )
    if index:
        add_index(session, world, embedder)
    session.commit()
    return world


class GenerateCli:
    """Runs `fairchord generate …` on the test database; remembers every CLAP it loaded."""

    def __init__(self, session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
        self.session = session
        self.monkeypatch = monkeypatch
        self.loads: list[Any] = []

    def __call__(self, world: World, *args: str, embedder: Any = None) -> Any:
        chosen = embedder if embedder is not None else world.embedder

        def load(_clap: str | None) -> Any:
            self.loads.append(chosen)
            return chosen

        self.monkeypatch.setattr("flows.cli.generate.load_clap_embedder", load)
        # The stand-in is also the gate's embedder here (the world's index is built with it).
        self.monkeypatch.setattr("flows.cli.generate.load_gate_embedder", lambda: chosen)
        self.session.commit()  # end the test's read transaction: SQLite would stay locked
        return CliRunner().invoke(
            app, ["generate", *args, "--checkpoint", str(world.checkpoint_id)]
        )


@pytest.fixture
def cli(session: Session, db_url: str, monkeypatch: pytest.MonkeyPatch) -> GenerateCli:
    monkeypatch.setenv(DB_URL_ENV, db_url)
    return GenerateCli(session, monkeypatch)


def rows(session: Session) -> tuple[list[Generation], list[GateDecision]]:
    session.expire_all()
    gens = session.execute(select(Generation).order_by(Generation.id)).scalars().all()
    decisions = session.execute(select(GateDecision).order_by(GateDecision.id)).scalars().all()
    return list(gens), list(decisions)


def audit_actions(session: Session) -> list[str]:
    return list(session.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars())


def written(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


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
    party = find_party(session, name)
    assert party is not None
    event = record_consent(
        session,
        subject=ConsentSubject("party", party.id),
        action="opt_out",
        purpose="training",
        effective_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
        origin="cli",
        evidence="email from the artist",
    )
    assert event is not None
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
