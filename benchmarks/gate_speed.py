"""Gate search speed at 1 M segments: exact IndexFlatIP vs a two-stage exact-re-scored search.

Synthetic vectors shaped like real segment embeddings: artist centroids, track centroids
near their artist, segments near their track (all L2-normalised, 512-d), so neighbours
cluster the way CLAP segments of one track/artist do. Pass ``--seed-embeddings FILE.npy``
to replicate real embeddings (with small perturbations) instead of random centroids.

Two-stage search: exact search over per-track centroids, then exact IndexFlatIP-equivalent
scoring of every segment of the top ``--probe-tracks`` tracks. Recall is measured on planted
near-copies (a stored segment + noise, cosine ≈ 0.9 to its source): the fraction of queries
whose exact top-1 row is also the two-stage top-1.

Also times the gate's own scoring overhead (search + per-artist scores) per 10 s clip with
precomputed windows; CLAP embedding time is the embedder's and is measured separately.

    .venv/bin/python benchmarks/gate_speed.py --segments 1000000 --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

import numpy as np

log = logging.getLogger("gate_speed")


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic_segments(
    n: int, *, dim: int, per_track: int, tracks_per_artist: int, seed: int, base: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_tracks = n // per_track
    n_artists = max(1, n_tracks // tracks_per_artist)
    if base is not None:
        pick = rng.integers(0, base.shape[0], n_artists)
        artists = normalise(base[pick] + 0.05 * rng.standard_normal((n_artists, base.shape[1])))
        dim = base.shape[1]
    else:
        artists = normalise(rng.standard_normal((n_artists, dim)))
    track_artist = rng.integers(0, n_artists, n_tracks)
    # Per-dim spreads: track ~0.04 around its artist, segment ~0.03 around its track (cos ≈ 0.8).
    tracks = normalise(artists[track_artist] + 0.04 * rng.standard_normal((n_tracks, dim)))
    track_of = np.repeat(np.arange(n_tracks), per_track)
    vectors = np.empty((n_tracks * per_track, dim), dtype=np.float32)
    chunk = 100_000
    for start in range(0, vectors.shape[0], chunk):
        stop = min(start + chunk, vectors.shape[0])
        noise = rng.standard_normal((stop - start, dim)).astype(np.float32) * 0.03
        vectors[start:stop] = normalise(tracks[track_of[start:stop]] + noise)
    return vectors, track_of, track_artist


def plant_queries(
    vectors: np.ndarray, *, count: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    rows = rng.choice(vectors.shape[0], count, replace=False)
    queries = normalise(
        vectors[rows] + noise * rng.standard_normal((count, vectors.shape[1])).astype(np.float32)
    )
    return queries, rows


class TwoStageIndex:
    """Exact top tracks by centroid, then exact scoring of those tracks' segments."""

    def __init__(self, vectors: np.ndarray, track_of: np.ndarray, *, probe_tracks: int) -> None:
        import faiss

        self.vectors = vectors
        order = np.argsort(track_of, kind="stable")
        self.order = order
        counts = np.bincount(track_of)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        sums = np.add.reduceat(vectors[order], self.offsets[:-1], axis=0)
        self.centroids = faiss.IndexFlatIP(vectors.shape[1])
        self.centroids.add(normalise(sums))
        self.probe_tracks = probe_tracks

    def search(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, tracks = self.centroids.search(queries, self.probe_tracks)
        best_sim = np.full(queries.shape[0], -np.inf, dtype=np.float32)
        best_row = np.full(queries.shape[0], -1, dtype=np.int64)
        for q in range(queries.shape[0]):
            rows = np.concatenate(
                [self.order[self.offsets[t] : self.offsets[t + 1]] for t in tracks[q]]
            )
            sims = self.vectors[rows] @ queries[q]
            j = int(np.argmax(sims))
            best_sim[q], best_row[q] = sims[j], rows[j]
        return best_sim, best_row


def timed(fn: Any, *args: Any, repeat: int = 1) -> tuple[float, Any]:
    start = time.perf_counter()
    out = None
    for _ in range(repeat):
        out = fn(*args)
    return (time.perf_counter() - start) / repeat, out


def main() -> None:
    import faiss

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--per-track", type=int, default=30, help="segments per track")
    parser.add_argument("--tracks-per-artist", type=int, default=10)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--copy-noise", type=float, default=0.02, help="per-dim noise of planted copies"
    )
    parser.add_argument("--probe-tracks", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seed-embeddings", default=None, help=".npy of real segment embeddings")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    faiss.omp_set_num_threads(args.threads)

    base = np.load(args.seed_embeddings) if args.seed_embeddings else None
    t0 = time.perf_counter()
    vectors, track_of, _ = synthetic_segments(
        args.segments,
        dim=args.dim,
        per_track=args.per_track,
        tracks_per_artist=args.tracks_per_artist,
        seed=args.seed,
        base=base,
    )
    log.info("built %d x %d synthetic segments in %.1f s", *vectors.shape, time.perf_counter() - t0)
    queries, planted = plant_queries(
        vectors, count=args.queries, noise=args.copy_noise, seed=args.seed
    )
    copy_sim = float(np.mean(np.sum(queries * vectors[planted], axis=1)))

    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    single = queries[: min(50, args.queries)]
    t_single, _ = timed(lambda: [flat.search(single[i : i + 1], 1) for i in range(single.shape[0])])
    t_single /= single.shape[0]
    t_batch8, _ = timed(lambda: [flat.search(queries[i : i + 8], 1) for i in range(0, 64, 8)])
    t_batch8 /= 64
    t_all, (exact_sims, exact_rows) = timed(flat.search, queries, 1)
    exact_found = float(np.mean(exact_rows[:, 0] == planted))

    two = TwoStageIndex(vectors, track_of, probe_tracks=args.probe_tracks)
    t_two, (two_sims, two_rows) = timed(two.search, queries)
    t_two /= queries.shape[0]
    two_recall = float(np.mean(two_rows == exact_rows[:, 0]))
    two_found = float(np.mean(two_rows == planted))

    # Gate search overhead per clip: 3 windows (10 s, 5 s hop) searched exactly with k=256.
    windows = queries[:3]
    t_gate, _ = timed(flat.search, windows, 256, repeat=3)

    result = {
        "segments": int(vectors.shape[0]),
        "dim": int(vectors.shape[1]),
        "threads": args.threads,
        "planted_copy_cosine_mean": copy_sim,
        "exact_flatip_ms_per_query_single": 1000 * t_single,
        "exact_flatip_ms_per_query_batch8": 1000 * t_batch8,
        "exact_flatip_ms_per_query_batch_all": 1000 * t_all / queries.shape[0],
        "exact_planted_found": exact_found,
        "two_stage_probe_tracks": args.probe_tracks,
        "two_stage_ms_per_query": 1000 * t_two,
        "two_stage_recall_vs_exact_top1": two_recall,
        "two_stage_planted_found": two_found,
        "gate_search_ms_per_clip_exact_k256_3windows": 1000 * t_gate,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            log.info("%-48s %s", key, f"{value:.4f}" if isinstance(value, float) else value)


if __name__ == "__main__":
    main()
