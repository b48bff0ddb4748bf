"""probe_audio names every way a file can fail, measures good files, and fingerprints
re-encodes alike; load_audio decodes and resamples."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.common.audio import FORMATS, synth_music, write_music
from training.audio_io import (
    FINGERPRINT_BITS,
    AudioProbeError,
    fingerprint_distance,
    load_audio,
    probe_audio,
)


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_probe_measures_every_accepted_format(tmp_path: Path, ext: str) -> None:
    path = write_music(tmp_path / f"a.{ext}", seed=1, seconds=3.0)
    facts = probe_audio(path)
    assert facts.container == FORMATS[ext][0]
    assert facts.codec == f"{FORMATS[ext][0]}/{FORMATS[ext][1]}"
    assert facts.sample_rate == 22050 and facts.channels == 2
    assert facts.duration_s == pytest.approx(3.0, abs=0.01)
    assert 0.1 < facts.peak < 1.0
    assert -40 < facts.rms_dbfs < -10
    assert facts.silence_fraction < 0.01
    assert facts.fingerprint is not None and len(facts.fingerprint) == FINGERPRINT_BITS // 4


def test_silence_fraction_and_rms(tmp_path: Path) -> None:
    sr = 8000
    wave = np.zeros(sr * 2, np.float32)
    wave[:sr] = 0.5  # one second of DC at -6 dBFS, one second of digital silence
    sf.write(tmp_path / "half.wav", wave, sr, subtype="FLOAT")
    facts = probe_audio(tmp_path / "half.wav")
    assert facts.silence_fraction == pytest.approx(0.5)
    assert facts.peak == pytest.approx(0.5)
    assert facts.rms_dbfs == pytest.approx(20 * np.log10(np.sqrt(0.125)), abs=0.01)


def test_fingerprint_links_reencodes_and_separates_different_music(tmp_path: Path) -> None:
    prints = {
        (seed, ext): probe_audio(write_music(tmp_path / f"{seed}.{ext}", seed)).fingerprint
        for seed in (3, 4)
        for ext in FORMATS
    }
    same = [
        fingerprint_distance(prints[(s, a)], prints[(s, b)])  # type: ignore[arg-type]
        for s in (3, 4)
        for a in FORMATS
        for b in FORMATS
        if a < b
    ]
    different = [
        fingerprint_distance(prints[(3, a)], prints[(4, b)])  # type: ignore[arg-type]
        for a in FORMATS
        for b in FORMATS
    ]
    assert max(same) <= 40, same
    assert min(different) >= 150, different


def test_fingerprint_survives_resampling_and_gain(tmp_path: Path) -> None:
    import soxr

    music = synth_music(5)
    sf.write(tmp_path / "a.flac", music, 22050)
    sf.write(tmp_path / "b.ogg", 0.5 * soxr.resample(music, 22050, 44100), 44100)
    a = probe_audio(tmp_path / "a.flac").fingerprint
    b = probe_audio(tmp_path / "b.ogg").fingerprint
    assert a is not None and b is not None
    assert fingerprint_distance(a, b) <= 40


def _wav_bytes(tmp_path: Path) -> bytearray:
    write_music(tmp_path / "src.wav", seed=2, seconds=1.5)
    return bytearray((tmp_path / "src.wav").read_bytes())


def _expect(path: Path, code: str) -> AudioProbeError:
    with pytest.raises(AudioProbeError) as info:
        probe_audio(path)
    assert info.value.code == code, info.value
    return info.value


def test_zero_bytes(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    _expect(tmp_path / "empty.wav", "zero_bytes")


def test_not_audio(tmp_path: Path) -> None:
    (tmp_path / "notes.wav").write_text("these are liner notes, not audio\n" * 20)
    (tmp_path / "noise.bin").write_bytes(np.random.default_rng(0).bytes(5000))
    _expect(tmp_path / "notes.wav", "not_audio")
    _expect(tmp_path / "noise.bin", "not_audio")


def test_unsupported_codec(tmp_path: Path) -> None:
    data = _wav_bytes(tmp_path)
    data[20:22] = struct.pack("<H", 0x0161)  # WMA inside a WAV container
    (tmp_path / "wma.wav").write_bytes(bytes(data))
    error = _expect(tmp_path / "wma.wav", "unsupported_codec")
    assert "0x0161" in error.detail
    sf.write(tmp_path / "a.aiff", synth_music(1, seconds=1.0), 22050, format="AIFF")
    assert "AIFF" in _expect(tmp_path / "a.aiff", "unsupported_codec").detail


def test_impossible_headers(tmp_path: Path) -> None:
    data = _wav_bytes(tmp_path)
    data[24:28] = struct.pack("<I", 0)  # sample rate 0
    (tmp_path / "sr0.wav").write_bytes(bytes(data))
    assert "sample rate=0" in _expect(tmp_path / "sr0.wav", "impossible_header").detail
    data = _wav_bytes(tmp_path)
    data[22:24] = struct.pack("<H", 0)  # zero channels
    (tmp_path / "ch0.wav").write_bytes(bytes(data))
    _expect(tmp_path / "ch0.wav", "impossible_header")
    write_music(tmp_path / "src.flac", seed=2, seconds=1.0)
    flac = bytearray((tmp_path / "src.flac").read_bytes())
    # STREAMINFO bytes 10..12 (after the 4-byte magic and 4-byte block header) hold the rate.
    flac[8 + 10] = 0
    flac[8 + 11] = 0
    flac[8 + 12] &= 0x0F
    (tmp_path / "sr0.flac").write_bytes(bytes(flac))
    _expect(tmp_path / "sr0.flac", "impossible_header")


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_truncated_files(tmp_path: Path, ext: str) -> None:
    data = write_music(tmp_path / f"full.{ext}", seed=6, seconds=3.0).read_bytes()
    (tmp_path / f"cut.{ext}").write_bytes(data[: len(data) // 2])
    _expect(tmp_path / f"cut.{ext}", "truncated_or_corrupt")


def test_corrupt_flac(tmp_path: Path) -> None:
    data = bytearray(write_music(tmp_path / "full.flac", seed=7, seconds=3.0).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 400] = np.random.default_rng(1).bytes(400)
    (tmp_path / "bad.flac").write_bytes(bytes(data))
    _expect(tmp_path / "bad.flac", "truncated_or_corrupt")


def test_unreadable(tmp_path: Path) -> None:
    (tmp_path / "folder.wav").mkdir()
    _expect(tmp_path / "folder.wav", "unreadable")


def test_file_objects_are_probed_too(tmp_path: Path) -> None:
    path = write_music(tmp_path / "a.ogg", seed=8, seconds=2.0)
    with open(path, "rb") as f:
        assert probe_audio(f).duration_s == pytest.approx(2.0, abs=0.01)


def test_load_audio_resamples_and_downmixes(tmp_path: Path) -> None:
    sr = 22050
    t = np.arange(sr) / sr
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "a.flac", np.stack([left, np.zeros_like(left)], 1), sr, subtype="PCM_24")
    mono = load_audio(str(tmp_path / "a.flac"), sample_rate=16000)
    assert mono.dtype == np.float32 and mono.shape == (16000,)
    assert np.abs(mono).max() == pytest.approx(0.25, abs=0.01)  # averaged with a silent channel
    spectrum = np.abs(np.fft.rfft(mono))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 s → 1 Hz per bin
    stereo = load_audio((tmp_path / "a.flac").as_uri(), sample_rate=sr, mono=False)
    assert stereo.shape == (2, sr)
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(str(tmp_path / "a.flac"), sample_rate=0)


def test_non_finite_float_samples_are_corrupt(tmp_path: Path) -> None:
    wave = synth_music(9, seconds=1.0)
    wave[100, 1] = np.nan
    sf.write(tmp_path / "nan.wav", wave, 22050, subtype="FLOAT")
    _expect(tmp_path / "nan.wav", "truncated_or_corrupt")
