"""Replay transforms: shape, dtype, determinism, and that each does what its name says."""

from __future__ import annotations

import numpy as np
import pytest

from training.augment import (
    RATE,
    add_noise,
    calibration_transforms,
    crop,
    gain,
    high_pass,
    low_pass,
    mix_under,
    pitch_shift,
    random_augmentation,
    reencode,
    time_stretch,
)

SECONDS = 6.0
N = int(SECONDS * RATE)
T = np.arange(N) / RATE


def sine(freq: float, amplitude: float = 0.3) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * T)).astype(np.float32)


def music_like(seed: int = 0) -> np.ndarray:
    """A tone with a slow tremolo over a little noise: not silent, not a pure sine."""
    rng = np.random.default_rng(seed)
    tone = 0.3 * np.sin(2 * np.pi * 440 * T) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * T))
    return (tone + 0.02 * rng.standard_normal(N)).astype(np.float32)


def peak_hz(wave: np.ndarray) -> float:
    """Frequency of the largest spectral peak (8x zero-padded FFT: 0.02 Hz bins at 6 s)."""
    n = wave.size
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(n), 8 * n))
    return float(np.fft.rfftfreq(8 * n, 1 / RATE)[np.argmax(spectrum)])


def level_db(wave: np.ndarray, freq: float) -> float:
    """Magnitude of the FFT bin at ``freq`` (exact bins: 6 s gives 1/6 Hz resolution)."""
    spectrum = np.abs(np.fft.rfft(wave))
    return float(20 * np.log10(spectrum[int(round(freq * wave.size / RATE))] + 1e-12))


def rms_db(wave: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(wave, dtype=np.float64))))


EXPECTED_LENGTH = {
    "tempo_+5%": round(N / 1.05),
    "tempo_-5%": round(N / 0.95),
    "tempo_+10%": round(N / 1.10),
    "tempo_-10%": round(N / 0.90),
    "crop_5s": 5 * RATE,
}


@pytest.mark.parametrize("name", sorted(calibration_transforms()))
def test_every_calibration_transform_keeps_dtype_length_and_is_deterministic(name: str) -> None:
    wave = music_like()
    transform = calibration_transforms(seed=3)[name]
    out = transform(wave)
    assert out.dtype == np.float32 and out.ndim == 1
    assert out.shape == (EXPECTED_LENGTH.get(name, N),)
    assert np.isfinite(out).all()
    if name == "crop_5s":
        assert np.array_equal(out, wave[: out.size])  # the first 5 s, untouched
    else:
        assert not np.array_equal(out[: min(out.size, N)], wave[: min(out.size, N)])
    # Same input, same seed: the same bytes, also from a fresh set of transforms.
    assert np.array_equal(out, transform(wave))
    assert np.array_equal(out, calibration_transforms(seed=3)[name](wave))
    assert np.array_equal(wave, music_like()), "the input must not be modified in place"


def test_calibration_noise_depends_on_the_seed() -> None:
    wave = music_like()
    first = calibration_transforms(seed=0)["noise_20db"](wave)
    second = calibration_transforms(seed=1)["noise_20db"](wave)
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("semitones", [1, -1, 2, -2])
def test_pitch_shift_moves_the_peak_by_the_semitone_ratio_and_keeps_duration(
    semitones: int,
) -> None:
    out = pitch_shift(sine(440.0), semitones=semitones)
    assert out.shape == (N,)
    expected = 440.0 * 2 ** (semitones / 12)
    # The resampler's rate is rounded to 50 Hz: under 0.2 % pitch error by design.
    assert peak_hz(out) == pytest.approx(expected, rel=0.002)
    # The shifted tone fills the clip, not only its start.
    assert rms_db(out[-RATE:]) == pytest.approx(rms_db(out[:RATE]), abs=1.0)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_time_stretch_changes_duration_not_pitch(factor: float) -> None:
    out = time_stretch(sine(440.0), factor=factor)
    assert out.shape == (round(N / factor),)
    assert peak_hz(out) == pytest.approx(440.0, rel=0.001)


def test_low_pass_removes_energy_above_the_cutoff() -> None:
    wave = sine(1000.0) + sine(7000.0)
    out = low_pass(wave, cutoff_hz=4000)
    assert level_db(out, 1000.0) - level_db(wave, 1000.0) == pytest.approx(0.0, abs=0.5)
    assert level_db(out, 7000.0) - level_db(wave, 7000.0) < -40.0


def test_high_pass_removes_energy_below_the_cutoff() -> None:
    wave = sine(50.0) + sine(2000.0)
    out = high_pass(wave, cutoff_hz=300)
    assert level_db(out, 2000.0) - level_db(wave, 2000.0) == pytest.approx(0.0, abs=0.5)
    assert level_db(out, 50.0) - level_db(wave, 50.0) < -40.0


