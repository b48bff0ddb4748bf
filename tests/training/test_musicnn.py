"""The MSD-musicnn port: checkpoint reading, parity with musicnn's own TensorFlow outputs
(recorded once in ``tests/training/data/musicnn/``), and the embedder's refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from training.musicnn.embedder import (
    MODEL_DIR,
    MusicnnEmbedder,
    MusicnnUnavailable,
    package_dir,
)
from training.musicnn.frontend import PATCH_FRAMES, log_mel
from training.musicnn.model import Musicnn
from training.musicnn.tf_bundle import BundleFormatError, read_bundle, read_index

DATA = Path(__file__).parent / "data" / "musicnn"
CLIPS = ("synthetic", "wesnoth_traveling_minstrels", "hyperrogue_crossroads")


@pytest.fixture(scope="module")
def embedder() -> MusicnnEmbedder:
    return MusicnnEmbedder.load()


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(DATA / "reference.npz") as z:
        return {k: z[k] for k in z.files}


def _clip(name: str) -> np.ndarray:
    wave, rate = sf.read(DATA / f"{name}.flac", dtype="float32")
    assert rate == 16_000
    return wave


def test_bundle_index_lists_every_variable_with_its_shape() -> None:
    entries = {e.name: e for e in read_index(package_dir() / MODEL_DIR / ".index")}
    assert len(entries) == 150  # 64 model variables, 2 Adam slots for 42 of them, 2 powers
    assert entries["conv2d/kernel"].shape == (7, 38, 1, 204)
    assert entries["conv2d_5/kernel"].shape == (7, 561, 1, 64)
    assert entries["dense/kernel"].shape == (1506, 200)
    assert entries["batch_normalization_9/moving_variance"].shape == (1506,)


def test_bundle_reads_tensors_that_match_the_recorded_variable_list() -> None:
    tensors = read_bundle(str(package_dir() / MODEL_DIR) + "/")
    listed = {}
    for line in (DATA / "checkpoint_variables.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, shape = line.split("\t")
            listed[name] = json.loads(shape)
    assert len(listed) == len(tensors) == 150
    for name, shape in listed.items():
        assert list(tensors[name].shape) == shape, name
    assert tensors["dense_1/kernel"].dtype == np.float32
    assert np.all(np.isfinite(tensors["conv2d/kernel"]))


def test_bundle_reader_refuses_what_is_not_a_bundle(tmp_path: Path) -> None:
    bad = tmp_path / "x.index"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(BundleFormatError, match="magic"):
        read_index(bad)
    bad.write_bytes(b"short")
    with pytest.raises(BundleFormatError, match="too short"):
        read_index(bad)


@pytest.mark.parametrize("clip", CLIPS)
def test_log_mel_matches_musicnn_librosa_input(clip: str, reference: dict[str, np.ndarray]) -> None:
    mel = log_mel(_clip(clip)).numpy()
    expected = reference[f"{clip}/audio_rep"]
    assert mel.shape == expected.shape == (563, 96)
    # float16 rounding of the linear mel decides the last bit; 1e-3 is far below a tag change.
    np.testing.assert_allclose(mel, expected, atol=1e-3)


@pytest.mark.parametrize("clip", CLIPS)
def test_port_reproduces_musicnn_tags_and_features(
    clip: str, embedder: MusicnnEmbedder, reference: dict[str, np.ndarray]
) -> None:
    out = embedder.patch_outputs(_clip(clip))
    taggram = 1.0 / (1.0 + np.exp(-out["logits"]))
    assert taggram.shape == reference[f"{clip}/taggram"].shape == (3, 50)
    np.testing.assert_allclose(taggram, reference[f"{clip}/taggram"], atol=1e-4)
    for key in ("mean_pool", "max_pool", "penultimate"):
        expected = reference[f"{clip}/{key}"]
        scale = float(np.abs(expected).max())
        np.testing.assert_allclose(out[key], expected, atol=1e-4 * scale, err_msg=key)
    recorded = json.loads((DATA / "reference.json").read_text())["clips"][clip]
    assert [tag for tag, _ in embedder.tags(_clip(clip))[:5]] == [
        tag for tag, _ in recorded["top5_mean_over_patches"]
    ]


def test_embed_audio_gives_one_window_per_patch(embedder: MusicnnEmbedder) -> None:
    wave = _clip("synthetic")
    windows = embedder.embed_audio(wave)
    assert windows.shape == (3, 1506)
    short = embedder.embed_audio(wave[:16_000])  # 1 s: repeat-padded to one patch
    assert short.shape == (1, 1506)
    assert np.all(np.isfinite(short))
    assert PATCH_FRAMES == 187


def test_embedder_identity_covers_weights_and_feature(embedder: MusicnnEmbedder) -> None:
    other = MusicnnEmbedder(model=embedder.model, feature="penultimate")
    assert embedder.sha256 != other.sha256
    assert embedder.provenance["licence"] == "ISC"
    assert embedder.provenance["source_package"] == "musicnn==0.1.0"


def test_load_refuses_weights_that_are_not_the_pinned_ones(tmp_path: Path) -> None:
    copy = tmp_path / MODEL_DIR
    shutil.copytree(package_dir() / MODEL_DIR, copy)
    data = copy / ".data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[1000] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(MusicnnUnavailable, match="pinned"):
        MusicnnEmbedder.load(directory=copy)
    (copy / ".index").unlink()
    with pytest.raises(MusicnnUnavailable, match="missing"):
        MusicnnEmbedder.load(directory=copy)


@pytest.mark.parametrize("patches", [1, 3, 5])
def test_factorised_fast_path_matches_the_plain_filter_banks(patches: int) -> None:
    """The factorised banks and their pooled matrix-product mix (what the gate runs) give the
    checkpoint's plain convolutions' outputs, up to float rounding, at any batch size."""
    tensors = read_bundle(str(package_dir() / MODEL_DIR) + "/")
    plain, fast = Musicnn(), Musicnn()
    plain.load_tf_variables(tensors, factorised=False)
    fast.load_tf_variables(tensors)
    assert any(isinstance(conv, torch.nn.Sequential) for conv in fast.timbral)
    assert not any(isinstance(conv, torch.nn.Sequential) for conv in plain.timbral)
    generator = torch.Generator().manual_seed(patches)
    # Compressed log-mel values lie in [0, ~5]; random patches exercise every filter.
    mel = 5.0 * torch.rand(patches, PATCH_FRAMES, 96, generator=generator)
    with torch.inference_mode():
        want, got = plain(mel), fast(mel)
    for key in ("logits", "penultimate", "mean_pool", "max_pool"):
        expected, actual = getattr(want, key), getattr(got, key)
        scale = float(expected.abs().max())
        torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4 * max(scale, 1.0))
