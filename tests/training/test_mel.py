"""The mel configuration: AudioLDM numbers, a stable hash, and torchaudio vs. librosa agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.mel import MelConfig, log_mel, mel_frames, mel_transform


def test_default_is_the_audioldm_configuration() -> None:
    c = MelConfig()
    assert (c.sample_rate, c.n_fft, c.win_length, c.hop_length, c.n_mels) == (
        16000,
        1024,
        1024,
        160,
        64,
    )
    assert (c.f_min, c.f_max, c.power, c.norm, c.mel_scale) == (
        0.0,
        8000.0,
        1.0,
        "slaney",
        "slaney",
    )


def test_hash_is_stable_and_changes_with_the_config() -> None:
    assert MelConfig().hash() == MelConfig().hash()
    assert len(MelConfig().full_hash()) == 64
    assert MelConfig().full_hash().startswith(MelConfig().hash())
    assert MelConfig(f_max=8000).hash() == MelConfig(f_max=8000.0).hash()
    assert MelConfig(n_mels=80).hash() != MelConfig().hash()
    assert MelConfig(hop_length=256).hash() != MelConfig().hash()
    assert MelConfig.from_dict(MelConfig(n_mels=80).to_dict()) == MelConfig(n_mels=80)


def test_bad_values_are_named() -> None:
    with pytest.raises(ValueError, match="f_max"):
        MelConfig(f_max=9000)
    with pytest.raises(ValueError, match="mel_scale 'mel'"):
        MelConfig(mel_scale="mel")
    with pytest.raises(ValueError, match="unknown mel config keys"):
        MelConfig.from_dict({"n_mel": 64})


def test_shape_frames_and_log_floor() -> None:
    wave = np.zeros(16000 * 2, dtype=np.float32)
    mel = log_mel(wave)
    assert mel.shape == (64, mel_frames(2.0)) == (64, 201)
    assert mel.dtype == torch.float32
    assert torch.allclose(mel, torch.full_like(mel, math.log(1e-5)))
    assert log_mel(torch.zeros(3, 16000)).shape == (3, 64, 101)
    assert mel_transform() is mel_transform()


def test_a_tone_lands_in_the_right_mel_bin() -> None:
    t = np.arange(16000) / 16000
    mel = log_mel(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    import librosa

    centres = librosa.mel_frequencies(n_mels=66, fmin=0, fmax=8000, htk=False)[1:-1]
    peak = int(mel[:, 50].argmax())
    assert abs(centres[peak] - 1000) < 100


def test_matches_librosa_with_the_same_parameters() -> None:
    import librosa

    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    ours = log_mel(wave).numpy()
    ref = librosa.feature.melspectrogram(
        y=wave,
        sr=16000,
        n_fft=1024,
        win_length=1024,
        hop_length=160,
        n_mels=64,
        fmin=0,
        fmax=8000,
        power=1.0,
        htk=False,
        norm="slaney",
        center=True,
        pad_mode="reflect",
    )
    ref = np.log(np.maximum(ref, 1e-5))
    assert ours.shape == ref.shape
    assert np.max(np.abs(ours - ref)) < 1e-3


def test_fast_path_equals_the_torchaudio_transform() -> None:
    from training.mel import log_mel_reference

    rng = np.random.default_rng(3)
    for n in (163840, 16001, 700):
        wave = (0.3 * rng.standard_normal(n)).astype(np.float32)
        ours, ref = log_mel(wave), log_mel_reference(wave)
        assert ours.shape == ref.shape
        assert torch.max(torch.abs(ours - ref)) < 1e-4
    power = MelConfig(power=2.0, win_length=800)
    wave = (0.3 * rng.standard_normal(32000)).astype(np.float32)
    assert torch.max(torch.abs(log_mel(wave, power) - log_mel_reference(wave, power))) < 1e-4
    with pytest.raises(ValueError, match="512 samples"):
        log_mel(np.zeros(100, np.float32))
