"""A generation world for tests: a tiny trained model's checkpoint on a recorded run, its gate
index built with a stand-in embedder, and `fairchord generate` run against it."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from flows.cli import app
from generation.index import build_index_for_run
from provenance.models import AuditEvent, Credit, GateDecision, Generation
from tests.common.audio import tone_clip
from tests.common.gate import StandInEmbedder, attach_fingerprints
from tests.common.ledger import build_recorded_run
from training.checkpoint import CheckpointMeta, save_checkpoint
from training.diffusion.denoiser import Denoiser
from training.mel import MelConfig
from training.train_config import TrainConfig

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


@dataclass
class Trained:
    config: TrainConfig
    denoiser: Denoiser


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


def rows(session: Session) -> tuple[list[Generation], list[GateDecision]]:
    session.expire_all()
    gens = session.execute(select(Generation).order_by(Generation.id)).scalars().all()
    decisions = session.execute(select(GateDecision).order_by(GateDecision.id)).scalars().all()
    return list(gens), list(decisions)


def audit_actions(session: Session) -> list[str]:
    return list(session.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars())


def written(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


def train_tiny(out_dir: Path) -> Trained:
    """The debug UNet after two real training steps on synthetic tone mels (what
    tests/generation's ``trained`` fixture holds), for test packages outside it."""
    from training.checkpoint import load_checkpoint
    from training.synthetic_data import synthetic_segments
    from training.train_config import get_config
    from training.train_loop import train

    data = synthetic_segments(8, frames=64, recordings=2)
    config = get_config("debug").replace(max_steps=2, warmup_steps=1, eval_every=2)
    result = train(config, train_data=data, val_data=None, out_dir=out_dir, progress=False)
    final = result.final_checkpoint
    assert final is not None
    denoiser, _ = load_checkpoint(final.path)
    return Trained(result.config, denoiser)


def content_credential_rows(session: Session) -> list[Any]:
    """Every ``content_credentials`` row, oldest first (fresh from the database)."""
    from provenance.models import ContentCredential

    session.expire_all()
    return list(session.execute(select(ContentCredential).order_by(ContentCredential.id)).scalars())
