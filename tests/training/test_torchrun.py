"""The torchrun entry's spec path loads only a feature set made with the run's mel config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training import torchrun
from training.clap_embedder import ClapEmbedder
from training.mel import DEFAULT_MEL_CONFIG
from training.shard_writer import (
    ShardWriter,
    add_shards_to_manifest,
    new_manifest,
    segment_rows,
    write_manifest,
)
from training.train_config import get_config

FRAMES = 128
SHA = "a" * 64


class ConstantTextEmbedder:
    def embed_text(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 512), dtype=np.float32) / np.sqrt(512)


def _feature_set(root: Path) -> None:
    """One recording (id 1) of three segments, made with the default mel config."""
    manifest = new_manifest(DEFAULT_MEL_CONFIG, frames=FRAMES, segment_config={})
    with ShardWriter(root, n_mels=DEFAULT_MEL_CONFIG.n_mels, frames=FRAMES) as writer:
        writer.add_recording(
            segment_rows(
                recording_id=1,
                recording_sha256=SHA,
                mels=np.zeros((3, DEFAULT_MEL_CONFIG.n_mels, FRAMES), dtype=np.float16),
                start_s=[0.0, 1.28, 2.56],
                is_partial=[False] * 3,
                valid_frames=[FRAMES] * 3,
                captions=["a tone"] * 3,
                caption_methods=["test"] * 3,
                artist_ids=[10],
                licence="CC0-1.0",
            )
        )
    covered = {1: {"sha256": SHA, "segments": 3, "shard": writer.written[0].name}}
    write_manifest(root, add_shards_to_manifest(manifest, writer.written, covered))


def _spec(tmp_path: Path, mel_config_hash: str) -> Path:
    return torchrun.write_spec(
        tmp_path / "spec.json",
        {
            "config": get_config("debug").to_dict(),
            "out_dir": str(tmp_path / "out"),
            "feature_root": str(tmp_path / "features"),
            "members": {"1": SHA},
            "clap_path": None,
            "run_info": {"mel_config_hash": mel_config_hash, "run_name": "run-1"},
        },
    )


@pytest.fixture
def features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _feature_set(tmp_path / "features")
    monkeypatch.setattr(ClapEmbedder, "load", classmethod(lambda cls, path: ConstantTextEmbedder()))
    return tmp_path


def test_spec_run_loads_the_members_of_a_matching_feature_set(features: Path) -> None:
    config, train_data, val_data, out, info = torchrun.spec_run(
        _spec(features, DEFAULT_MEL_CONFIG.hash())
    )
    assert config.name == get_config("debug").name
    assert len(train_data) + len(val_data) == 3
    assert set(train_data.recording_ids.tolist()) | set(val_data.recording_ids.tolist()) == {1}
    assert out == features / "out" and info.run_name == "run-1"


def test_spec_run_refuses_shards_of_another_mel_config(features: Path) -> None:
    with pytest.raises(ValueError, match="mel config"):
        torchrun.spec_run(_spec(features, "0" * 16))
