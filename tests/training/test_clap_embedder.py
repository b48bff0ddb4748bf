"""Our CLAP: a missing checkpoint, a tiny trained one saved and reloaded, the 16 kHz -> 48 kHz
signal path, 10 s windowing, and offline text embeddings.

The CLAP is trained once per module (the ``debug`` config cut to 1 step at batch 2 on
synthetic tones) through ``train_clap``'s real save path and shared by the tests. An
embedding costs about a second on two cores, so each test embeds as little as it can.
"""

from __future__ import annotations

import dataclasses
import math
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from provenance.hashing import sha256_file
from training.clap_embedder import (
    CLAP_RATE,
    MODEL_RATE,
    ClapCheckpointMissing,
    ClapEmbedder,
    audio_inputs,
    audio_windows,
    to_clap_rate,
)
from training.clap_train import CLAP_CONFIGS, ClapTrainResult, ClipExample, train_clap
from training.segment_embeddings import EMBEDDING_DIM

WINDOW = 10 * MODEL_RATE
HOP = 5 * MODEL_RATE
CONFIG = dataclasses.replace(CLAP_CONFIGS["debug"], steps=1)


def tone(freq: float, seconds: float, *, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * MODEL_RATE)) / MODEL_RATE
    rng = np.random.default_rng(seed)
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[ClapTrainResult, list[int]]:
    examples = [
        ClipExample(tone(220.0, 10.0, seed=1), "low warm drone", 1, 0, [10]),
        ClipExample(tone(1760.0, 10.0, seed=2), "high bright whistle", 2, 0, [20]),
    ]
    steps: list[int] = []
    result = train_clap(
        examples,
        config=CONFIG,
        out_path=tmp_path_factory.mktemp("clap") / "clap.pt",
        progress=lambda step, loss: steps.append(step),
    )
    return result, steps


@pytest.fixture(scope="module")
def embedder(trained: tuple[ClapTrainResult, list[int]]) -> ClapEmbedder:
    return ClapEmbedder.load(trained[0].path)


SHORT = tone(660.0, 3.0, seed=5)


@pytest.fixture(scope="module")
def short_embedding(embedder: ClapEmbedder) -> np.ndarray:
    return embedder.embed_audio_clip(SHORT)


# --- no model needed ---------------------------------------------------------------------------


def test_missing_checkpoint_says_how_to_provide_or_train_one(tmp_path: Path) -> None:
    with pytest.raises(ClapCheckpointMissing) as missing:
        ClapEmbedder.load(tmp_path / "nowhere.pt")
    message = str(missing.value)
    assert str(tmp_path / "nowhere.pt") in message
    assert "fairchord clap train" in message and "--clap PATH" in message
    assert isinstance(missing.value, FileNotFoundError)


def test_default_checkpoint_lives_in_the_home(_isolated_home: Path) -> None:
    with pytest.raises(ClapCheckpointMissing, match=str(_isolated_home / "clap" / "clap.pt")):
        ClapEmbedder.load()


def test_training_needs_two_clips(tmp_path: Path) -> None:
    one = [ClipExample(tone(440.0, 10.0), "a tone", 1, 0)]
    with pytest.raises(ValueError, match="at least 2 training clips, got 1"):
        train_clap(one, config=CLAP_CONFIGS["debug"], out_path=tmp_path / "clap.pt")
    assert not (tmp_path / "clap.pt").exists()


@pytest.mark.parametrize(
    ("seconds", "starts"),
    [
        (10.0, [0]),
        (10.5, [0, 8_000]),  # the last window ends at the clip's end
        (20.0, [0, HOP, 2 * HOP]),
        (23.0, [0, HOP, 2 * HOP, 23 * MODEL_RATE - WINDOW]),
    ],
)
def test_windows_are_10_s_with_5_s_hop_and_cover_the_end(seconds: float, starts: list[int]) -> None:
    wave = np.arange(int(seconds * MODEL_RATE), dtype=np.float32)
    windows = audio_windows(wave)
    assert windows.shape == (len(starts), WINDOW) and windows.dtype == np.float32
    for window, start in zip(windows, starts, strict=True):
        assert np.array_equal(window, wave[start : start + WINDOW])
    assert windows[-1][-1] == wave[-1]


