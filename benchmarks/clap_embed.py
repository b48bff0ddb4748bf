"""CLAP audio embedding speed and memory: ms per 10 s clip at batch 8 (and at batch 1, the
path ``fairchord clap embed`` takes today), through :meth:`ClapEmbedder.embed_windows`
(16 kHz -> 48 kHz resample, laion-clap input dicts, HTSAT-tiny, projection, L2 norm).

Weights: our trained CLAP when ``$FAIRCHORD_HOME/clap/clap.pt`` (or ``--clap PATH``) exists,
otherwise the same architecture freshly initialised. Random weights cost the same
arithmetic, so the speed holds; the embeddings themselves mean nothing then.

Memory, two measures:

* ``ru_maxrss`` (``resource.getrusage``): the process's peak resident set, model
  weights and torch tensors included; reported after loading and after each batch size;
* ``tracemalloc``: peak of *Python-level* allocations during one batch-8 pass. torch's
  tensors are allocated in C++ and are not seen by it; it shows only the Python overhead.

Run: ``.venv/bin/python benchmarks/clap_embed.py [--batch 8] [--repeats 3] [--threads 2]``.
Times are medians over the repeats, as wall time and as this process's CPU time (all its
threads). The 2 cores may be shared with other processes, which inflates wall time but
not CPU time; the 1-minute load average at start and end is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
import tracemalloc
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _clips(n: int, seed: int) -> Any:
    """``n`` 10 s clips at 16 kHz: a tone with a tremolo over noise, different per clip."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    t = np.arange(160_000) / 16_000
    rows = [
        0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * t))
        + 0.02 * rng.standard_normal(t.size)
        for _ in range(n)
    ]
    return torch.from_numpy(np.stack(rows).astype(np.float32))


def _load(clap: Path | None) -> tuple[Any, str]:
    from training.clap_embedder import ClapEmbedder, build_clap_module, default_clap_path

    path = clap or default_clap_path()
    if path.is_file():
        embedder = ClapEmbedder.load(path)
        return embedder, f"trained: {path} (sha256 {embedder.sha256[:12]})"
    module = build_clap_module()
    module.model.eval()
    embedder = ClapEmbedder(module=module, sha256="0" * 64, path=Path("untrained"))
    return embedder, "random (untrained HTSAT-tiny + transformer: speed only, no checkpoint found)"


def _ms_per_clip(embedder: Any, batch: int, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (all threads of this process) milliseconds per clip, one value per run."""
    wall, cpu = [], []
    for r in range(repeats):
        windows = _clips(batch, seed=r)
        started, cpu_started = time.perf_counter(), time.process_time()
        embedder.embed_windows(windows, batch_size=batch)
        wall.append(1000 * (time.perf_counter() - started) / batch)
        cpu.append(1000 * (time.process_time() - cpu_started) / batch)
    return wall, cpu


def _signal_path_ms_per_clip(embedder: Any, batch: int) -> float:
    from training.clap_embedder import audio_inputs, to_clap_rate

    windows = _clips(batch, seed=99)
    started = time.perf_counter()
    audio_inputs(embedder.module, to_clap_rate(windows))
    return 1000 * (time.perf_counter() - started) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's own)")
    parser.add_argument("--clap", type=Path, default=None, help="checkpoint (default: ours)")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    before_load = _maxrss_mb()
    started = time.perf_counter()
    embedder, weights = _load(args.clap)
    load_s = time.perf_counter() - started
    after_load = _maxrss_mb()

    embedder.embed_windows(_clips(1, seed=123))  # warm-up: allocator, oneDNN kernels
    single, single_cpu = _ms_per_clip(embedder, 1, args.repeats)
    after_single = _maxrss_mb()
    batched, batched_cpu = _ms_per_clip(embedder, args.batch, args.repeats)
    after_batch = _maxrss_mb()

    tracemalloc.start()
    embedder.embed_windows(_clips(args.batch, seed=7), batch_size=args.batch)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(
        json.dumps(
            {
                "weights": weights,
                "parameters_m": round(
                    sum(p.numel() for p in embedder.module.model.parameters()) / 1e6, 1
                ),
                "torch_threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(),
                "load_average_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)],
                "load_seconds": round(load_s, 1),
                "batch": args.batch,
                "repeats": args.repeats,
                f"ms_per_clip_batch{args.batch}": round(statistics.median(batched), 1),
                f"ms_per_clip_batch{args.batch}_runs": [round(v, 1) for v in batched],
                f"cpu_ms_per_clip_batch{args.batch}": round(statistics.median(batched_cpu), 1),
                "ms_per_clip_batch1": round(statistics.median(single), 1),
                "ms_per_clip_batch1_runs": [round(v, 1) for v in single],
                "cpu_ms_per_clip_batch1": round(statistics.median(single_cpu), 1),
                "signal_path_ms_per_clip": round(_signal_path_ms_per_clip(embedder, args.batch), 1),
                "clips_per_s": round(1000 / statistics.median(batched), 2),
                "audio_realtime_factor": round(10_000 / statistics.median(batched), 1),
                "maxrss_mb": {
                    "before_load": round(before_load, 1),
                    "after_load": round(after_load, 1),
                    "after_batch1": round(after_single, 1),
                    f"after_batch{args.batch}": round(after_batch, 1),
                },
                f"batch{args.batch}_pass_extra_rss_mb": round(after_batch - after_single, 1),
                f"tracemalloc_python_peak_mb_batch{args.batch}": round(traced_peak / 2**20, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
