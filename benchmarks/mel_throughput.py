"""Log-mel throughput: training/mel.py vs. librosa with the same parameters.

Same clips (10.24 s windows of the demo corpus at 16 kHz), same run, one clip
at a time, best of ``--repeats``. ``torchaudio_*`` is :func:`training.mel.log_mel`
(torchaudio's window and filterbank, torch FFT, numpy complex magnitude);
``plain_MelSpectrogram_*`` is the unmodified ``torchaudio.transforms.MelSpectrogram``
for reference. Run: ``.venv/bin/python benchmarks/mel_throughput.py [--clips 60]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from flows.demo_corpus import demo_facts_path
from training.featurizer import decode_for_mel
from training.mel import MelConfig, log_mel, log_mel_reference
from training.segments import segment_wave

DEMO_MANIFEST = demo_facts_path()  # the packaged copy of the demo corpus facts


def demo_clips(limit: int) -> list[np.ndarray]:
    clips: list[np.ndarray] = []
    with DEMO_MANIFEST.open(newline="", encoding="utf-8") as f:
        paths = [r["path"] for r in csv.DictReader(f) if Path(r["path"]).exists()]
    for path in paths:
        for seg in segment_wave(decode_for_mel(path)):
            if not seg.is_partial:
                clips.append(seg.wave)
            if len(clips) >= limit:
                return clips
    return clips


def librosa_log_mel(wave: np.ndarray, c: MelConfig) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(
        y=wave,
        sr=c.sample_rate,
        n_fft=c.n_fft,
        win_length=c.win_length,
        hop_length=c.hop_length,
        n_mels=c.n_mels,
        fmin=c.f_min,
        fmax=c.f_max,
        power=c.power,
        htk=c.mel_scale == "htk",
        norm="slaney",
        center=c.center,
        pad_mode=c.pad_mode,
    )
    return np.log(np.maximum(mel, c.log_floor))


def timed(fn, clips: list[np.ndarray], repeats: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for clip in clips:
            fn(clip)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = MelConfig()
    clips = demo_clips(args.clips)
    # Warm up both (filterbank construction, FFT plans) and check they agree.
    ours, ref = log_mel(clips[0], config).numpy(), librosa_log_mel(clips[0], config)
    max_diff = float(np.max(np.abs(ours - ref)))
    results = {"clips": len(clips), "clip_seconds": 10.24, "max_abs_log_diff": max_diff}
    for threads in (torch.get_num_threads(), 1):
        torch.set_num_threads(threads)
        t = timed(lambda w: log_mel(w, config), clips, args.repeats)
        results[f"torchaudio_{threads}thr_ms_per_clip"] = round(1000 * t / len(clips), 3)
        t = timed(lambda w: log_mel_reference(w, config), clips, args.repeats)
        results[f"plain_MelSpectrogram_{threads}thr_ms_per_clip"] = round(1000 * t / len(clips), 3)
    t_librosa = timed(lambda w: librosa_log_mel(w, config), clips, args.repeats)
    results["librosa_ms_per_clip"] = round(1000 * t_librosa / len(clips), 3)
    best_torch = min(v for k, v in results.items() if k.startswith("torchaudio_"))
    results["speedup_vs_librosa"] = round(results["librosa_ms_per_clip"] / best_torch, 2)
    results["speedup_1thr_vs_librosa"] = round(
        results["librosa_ms_per_clip"] / results["torchaudio_1thr_ms_per_clip"], 2
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
