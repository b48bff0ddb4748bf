"""Deterministic synthetic segments (tones + noise) for tests, benchmarks and DDP smoke runs."""

from __future__ import annotations

import torch

from training.snapshot_data import SegmentData


def synthetic_segments(
    n: int, *, n_mels: int = 64, frames: int = 128, recordings: int = 4, seed: int = 0
) -> SegmentData:
    """Deterministic fake segments (tones + noise) for tests and the DDP smoke run."""
    g = torch.Generator().manual_seed(seed)
    bins = torch.arange(n_mels, dtype=torch.float32)[:, None]
    mels, conds, captions = [], [], []
    for _ in range(n):
        centre = float(torch.randint(4, n_mels - 4, (1,), generator=g))
        peak = torch.exp(-0.5 * ((bins - centre) / 2.0) ** 2).expand(n_mels, frames)
        mels.append(-6.0 + 5.0 * peak + 0.3 * torch.randn(n_mels, frames, generator=g))
        c = torch.zeros(512)
        c[int(centre)] = 1.0
        conds.append(c)
        captions.append(f"tone at bin {int(centre)}")
    rec = torch.arange(n) % recordings
    return SegmentData(
        mels=torch.stack(mels).to(torch.float16),
        valid_frames=torch.full((n,), frames, dtype=torch.int64),
        cond=torch.stack(conds),
        recording_ids=rec.to(torch.int64) + 1,
        segment_index=torch.arange(n, dtype=torch.int64) // recordings,
        captions=captions,
        artist_ids=[[] for _ in range(n)],
    )