@pytest.mark.parametrize("db", [-6.0, -1.5, 3.0, 6.0])
def test_gain_changes_rms_by_the_stated_decibels(db: float) -> None:
    wave = music_like()
    assert rms_db(gain(wave, db=db)) - rms_db(wave) == pytest.approx(db, abs=1e-3)


def test_calibration_gain_up_is_clipped_to_full_scale() -> None:
    loud = sine(440.0, amplitude=0.9)
    out = calibration_transforms()["gain_+6db"](loud)
    assert out.max() == pytest.approx(1.0) and out.min() == pytest.approx(-1.0)
    assert calibration_transforms()["gain_-6db"](loud).max() == pytest.approx(0.9 / 2, rel=0.01)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_noise_is_added_at_the_stated_snr(snr_db: float) -> None:
    wave = music_like()
    out = add_noise(wave, snr_db=snr_db, rng=np.random.default_rng(7))
    noise = out.astype(np.float64) - wave
    assert rms_db(wave) - rms_db(noise) == pytest.approx(snr_db, abs=0.2)
    again = add_noise(wave, snr_db=snr_db, rng=np.random.default_rng(7))
    assert np.array_equal(out, again)


def test_crop_length_and_content() -> None:
    wave = music_like()
    head = crop(wave, seconds=2.5)
    assert head.shape == (int(2.5 * RATE),) and np.array_equal(head, wave[: head.size])
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    inner = crop(wave, seconds=2.0, rng=rng_a)
    assert inner.shape == (2 * RATE,)
    start = int(np.random.default_rng(5).integers(0, N - 2 * RATE))
    assert np.array_equal(inner, wave[start : start + 2 * RATE])
    assert np.array_equal(inner, crop(wave, seconds=2.0, rng=rng_b))
    # Already shorter than asked: returned whole.
    assert np.array_equal(crop(wave[:1000], seconds=2.0), wave[:1000])


@pytest.mark.parametrize("fmt", ["mp3", "ogg"])
def test_reencode_keeps_length_and_alignment(fmt: str) -> None:
    wave = music_like()
    out = reencode(wave, fmt=fmt)
    assert out.shape == (N,) and out.dtype == np.float32
    assert not np.array_equal(out, wave)
    # Lossy but aligned: no encoder delay left in the decoded signal.
    assert np.corrcoef(wave, out)[0, 1] > 0.95


def test_reencode_rejects_unknown_formats() -> None:
    with pytest.raises(ValueError, match=r"unknown format 'flac'.*'mp3', 'ogg'"):
        reencode(music_like(), fmt="flac")


def test_mix_under_puts_the_clip_below_the_other_track() -> None:
    wave, other = sine(440.0, amplitude=0.1), sine(660.0, amplitude=0.4)
    out = mix_under(wave, other, db=-6.0)
    assert out.shape == (N,)
    assert rms_db(out - other) - rms_db(other) == pytest.approx(-6.0, abs=0.01)
    # A shorter other track is looped to the clip's length.
    assert mix_under(wave, other[:RATE], db=-6.0).shape == (N,)


def test_random_augmentation_covers_every_choice_keeps_length_and_is_seeded() -> None:
    wave = music_like()[: 3 * RATE]
    # The first draw of each seed picks the transform; find one seed per choice.
    seeds: dict[int, int] = {}
    for seed in range(200):
        seeds.setdefault(int(np.random.default_rng(seed).integers(0, 7)), seed)
    assert sorted(seeds) == list(range(7))
    outputs = []
    for seed in seeds.values():
        out = random_augmentation(wave, np.random.default_rng(seed))
        assert out.shape == wave.shape and out.dtype == np.float32
        assert np.isfinite(out).all() and not np.array_equal(out, wave)
        assert np.array_equal(out, random_augmentation(wave, np.random.default_rng(seed)))
        outputs.append(out)
    # Seven different transforms, seven different results.
    assert len({o.tobytes() for o in outputs}) == 7


def test_lossy_reencode_of_a_long_recording_does_not_crash() -> None:
    """One libsndfile write of minutes of Vorbis overflowed its stack (a segfault); run in
    a child process so a crash fails this test instead of killing the run."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from training.augment import reencode\n"
        "w = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000 * 210) / 16000)).astype('float32')\n"
        "for fmt in ('ogg', 'mp3'):\n"
        "    out = reencode(w, fmt=fmt)\n"
        "    assert out.shape == w.shape and 0.25 < float(abs(out).max()) < 0.35, fmt\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
