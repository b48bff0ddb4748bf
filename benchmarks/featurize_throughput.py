"""Whole featurization throughput (decode + resample + segment + mel + descriptors + captions;
CLAP excluded) in audio-seconds per wall-second, on the demo corpus files.

Two worker processes (the machine's 2 cores), one torch thread each, files
handed out largest first. Run:
``.venv/bin/python benchmarks/featurize_throughput.py [--workers 2] [--limit N]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from flows.demo_corpus import demo_facts_path

DEMO_MANIFEST = demo_facts_path()  # the packaged copy of the demo corpus facts
BANNED = ["Mattias Westlund", "Doug Kaufman", "Ryan Reilly", "Will Savino", "Maxstack"]


def _init_worker() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


def _one(path: str) -> tuple[float, int, float, float]:
    """(audio seconds, segments, decode seconds, total seconds) for one file."""
    from training.featurizer import RecordingJob, decode_for_mel, featurize_wave

    start = time.perf_counter()
    wave = decode_for_mel(path)
    decoded = time.perf_counter()
    batch = featurize_wave(
        wave, RecordingJob(1, "0" * 64, path, tags=("orchestral",)), banned_names=BANNED
    )
    return len(wave) / 16000, batch.num_rows, decoded - start, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    with DEMO_MANIFEST.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if Path(r["path"]).exists()]
    rows.sort(key=lambda r: -float(r["duration_s"] or 0))
    paths = [r["path"] for r in rows][: args.limit or None]
    with ProcessPoolExecutor(args.workers, initializer=_init_worker) as pool:
        list(pool.map(_one, paths[-2:]))  # warm up imports and caches in both workers
        start = time.perf_counter()
        results = list(pool.map(_one, paths))
        wall = time.perf_counter() - start
    audio = sum(r[0] for r in results)
    cpu = sum(r[3] for r in results)
    print(
        json.dumps(
            {
                "files": len(paths),
                "workers": args.workers,
                "audio_seconds": round(audio, 1),
                "segments": sum(r[1] for r in results),
                "wall_seconds": round(wall, 2),
                "realtime_factor": round(audio / wall, 1),
                "per_core_realtime_factor": round(audio / cpu, 1),
                "decode_share_of_cpu": round(sum(r[2] for r in results) / cpu, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
