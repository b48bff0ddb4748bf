"""Embedding cost per 10 s clip: MSD-musicnn (the gate's embedder), MSD_vgg, and both (what
a concatenated window costs), measured in interleaved rounds in one process so that load
from other work on the machine hits every candidate alike.

    .venv/bin/python benchmarks/musicnn_vgg_speed.py [--audio FILE] [--threads 2]
        [--rounds 15] [--json]

The clip is seconds 30-40 of ``--audio`` (default the wesnoth track gate_speed.py uses),
decoded to 16 kHz mono as the gate decodes it. Each round times one ``embed_audio`` of
each candidate; the median and the fastest round are reported, in wall-clock time and in
this process's CPU time. On a machine shared with other work the wall-clock times stretch
with the load; the CPU time with ``--threads 1`` is the steadier estimate of the work itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

log = logging.getLogger("musicnn_vgg_speed")
DEFAULT_AUDIO = "/usr/share/games/wesnoth/1.16/data/core/music/battle-epic.ogg"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--audio", default=DEFAULT_AUDIO, help="clip source (seconds 30-40)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not Path(args.audio).is_file():
        print(f"no audio file at {args.audio}", file=sys.stderr)
        return 2

    import torch

    from generation.gate_models import load_wave_16k
    from training.musicnn.embedder import MusicnnEmbedder
    from training.musicnn.vgg import MusicnnVggEmbedder

    torch.set_num_threads(args.threads)
    wave = load_wave_16k(args.audio)[16_000 * 30 : 16_000 * 40]
    musicnn = MusicnnEmbedder.load()
    vgg = MusicnnVggEmbedder.load()

    def both(w: np.ndarray) -> np.ndarray:
        return np.concatenate([musicnn.embed_audio(w), vgg.embed_audio(w)], axis=1)

    candidates: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "msd_musicnn": musicnn.embed_audio,
        "msd_vgg": vgg.embed_audio,
        "musicnn_plus_vgg": both,
    }
    for embed in candidates.values():
        embed(wave)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in candidates}
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.rounds):
        for name, embed in candidates.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            embed(wave)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    result = {
        "threads": args.threads,
        "rounds": args.rounds,
        "clip_seconds": len(wave) / 16_000,
        **{f"{name}_ms_median": 1000 * float(np.median(t)) for name, t in times.items()},
        **{f"{name}_ms_min": 1000 * float(np.min(t)) for name, t in times.items()},
        **{f"{name}_cpu_ms_median": 1000 * float(np.median(t)) for name, t in cpu.items()},
    }
    if args.json:
        print(json.dumps(result))
    else:
        for name, t in times.items():
            print(
                f"{name:<18} {1000 * np.median(t):7.1f} ms median  "
                f"{1000 * np.min(t):7.1f} ms fastest  {1000 * np.median(cpu[name]):7.1f} ms CPU "
                "median  per 10 s clip"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
