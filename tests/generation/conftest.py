"""Generation test fixtures: the tiny trained model, `fairchord generate` on the test database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from sqlalchemy.orm import Session

from provenance.settings import DB_URL_ENV
from tests.common.generation import GenerateCli, Trained
from training.checkpoint import load_checkpoint
from training.synthetic_data import synthetic_segments
from training.train_config import get_config
from training.train_loop import train


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one thread is 10x faster than two contending."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


@pytest.fixture
def cli(session: Session, db_url: str, monkeypatch: pytest.MonkeyPatch) -> GenerateCli:
    monkeypatch.setenv(DB_URL_ENV, db_url)
    return GenerateCli(session, monkeypatch)