def test_short_clips_repeat_pad_to_one_window() -> None:
    wave = tone(440.0, 3.0)
    windows = audio_windows(wave)
    assert windows.shape == (1, WINDOW)
    for k in range(3):
        assert np.array_equal(windows[0, k * wave.size : (k + 1) * wave.size], wave)
    assert np.array_equal(windows[0, 3 * wave.size :], wave[: WINDOW - 3 * wave.size])
    with pytest.raises(ValueError, match="empty audio"):
        audio_windows(np.zeros(0, dtype=np.float32))


def test_signal_path_brings_16k_audio_to_48k_at_the_same_pitch() -> None:
    out = to_clap_rate(torch.from_numpy(tone(1000.0, 1.0))[None])
    assert out.shape == (1, CLAP_RATE)
    spectrum = np.abs(np.fft.rfft(out[0].numpy()))
    assert np.fft.rfftfreq(CLAP_RATE, 1 / CLAP_RATE)[np.argmax(spectrum)] == 1000.0
    # Nothing is invented above the source band (8 kHz).
    high = np.fft.rfftfreq(CLAP_RATE, 1 / CLAP_RATE) > 8_500
    assert spectrum[high].max() < 1e-3 * spectrum.max()


# --- the trained CLAP --------------------------------------------------------------------------


def test_training_writes_a_checkpoint_that_can_rebuild_its_model(
    trained: tuple[ClapTrainResult, list[int]],
) -> None:
    result, steps = trained
    config = CONFIG
    assert steps == list(range(1, config.steps + 1))
    assert len(result.losses) == config.steps and all(map(math.isfinite, result.losses))
    parts = zip(result.contrastive, result.invariance, strict=True)
    assert result.losses == pytest.approx([c + config.invariance_weight * i for c, i in parts])
    assert result.sha256 == sha256_file(result.path)
    assert not list(result.path.parent.glob("*.tmp"))
    blob = torch.load(result.path, map_location="cpu", weights_only=False)
    assert blob["config"]["amodel"] == "HTSAT-tiny" and blob["config"]["tmodel"] == "transformer"
    assert blob["config"]["steps"] == config.steps and blob["config"]["examples"] == 2
    assert blob["losses"] == result.losses


def test_loading_restores_every_trained_tensor(
    trained: tuple[ClapTrainResult, list[int]], embedder: ClapEmbedder
) -> None:
    saved = torch.load(trained[0].path, map_location="cpu", weights_only=False)["state_dict"]
    loaded = embedder.module.model.state_dict()
    assert set(saved) == set(loaded)
    different = [k for k in saved if not torch.equal(saved[k], loaded[k])]
    assert different == []
    assert embedder.sha256 == trained[0].sha256 and embedder.path == trained[0].path
    assert embedder.config["amodel"] == "HTSAT-tiny"
    assert not embedder.module.model.training


def test_model_rate_and_window_match_the_towers(embedder: ClapEmbedder) -> None:
    audio_cfg = embedder.module.model_cfg["audio_cfg"]
    assert audio_cfg["sample_rate"] == CLAP_RATE and audio_cfg["clip_samples"] == 10 * CLAP_RATE
    windows = to_clap_rate(torch.from_numpy(audio_windows(tone(440.0, 12.0))))
    inputs = audio_inputs(embedder.module, windows)
    assert len(inputs) == 2
    for features, window in zip(inputs, windows, strict=True):
        # Exactly one window: no random crop, no padding, no fusion.
        assert torch.equal(features["waveform"], window) and not bool(features["longer"])


