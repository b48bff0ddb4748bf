"""FD_clap, FD_musicnn and the four-way sample-quality evaluation on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generation.vocoder import GriffinLimVocoder
from training.diffusion.denoiser import Denoiser
from training.diffusion.unet import MelUNet, UNetConfig
from training.evaluate import (
    HeldBackClip,
    evaluate,
    frechet_distance,
    initial_denoiser,
    musicnn_clip_vectors,
)
from training.mel import log_mel
from training.musicnn.embedder import MusicnnEmbedder

TINY = UNetConfig(channels=8, channel_mult=(1, 2), emb_dim=32, fourier_features=16, groups=4)
SR = 16_000


@pytest.fixture(scope="module")
def musicnn() -> MusicnnEmbedder:
    return MusicnnEmbedder.load()


def test_frechet_distance_of_known_gaussians() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + np.array([3.0, 0.0, 0.0, 0.0])
    assert frechet_distance(a, shifted) == pytest.approx(9.0, rel=1e-3)
    wide = rng.standard_normal((4000, 4)) * 2.0
    # Same means; per axis (sigma_a - sigma_b)^2 = 1, so about 4 over 4 axes.
    assert frechet_distance(a, wide) == pytest.approx(4.0, rel=0.1)
    assert frechet_distance(a, wide) == pytest.approx(frechet_distance(wide, a), rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(a[:1], a)
    with pytest.raises(ValueError, match="one d"):
        frechet_distance(a, a[:, :3])


def test_frechet_distance_with_fewer_samples_than_dimensions_is_finite() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((8, 64)), rng.standard_normal((8, 64)) + 1.0
    value = frechet_distance(a, b)
    assert np.isfinite(value) and value > frechet_distance(a, a)


class SpectralEmbedder:
    """A CLAP stand-in: the clip's normalised 16-band spectrum; captions map to fixed bands."""

    def embed_audio_clip(self, wave_16k: np.ndarray) -> np.ndarray:
        spectrum = np.abs(np.fft.rfft(wave_16k.astype(np.float64)))
        bands = np.array([b.sum() for b in np.array_split(spectrum, 16)]) + 1e-9
        return (bands / np.linalg.norm(bands)).astype(np.float32)

    def embed_text(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 16), np.float32)
        for i, text in enumerate(texts):
            out[i, 0 if "low" in text else 5] = 1.0  # 500 Hz bands: 300 Hz, 2.5 kHz
        return out


class SpectralMusicnn:
    """A musicnn stand-in: the spectral bands of each 0.32 s patch as its penultimate row."""

    def patch_outputs(self, wave_16k: np.ndarray) -> dict[str, np.ndarray]:
        pieces = np.array_split(wave_16k, max(1, wave_16k.size // 5120))
        rows = [SpectralEmbedder().embed_audio_clip(piece) for piece in pieces]
        return {"penultimate": np.stack(rows)}


def tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_frechet_distance_in_musicnn_space_separates_tones_from_noise(
    musicnn: MusicnnEmbedder,
) -> None:
    # One 3 s patch per clip: the cheapest input the real model accepts unpadded.
    rng = np.random.default_rng(2)
    tones = [tone(f, 3.0) * (1.0 + 0.5 * rng.random()) for f in rng.uniform(200.0, 2000.0, size=8)]
    noise = [(0.1 * rng.standard_normal(3 * SR)).astype(np.float32) for _ in range(4)]
    tone_vectors = musicnn_clip_vectors(musicnn, tones)
    assert tone_vectors.shape == (8, 200)
    first, second = tone_vectors[:4], tone_vectors[4:]
    noise_vectors = musicnn_clip_vectors(musicnn, noise)
    assert frechet_distance(first, first) == pytest.approx(0.0, abs=1e-6)
    similar = frechet_distance(first, second)
    # Measured: about 18 between the halves of the tones, over 200 from tones to noise.
    assert frechet_distance(first, noise_vectors) > 5 * similar
    assert frechet_distance(second, noise_vectors) > 5 * similar


def test_evaluate_reports_every_set_and_the_gap() -> None:
    net = MelUNet(TINY.__class__(**{**TINY.__dict__, "cond_dim": 16}))
    denoiser = Denoiser(net, mel_mean=-5.0, mel_std=2.0).eval()
    clips = []
    for i, (freq, caption) in enumerate([(300.0, "low hum"), (2500.0, "bright whistle")] * 2):
        wave = tone(freq * (1 + 0.01 * i), 0.64)
        mel = log_mel(wave)[:, :64]
        clips.append(HeldBackClip(i, 0, caption, wave[: 64 * 160], torch.as_tensor(mel)))
    vocoder = GriffinLimVocoder(n_iter=4, nnls_iters=5)
    calls: list[int] = []
    report = evaluate(
        denoiser,
        clips,
        embedder=SpectralEmbedder(),
        vocoder=vocoder,
        checkpoint_sha256="0" * 64,
        musicnn=SpectralMusicnn(),
        steps=3,
        progress=lambda: calls.append(1),
    )
    assert len(calls) == 2 * len(clips)  # trained + untrained samples
    assert set(report.fd_clap) == {"real", "vocoded_real", "trained", "untrained"}
    assert report.fd_clap["real"] == pytest.approx(0.0, abs=1e-6)
    # Vocoded real tones stay far closer to the real ones than noise-like samples do.
    assert report.fd_clap["vocoded_real"] < report.fd_clap["untrained"]
    assert report.clap_score["real"] > report.clap_score["untrained"]
    assert report.seconds == pytest.approx(0.64)
    assert report.gap_closed is not None and np.isfinite(report.gap_closed)
    assert report.recordings == [0, 1, 2, 3]
    # The same figures in the musicnn space (a stand-in here; the real model is above).
    assert report.fd_musicnn is not None
    assert set(report.fd_musicnn) == set(report.fd_clap)
    assert report.fd_musicnn["real"] == pytest.approx(0.0, abs=1e-6)
    assert report.fd_musicnn["vocoded_real"] < report.fd_musicnn["untrained"]
    assert report.gap_closed_musicnn is not None and np.isfinite(report.gap_closed_musicnn)
    assert report.to_json()["fd_musicnn"] == report.fd_musicnn
    with pytest.raises(ValueError, match="at least 2"):
        evaluate(
            denoiser,
            clips[:1],
            embedder=SpectralEmbedder(),
            vocoder=vocoder,
            checkpoint_sha256="0" * 64,
        )


def test_initial_denoiser_is_seeded_and_keeps_normalisation() -> None:
    trained = Denoiser(MelUNet(TINY), mel_mean=-4.0, mel_std=3.0, sigma_data=0.5)
    a, b = initial_denoiser(trained, 7), initial_denoiser(trained, 7)
    assert (a.mel_mean, a.mel_std, a.sigma_data) == (-4.0, 3.0, 0.5)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    c = initial_denoiser(trained, 8)
    pairs = zip(a.parameters(), c.parameters(), strict=True)
    assert any(not torch.equal(pa, pc) for pa, pc in pairs)
