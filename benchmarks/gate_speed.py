"""Gate search speed at 1 M segments: exact IndexFlatIP vs a two-stage exact-re-scored search.

Synthetic vectors shaped like real segment embeddings: artist centroids, track centroids
near their artist, segments near their track (all L2-normalised, 512-d), so neighbours
cluster the way CLAP segments of one track/artist do. Pass ``--seed-embeddings FILE.npy``
to replicate real embeddings (with small perturbations) instead of random centroids.

Two-stage search (``generation.search.TwoStageSearch``, what the gate uses where
calibration measured it safe): exact search over per-track centroids, then exact scoring
of every segment of the top ``--probe-tracks`` tracks. Recall is measured on planted
near-copies (a stored segment + noise, cosine ≈ 0.9 to its source): the fraction of queries
whose exact top-1 row is also the two-stage top-1.

Then the whole gate per 10 s clip, as ``SimilarityGate.check`` runs it: the MSD-musicnn
embedding of the clip (three 3 s windows; the demo CLAP, ``--clap``, default the home's,
is timed beside it as the peer it replaced), the artist model's scores, search + per-artist
scores (``SimilarityGate.score_windows``) at the synthetic size, exact and two-stage, and
the fingerprint match (``match_windows``, as the gate calls it) against a calibrated
index's fingerprints (``--fingerprints``, default the newest under $FAIRCHORD_HOME), and
the melody match against that home's newest melody index.

    .venv/bin/python benchmarks/gate_speed.py --segments 1000000 --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from generation.fingerprint import FingerprintIndex, QuadTable
from generation.fingerprint_store import FingerprintStore
from generation.gate import SimilarityGate
from generation.index import GateIndex
from generation.search import TwoStageSearch

log = logging.getLogger("gate_speed")
DEFAULT_AUDIO = "/usr/share/games/wesnoth/1.16/data/core/music/battle-epic.ogg"


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


class StandInEmbedder:
    """Only its digest is used: the benchmark feeds precomputed windows to score_windows."""

    sha256 = "synthetic"

    def embed_audio(self, wave_16k: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def clip_costs(
    clap: str | None, fingerprints: str | None, audio: str | None
) -> tuple[float | None, float | None, int | None, dict[str, float]]:
    """Median embedding (the gate's MSD-musicnn; the demo CLAP as the peer it replaced),
    artist-model and fingerprint-match seconds for one 10 s clip, where available."""
    from generation.gate_models import load_wave_16k
    from provenance.settings import fairchord_home

    home = fairchord_home()
    clap_path = Path(clap) if clap else home / "clap" / "clap.pt"
    fp_paths = (
        [Path(fingerprints)]
        if fingerprints
        else sorted(
            [
                *home.glob("runs/*/gate-index/*/fingerprints.npz"),
                *home.glob("runs/*/gate-index/*/fingerprints/manifest.json"),
            ],
            key=lambda p: p.stat().st_mtime,
        )
    )
    source = Path(audio) if audio else Path(DEFAULT_AUDIO)
    if not source.is_file():
        log.warning("no audio clip at %s: skipping embedding and fingerprint timings", source)
        return None, None, None, {}
    wave = load_wave_16k(str(source))[16_000 * 30 : 16_000 * 40]
    t_embed = t_fp = None
    hashes = None
    extra: dict[str, float] = {}
    from training.musicnn.embedder import MusicnnEmbedder

    musicnn = MusicnnEmbedder.load()
    musicnn.embed_audio(wave)  # warm-up
    t_embed = float(np.median([timed(musicnn.embed_audio, wave)[0] for _ in range(21)]))
    models = sorted(
        home.glob("runs/*/gate-index/*/artist_model.npz"), key=lambda p: p.stat().st_mtime
    )
    if models:
        from generation.artist_model import ArtistModel

        model = ArtistModel.from_bytes(models[-1].read_bytes())
        raw = musicnn.embed_audio(wave)
        extra["artist_model_ms_per_10s_clip"] = 1000 * float(
            np.median([timed(model.scores, raw)[0] for _ in range(7)])
        )
    if clap_path.is_file():
        from training.clap_embedder import ClapEmbedder

        embedder = ClapEmbedder.load(clap_path)
        embedder.embed_audio(wave)  # warm-up
        extra["peer_demo_clap_embed_ms_per_10s_clip"] = 1000 * float(
            np.median([timed(embedder.embed_audio, wave)[0] for _ in range(5)])
        )
    else:
        log.warning("no CLAP at %s: skipping the peer CLAP timing", clap_path)
    if fp_paths:
        reference = load_fingerprints(fp_paths[-1])
        hashes = len(reference)
        reference.match_windows(wave)  # warm-up
        t_fp = float(np.median([timed(reference.match_windows, wave)[0] for _ in range(5)]))
    else:
        log.warning("no calibrated fingerprints found: skipping the fingerprint timing")
    melodies = sorted(home.glob("runs/*/gate-index/*/melody.npz"), key=lambda p: p.stat().st_mtime)
    if melodies:
        from generation.melody import MelodyIndex

        melody = MelodyIndex.from_bytes(melodies[-1].read_bytes())
        extra["melody_index_seconds"] = melody.seconds
        melody.match(wave)  # warm-up: the index's block transforms are computed once
        extra["melody_match_ms_per_10s_clip"] = 1000 * float(
            np.median([timed(melody.match, wave)[0] for _ in range(5)])
        )
    else:
        log.warning("no calibrated melody index found: skipping the melody timing")
    return t_embed, t_fp, hashes, extra


def load_fingerprints(path: Path) -> QuadTable:
    """A calibrated index's fingerprints: a ``fingerprints.npz`` (indexes calibrated before
    the partitioned layout), or the partitioned table under ``fingerprints/`` (``path`` its
    folder or manifest), opened with the digest its index's ``meta.json`` records."""
    if path.suffix == ".npz":
        return FingerprintIndex.from_bytes(path.read_bytes())
    directory = path.parent if path.name == "manifest.json" else path
    meta = json.loads((directory.parent / "meta.json").read_text())
    return FingerprintStore(directory, meta["thresholds"]["fingerprint"]["sha256"])


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
    parser.add_argument("--threads", type=int, default=2, help="faiss and torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seed-embeddings", default=None, help=".npy of real segment embeddings")
    parser.add_argument("--clap", default=None, help="CLAP checkpoint (default: the home's)")
    parser.add_argument(
        "--fingerprints",
        default=None,
        help="a calibrated index's fingerprints.npz or fingerprints/ folder (default: the home's)",
    )
    parser.add_argument("--audio", default=None, help=f"10 s clip source (default {DEFAULT_AUDIO})")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    faiss.omp_set_num_threads(args.threads)
    import torch

    torch.set_num_threads(args.threads)  # the embedders' (torch's default: every core)

    load_at_start = os.getloadavg()
    base = np.load(args.seed_embeddings) if args.seed_embeddings else None
    t0 = time.perf_counter()
    vectors, track_of, artist_of = synthetic_segments(
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

    two = TwoStageSearch(vectors, track_of, probe_tracks=args.probe_tracks)
    t_two, (two_sims, two_rows) = timed(two.search, queries, 1)
    t_two /= queries.shape[0]
    two_recall = float(np.mean(two_rows[:, 0] == exact_rows[:, 0]))
    two_found = float(np.mean(two_rows[:, 0] == planted))

    # Gate search + per-artist scoring per 10 s clip (one window), exact and two-stage.
    index = GateIndex(
        index=flat,
        recording_ids=track_of,
        segment_index=np.zeros(track_of.size, dtype=np.int64),
        artist_ids=[[int(a)] for a in artist_of[track_of]],
        embedder_sha256="synthetic",
        training_run_id=0,
        snapshot_digest=None,
        sha256="synthetic",
        thresholds={},
        fingerprints=FingerprintIndex.build({}, {}),
    )
    thresholds: dict[str, Any] = {"track": 0.9, "artist": 0.9, "fingerprint": {"threshold": 10}}
    stand_in = StandInEmbedder()
    exact_gate = SimilarityGate(index, stand_in, thresholds)
    two_gate = SimilarityGate(
        index,
        stand_in,
        {
            **thresholds,
            "search": {
                "method": "two-stage",
                "probe_tracks": args.probe_tracks,
                "planted_recall": two_found,
            },
        },
    )
    windows = queries[:20]
    t_score_exact, _ = timed(lambda: [exact_gate.score_windows(w[None]) for w in windows[:5]])
    t_score_exact /= 5
    t_score_two, _ = timed(lambda: [two_gate.score_windows(w[None]) for w in windows])
    t_score_two /= windows.shape[0]
    t_embed, t_fp, fp_hashes, extra = clip_costs(args.clap, args.fingerprints, args.audio)

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
        "gate_score_windows_ms_per_clip_exact": 1000 * t_score_exact,
        "gate_score_windows_ms_per_clip_two_stage": 1000 * t_score_two,
        "musicnn_embed_ms_per_10s_clip": None if t_embed is None else 1000 * t_embed,
        **extra,
        "fingerprint_match_ms_per_10s_clip": None if t_fp is None else 1000 * t_fp,
        "fingerprint_reference_hashes": fp_hashes,
        "load_average_1_5_15_at_start": " / ".join(f"{x:.2f}" for x in load_at_start),
        "load_average_1_5_15_at_end": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    if t_embed is not None and t_fp is not None:
        for name, t_score in (("exact", t_score_exact), ("two_stage", t_score_two)):
            artist_ms = extra.get("artist_model_ms_per_10s_clip", 0.0)
            melody_ms = extra.get("melody_match_ms_per_10s_clip", 0.0)
            result[f"gate_total_ms_per_10s_clip_{name}"] = (
                1000 * (t_embed + t_score + t_fp) + artist_ms + melody_ms
            )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            log.info("%-48s %s", key, f"{value:.4f}" if isinstance(value, float) else value)


if __name__ == "__main__":
    main()