def test_audio_embeddings_are_unit_vectors_one_per_window(
    embedder: ClapEmbedder, short_embedding: np.ndarray
) -> None:
    # 15 s: windows 0-10 s (the low tone) and 5-15 s (half low, half high).
    wave = np.concatenate([tone(220.0, 10.0, seed=3), tone(1760.0, 5.0, seed=4)])
    windows = embedder.embed_audio(wave)
    assert windows.shape == (2, EMBEDDING_DIM) and windows.dtype == np.float32
    assert embedder.dim == EMBEDDING_DIM
    assert np.allclose(np.linalg.norm(windows, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(windows[0], windows[1], atol=1e-4)
    # A window's embedding does not depend on the others in its pass.
    one_by_one = embedder.embed_windows(torch.from_numpy(audio_windows(wave)), batch_size=1)
    assert np.allclose(one_by_one, windows, atol=1e-5)
    assert np.array_equal(embedder.embed_audio_clip(wave), one_by_one[0])
    with pytest.raises(ValueError, match=r"need windows \[n >= 1, samples\], got \(0, 160000\)"):
        embedder.embed_windows(torch.zeros(0, WINDOW))
    assert short_embedding.shape == (EMBEDDING_DIM,) and short_embedding.dtype == np.float32
    assert np.linalg.norm(short_embedding) == pytest.approx(1.0, abs=1e-5)


def test_a_short_clip_embeds_as_its_repeat_padded_window(
    embedder: ClapEmbedder, short_embedding: np.ndarray
) -> None:
    # Also: the same audio twice through one embedder gives the same bytes.
    assert np.array_equal(embedder.embed_audio_clip(np.resize(SHORT, WINDOW)), short_embedding)


def test_reloading_gives_identical_embeddings(
    trained: tuple[ClapTrainResult, list[int]], embedder: ClapEmbedder, short_embedding: np.ndarray
) -> None:
    again = ClapEmbedder.load(trained[0].path)
    assert again.sha256 == embedder.sha256
    assert np.array_equal(again.embed_audio_clip(SHORT), short_embedding)
    captions = ["slow ambient pad", "fast bright drums"]
    assert np.array_equal(embedder.embed_text(captions), again.embed_text(captions))


def test_text_embeddings_work_offline(
    embedder: ClapEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    texts = ["slow ambient pad", "fast bright drums", "slow ambient pad"]
    out = embedder.embed_text(texts)
    assert out.shape == (3, EMBEDDING_DIM) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(out[0], out[2]) and not np.allclose(out[0], out[1], atol=1e-4)
    assert embedder.embed_text([]).shape == (0, EMBEDDING_DIM)


def test_a_checkpoint_without_its_audio_projection_is_refused(
    trained: tuple[ClapTrainResult, list[int]],
    embedder: ClapEmbedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blob = torch.load(trained[0].path, map_location="cpu", weights_only=False)
    blob["state_dict"] = {
        k: v for k, v in blob["state_dict"].items() if not k.startswith("audio_projection.")
    }
    path = tmp_path / "no-projection.pt"
    torch.save(blob, path)
    # Building another module costs seconds; the shared one has this architecture, and what
    # the load copies into it are the values it already holds.
    monkeypatch.setattr(
        "training.clap_embedder.build_clap_module", lambda **kwargs: embedder.module
    )
    with pytest.raises(ValueError, match=r"not a HTSAT-tiny CLAP checkpoint.*audio_projection"):
        ClapEmbedder.load(path)


def test_embedding_clips_in_batches_matches_one_at_a_time(embedder: ClapEmbedder) -> None:
    rng = np.random.default_rng(3)
    clips = [
        (0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16_000, 170_000, 80_000)
    ] * 4
    batched = embedder.embed_clips(clips)
    assert batched.shape == (len(clips), embedder.dim)
    for clip, row in zip(clips, batched, strict=True):
        np.testing.assert_allclose(row, embedder.embed_audio_clip(clip), atol=1e-5)
    assert embedder.embed_clips([]).shape == (0, embedder.dim)
