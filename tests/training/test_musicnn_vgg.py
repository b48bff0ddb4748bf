"""The MSD_vgg port: checkpoint reading, parity with musicnn's own TensorFlow outputs
(recorded once by ``tests/training/data/musicnn/record_vgg_reference.py``), and the
embedder's windows and refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from training.musicnn.embedder import MusicnnEmbedder, MusicnnUnavailable, package_dir
from training.musicnn.frontend import patches
from training.musicnn.tf_bundle import read_bundle, read_index
from training.musicnn.vgg import FEATURES, VGG_MODEL_DIR, MusicnnVggEmbedder

DATA = Path(__file__).parent / "data" / "musicnn"
CLIPS = ("synthetic", "wesnoth_traveling_minstrels", "hyperrogue_crossroads")


@pytest.fixture(scope="module")
def embedder() -> MusicnnVggEmbedder:
    return MusicnnVggEmbedder.load()


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(DATA / "vgg_reference.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def musicnn_input() -> dict[str, np.ndarray]:
    """musicnn's own log-mel of each clip (librosa, recorded with the MSD-musicnn fixtures)."""
    with np.load(DATA / "reference.npz") as z:
        return {clip: z[f"{clip}/audio_rep"] for clip in CLIPS}


def _clip(name: str) -> np.ndarray:
    wave, rate = sf.read(DATA / f"{name}.flac", dtype="float32")
    assert rate == 16_000
    return wave


def _tf_layout(pooled: torch.Tensor) -> np.ndarray:
    """[B, C, time, mel] → TensorFlow's [B, time, mel, C]."""
    return pooled.permute(0, 2, 3, 1).numpy()


def test_bundle_lists_every_vgg_variable_with_its_shape() -> None:
    root = package_dir() / VGG_MODEL_DIR
    entries = {e.name: e.shape for e in read_index(root / ".index")}
    listed = {}
    for line in (DATA / "vgg_checkpoint_variables.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, shape = line.split("\t")
            listed[name] = tuple(json.loads(shape))
    assert entries == listed
    assert entries["1CNN/kernel"] == (3, 3, 1, 128)
    assert entries["5CNN/kernel"] == (3, 3, 128, 128)
    assert entries["dense/kernel"] == (256, 50)
    tensors = read_bundle(str(root) + "/")
    assert np.all(np.isfinite(tensors["3CNN/kernel"]))


@pytest.mark.parametrize("clip", CLIPS)
def test_network_reproduces_msd_vgg_on_musicnn_input(
    clip: str,
    embedder: MusicnnVggEmbedder,
    reference: dict[str, np.ndarray],
    musicnn_input: dict[str, np.ndarray],
) -> None:
    # Fed the very log-mel musicnn computed, the port matches TF to float32 precision.
    with torch.no_grad():
        out = embedder.model(patches(torch.from_numpy(musicnn_input[clip])))
    taggram = torch.sigmoid(out.logits).numpy()
    np.testing.assert_allclose(taggram, reference[f"{clip}/taggram"], atol=1e-5)
    maps = {
        "pool5": _tf_layout(out.pools[4]),
        "pool4": _tf_layout(out.pools[3]),
        "pool3_patch0": _tf_layout(out.pools[2])[0],
    }
    for i in (1, 2):
        pooled = _tf_layout(out.pools[i - 1])
        maps[f"pool{i}_mean"] = pooled.mean(axis=(1, 2))
        maps[f"pool{i}_max"] = pooled.max(axis=(1, 2))
    for key, value in maps.items():
        expected = reference[f"{clip}/{key}"]
        assert value.shape == expected.shape, key
        scale = float(np.abs(expected).max())
        np.testing.assert_allclose(value, expected, atol=1e-5 * scale, err_msg=key)


@pytest.mark.parametrize("clip", CLIPS)
def test_port_reproduces_msd_vgg_tags_from_audio(
    clip: str, embedder: MusicnnVggEmbedder, reference: dict[str, np.ndarray]
) -> None:
    out = embedder.patch_outputs(_clip(clip))
    taggram = 1.0 / (1.0 + np.exp(-out["logits"]))
    assert taggram.shape == reference[f"{clip}/taggram"].shape == (3, 50)
    np.testing.assert_allclose(taggram, reference[f"{clip}/taggram"], atol=1e-4)
    # The torch log-mel differs from librosa's in the float16 rounding of a few bins.
    expected = reference[f"{clip}/pool5"].reshape(3, -1)
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(out["pool5"], expected, atol=5e-4 * scale)
    # The default window: pool4's per-channel mean and max.
    pool4 = reference[f"{clip}/pool4"]
    expected = np.concatenate([pool4.mean(axis=(1, 2)), pool4.max(axis=(1, 2))], axis=1)
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(embedder.embed_audio(_clip(clip)), expected, atol=5e-4 * scale)
    recorded = json.loads((DATA / "vgg_reference.json").read_text())["clips"][clip]
    assert [tag for tag, _ in embedder.tags(_clip(clip))[:5]] == [
        tag for tag, _ in recorded["top5_mean_over_patches"]
    ]


@pytest.mark.parametrize(
    ("feature", "dim"),
    [("pool5", 256), ("pool4", 256), ("pool3", 256), ("pool1", 256), ("logits", 50)],
)
def test_embed_audio_gives_one_window_per_patch(
    feature: str, dim: int, embedder: MusicnnVggEmbedder
) -> None:
    chosen = MusicnnVggEmbedder(model=embedder.model, feature=feature)
    wave = _clip("synthetic")
    windows = chosen.embed_audio(wave)
    assert windows.shape == (3, dim)
    assert windows.dtype == np.float32
    assert chosen.window_levels_db(wave).shape == (3,)
    short = chosen.embed_audio(wave[:16_000])  # 1 s: repeat-padded to one patch
    assert short.shape == (1, dim)
    assert np.all(np.isfinite(short))


def test_embedder_identity_covers_model_and_feature(embedder: MusicnnVggEmbedder) -> None:
    other = MusicnnVggEmbedder(model=embedder.model, feature="pool5")
    assert embedder.sha256 != other.sha256
    assert embedder.sha256 != MusicnnEmbedder.load().sha256
    assert embedder.provenance["source_files"] == [
        "musicnn/MSD_vgg/.index",
        "musicnn/MSD_vgg/.data-00000-of-00001",
    ]
    assert embedder.config["feature"] == "pool4"


def test_unknown_feature_is_refused_with_the_allowed_ones(embedder: MusicnnVggEmbedder) -> None:
    with pytest.raises(ValueError, match="pool5"):
        MusicnnVggEmbedder(model=embedder.model, feature="pool6")
    assert "pool6" not in FEATURES


def test_load_refuses_weights_that_are_not_the_pinned_ones(tmp_path: Path) -> None:
    copy = tmp_path / VGG_MODEL_DIR
    shutil.copytree(package_dir() / VGG_MODEL_DIR, copy)
    data = copy / ".data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[1000] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(MusicnnUnavailable, match="pinned"):
        MusicnnVggEmbedder.load(directory=copy)
    (copy / ".index").unlink()
    with pytest.raises(MusicnnUnavailable, match="missing"):
        MusicnnVggEmbedder.load(directory=copy)
