"""Griffin-Lim vocoder: a tone survives mel -> wave -> mel with its pitch; bad input is refused."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from generation.vocoder import GriffinLimVocoder, Vocoder
from training.mel import DEFAULT_MEL_CONFIG, log_mel

SR = 16_000


def tone(freq: float, *, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.1 * np.sin(2 * np.pi * 2 * freq * t)
    return wave.astype(np.float32)


def dominant_frequency(wave: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return float(np.argmax(spectrum) * SR / wave.size)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Small FFTs on a shared 2-core machine: one thread beats two contending ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vocoder() -> GriffinLimVocoder:
    return GriffinLimVocoder(DEFAULT_MEL_CONFIG)


@pytest.mark.parametrize("freq", [220.0, 440.0, 1000.0])
def test_tone_round_trip_keeps_mel_and_pitch(vocoder: GriffinLimVocoder, freq: float) -> None:
    wave = tone(freq)
    mel = log_mel(wave)
    out = vocoder(mel)
    assert out.dtype == np.float32 and out.ndim == 1
    assert out.size == wave.size  # (frames - 1) * hop: the original length
    assert np.all(np.isfinite(out))
    error = (log_mel(out) - mel).abs()
    # Griffin-Lim cannot recreate the -100 dB valleys between partials (they sit at the
    # log floor); what is heard is the part within 40 dB of the peak.
    audible = mel > mel.max() - 40 / 20 * np.log(10)
    assert float(error[audible].mean()) < 0.2, float(error[audible].mean())
    convergence = (log_mel(out).exp() - mel.exp()).norm() / mel.exp().norm()
    assert float(convergence) < 0.2
    assert abs(dominant_frequency(out) - freq) < 2.0
    # the loudness comes back too (not just the shape of the spectrum)
    rms_in, rms_out = float(np.sqrt(np.mean(wave**2))), float(np.sqrt(np.mean(out**2)))
    assert 0.7 < rms_out / rms_in < 1.3


def test_nnls_inversion_beats_the_pseudo_inverse_on_a_tone(vocoder: GriffinLimVocoder) -> None:
    mel = log_mel(tone(440.0))
    nnls_error = float((log_mel(vocoder(mel)) - mel).abs().mean())
    pinv = GriffinLimVocoder(DEFAULT_MEL_CONFIG, inverse="pinv")
    pinv_error = float((log_mel(pinv(mel)) - mel).abs().mean())
    assert nnls_error < 0.5 * pinv_error, (nnls_error, pinv_error)


def test_deterministic_and_protocol(vocoder: GriffinLimVocoder) -> None:
    mel = log_mel(tone(330.0, seconds=1.0))
    assert np.array_equal(vocoder(mel), vocoder(mel))
    assert isinstance(vocoder, Vocoder)
    assert vocoder.describe()["mel_config_hash"] == DEFAULT_MEL_CONFIG.hash()


def test_silence_stays_silent(vocoder: GriffinLimVocoder) -> None:
    floor = float(np.log(DEFAULT_MEL_CONFIG.log_floor))
    out = vocoder(torch.full((64, 101), floor))
    assert np.abs(out).max() < 1e-3


def test_bad_input_is_refused(vocoder: GriffinLimVocoder) -> None:
    with pytest.raises(ValueError, match="log-mel \\[64, frames\\]"):
        vocoder(torch.zeros(80, 50))
    with pytest.raises(ValueError, match="NaN"):
        vocoder(torch.full((64, 50), float("nan")))
    with pytest.raises(ValueError, match="inverse"):
        GriffinLimVocoder(inverse="magic")
