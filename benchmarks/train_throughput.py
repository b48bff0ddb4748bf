"""Training throughput (segments/s) and peak memory of the named configs on this machine.

Each config runs in its own process (so peak RSS is its own) on synthetic
segments of the featurized shape (64 mel bins x 1024 frames, random crops of
the config's ``crop_frames``), through the real :func:`training.train_loop.train`
with validation, plots and checkpoints pushed past the measured steps. The
first ``--warmup`` steps are excluded from the rate.

    .venv/bin/python benchmarks/train_throughput.py                 # debug and small
    .venv/bin/python benchmarks/train_throughput.py --configs small --steps 30 --json

Reported: parameters, segments/s, s/step, the estimated wall time of the
config's ``max_steps``, peak RSS (MB) and the RSS before training started
(the Python + torch baseline).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, *, steps: int, warmup: int, threads: int) -> dict[str, Any]:
    import torch

    from training.synthetic_data import synthetic_segments
    from training.train_config import get_config
    from training.train_loop import train

    if threads:
        torch.set_num_threads(threads)
    base = get_config(name)
    far = 10**9
    data = synthetic_segments(64, frames=1024, recordings=8)
    baseline = _rss_mb()
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up run (allocator, oneDNN kernels), then the timed run continues from it.
        config = base.replace(eval_every=far, sample_every=0, checkpoint_every=far)
        started = time.perf_counter()
        first = train(
            config, train_data=data, val_data=None, out_dir=tmp, stop_after=warmup, progress=False
        )
        timings["warmup"] = time.perf_counter() - started
        started = time.perf_counter()
        second = train(
            config,
            train_data=data,
            val_data=None,
            out_dir=tmp,
            resume_from=first.checkpoints[-1].path,
            stop_after=warmup + steps,
            progress=False,
        )
        timings["timed"] = time.perf_counter() - started
    # The resumed call also loads/saves one checkpoint; the loop's own rate excludes that.
    rate = second.segments_per_second
    step_s = base.batch_size / rate
    return {
        "config": name,
        "parameters": second.parameters,
        "batch_size": base.batch_size,
        "crop_frames": base.crop_frames,
        "torch_threads": torch.get_num_threads(),
        "timed_steps": steps,
        "segments_per_s": round(rate, 2),
        "s_per_step": round(step_s, 3),
        "max_steps": base.max_steps,
        "est_train_minutes": round(base.max_steps * step_s / 60, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
        "baseline_rss_mb": round(baseline, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["debug", "small"])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per config")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child-process mode
    args = parser.parse_args(argv)
    if args.one:
        result = measure(args.one, steps=args.steps, warmup=args.warmup, threads=args.threads)
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    results = []
    for name in args.configs:
        proc = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--one",
                name,
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--threads",
                str(args.threads),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
        return 0
    header = (
        "| config | params | batch x crop | threads | segments/s | s/step | max_steps "
        "| est. train min | peak RSS MB | baseline RSS MB |"
    )
    lines = [header, "|" + "---|" * 10]
    for r in results:
        lines.append(
            f"| {r['config']} | {r['parameters']:,} | {r['batch_size']} x {r['crop_frames']} "
            f"| {r['torch_threads']} | {r['segments_per_s']} | {r['s_per_step']} "
            f"| {r['max_steps']} | {r['est_train_minutes']} | {r['peak_rss_mb']} "
            f"| {r['baseline_rss_mb']} |"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
