"""Segmenting: full windows, a padded and marked last window, hops, downmix and resampling."""

from __future__ import annotations

import numpy as np
import pytest

from training.segments import (
    SegmentConfig,
    downmix,
    prepare_wave,
    resample,
    segment_wave,
    window_frames,
)

SR = 16000
WIN = int(10.24 * SR)


def test_windows_and_padded_partial_tail() -> None:
    wave = np.ones(WIN * 2 + 3 * SR, dtype=np.float32)
    segs = segment_wave(wave)
    assert [s.index for s in segs] == [0, 1, 2]
    assert [s.start_s for s in segs] == pytest.approx([0.0, 10.24, 20.48])
    assert [s.is_partial for s in segs] == [False, False, True]
    assert all(len(s.wave) == WIN for s in segs)
    last = segs[-1]
    assert last.valid_samples == 3 * SR
    assert last.valid_frames == 300 and last.frames == 1024 == window_frames(SegmentConfig())
    assert np.all(last.wave[3 * SR :] == 0) and np.all(last.wave[: 3 * SR] == 1)
    assert segs[0].valid_frames == 1024


def test_exact_multiple_has_no_partial_and_short_clip_is_kept() -> None:
    assert [s.is_partial for s in segment_wave(np.ones(WIN * 2, np.float32))] == [False, False]
    short = segment_wave(np.ones(SR // 2, np.float32))
    assert len(short) == 1 and short[0].is_partial and short[0].valid_frames == 50
    assert segment_wave(np.zeros(0, np.float32)) == []


def test_tiny_tail_is_dropped_but_configurable() -> None:
    wave = np.ones(WIN + SR // 10, dtype=np.float32)
    assert len(segment_wave(wave)) == 1
    assert len(segment_wave(wave, segment_config=SegmentConfig(min_partial_s=0.0))) == 2


def test_overlapping_hop() -> None:
    wave = np.ones(WIN * 2, dtype=np.float32)
    segs = segment_wave(wave, segment_config=SegmentConfig(hop_s=5.12))
    assert [s.start_s for s in segs] == pytest.approx([0.0, 5.12, 10.24])
    assert [s.is_partial for s in segs] == [False, False, False]
    with pytest.raises(ValueError, match="hop_s"):
        SegmentConfig(hop_s=20.0)


def test_downmix_and_resample() -> None:
    stereo = np.stack([np.ones(100), -np.ones(100) * 0.5], axis=1).astype(np.float32)
    assert downmix(stereo) == pytest.approx(np.full(100, 0.25))
    t = np.arange(44100) / 44100
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    out = resample(tone, orig_sr=44100, target_sr=16000)
    assert len(out) == 16000 and out.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(int(spectrum.argmax()) - 440) <= 1
    assert len(prepare_wave(np.stack([tone, tone], axis=1), sample_rate=44100)) == 16000
    with pytest.raises(ValueError, match="shape"):
        downmix(np.zeros((2, 2, 2)))
