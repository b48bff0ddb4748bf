"""Griffin-Lim vocoder: pseudo-inverse vs. NNLS inversion of the mel filterbank.

Each clip (a 440 Hz tone with its octave, a C-major chord, and 10 s excerpts of
up to ``--tracks`` Debian music files from the demo corpus manifest) goes
through log-mel -> :class:`generation.vocoder.GriffinLimVocoder` -> log-mel.
Reported per clip and inversion: the mean absolute log-mel error after
re-analysis, the spectral convergence of the output's STFT magnitude against
the original's (``||S' - S|| / ||S||``), and the best-of-``--repeats`` wall time
of the inversion and of the whole vocoder per 10 s of audio.
Run: ``.venv/bin/python benchmarks/vocoder_choice.py [--tracks 2] [--json]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from generation.vocoder import GriffinLimVocoder, _stft_window
from training.mel import DEFAULT_MEL_CONFIG, log_mel

DEMO_MANIFEST = Path(__file__).resolve().parent.parent / "provenance" / "data" / "demo_manifest.csv"
SR = DEFAULT_MEL_CONFIG.sample_rate


def synthetic(name: str, seconds: float = 10.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    if name == "tone":
        wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 880 * t)
    else:
        wave = 0.1 * sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0, 523.3))
    return wave.astype(np.float32)


def music(limit: int) -> dict[str, np.ndarray]:
    import soundfile as sf
    import soxr

    clips: dict[str, np.ndarray] = {}
    if not DEMO_MANIFEST.exists():
        return clips
    with DEMO_MANIFEST.open(newline="", encoding="utf-8") as f:
        paths = [r["path"] for r in csv.DictReader(f) if Path(r["path"]).exists()]
    for path in paths[:limit]:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        wave = soxr.resample(data.mean(axis=1), rate, SR).astype(np.float32)
        clips[Path(path).name] = wave[20 * SR : 30 * SR]  # skip intros
    return clips


def magnitude(wave: torch.Tensor) -> torch.Tensor:
    c = DEFAULT_MEL_CONFIG
    return torch.stft(
        wave, c.n_fft, c.hop_length, c.win_length, _stft_window(c), return_complex=True
    ).abs()


def best_of(repeats: int, fn):  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clips = {"tone": synthetic("tone"), "chord": synthetic("chord"), **music(args.tracks)}
    rows = []
    for inverse in ("pinv", "nnls"):
        vocoder = GriffinLimVocoder(inverse=inverse)
        for name, wave in clips.items():
            mel_log = log_mel(wave)
            per_10s = 10.0 / (wave.size / SR)
            t_inv, _ = best_of(args.repeats, lambda v=vocoder, m=mel_log: v.mel_to_linear(m.exp()))
            t_all, out = best_of(args.repeats, lambda v=vocoder, m=mel_log: v(m))
            target = magnitude(torch.from_numpy(wave))
            got = magnitude(torch.from_numpy(out))
            rows.append(
                {
                    "inverse": inverse,
                    "clip": name,
                    "log_mel_error": round(float((log_mel(out) - mel_log).abs().mean()), 4),
                    "spectral_convergence": round(float((got - target).norm() / target.norm()), 4),
                    "inverse_ms_per_10s": round(1000 * t_inv * per_10s, 1),
                    "vocoder_ms_per_10s": round(1000 * t_all * per_10s, 1),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    header = f"{'inverse':8} {'clip':32} {'logmel_err':>10} {'SC':>6} {'inv ms':>8} {'total ms':>9}"
    print(header)
    for r in rows:
        print(
            f"{r['inverse']:8} {r['clip']:32} {r['log_mel_error']:10.3f} "
            f"{r['spectral_convergence']:6.3f} {r['inverse_ms_per_10s']:8.1f} "
            f"{r['vocoder_ms_per_10s']:9.1f}"
        )


if __name__ == "__main__":
    main()
