"""Artist-imitation detection on music the tuning never touched: embedders and scoring
back-ends side by side, tuned on one half of the evaluation set and reported on the other.

    .venv/bin/python benchmarks/artist_eval.py [--csv benchmarks/data/gate_music.csv]
        [--split tune|report] [--method asnorm] [--feature pool] [--top-n 50]
        [--clap PATH] [--vgg] [--plot FILE.png] [--json]

The set (``benchmarks/data/gate_music.csv``, see its README) has the demo snapshot's 19
training files (``role=training``), unseen tracks by those 8 artists (``same_artist``)
and tracks by outside artists (``outside``), each in a ``tune`` or ``report`` half.

- Enrolment: every training file, whole, in 3 s windows.
- Cohort: the tune half's outside tracks whose sha256-of-path is even (``cohort``); the
  other tune outside tracks are the threshold negatives (``calibration``). The same
  partition is shipped with the gate (``generation/data/musicnn_cohort.npz``).
- Queries: a 30 s excerpt from the middle of each same_artist/outside track.
- Scores: per track, the highest score over the 8 artists (what the gate blocks on) and
  the score of the track's own artist; ROC AUC of same-artist against outside tracks;
  correct-artist rate (arg-max is the right artist); the flag rate of same_artist tracks
  and the false-block rate of outside tracks at the threshold that blocks 1 % of the
  tune half's calibration negatives, with 95 % Clopper-Pearson upper bounds.

With ``--vgg`` the musicnn package's MSD_vgg tagger is scored beside MSD-musicnn: features
``vgg_pool5`` (its flattened last map), ``vgg_pool1``..``vgg_pool4`` (per-channel mean and
max of an earlier map) and ``vgg_logits``. ``A+B`` names the concatenation of two features,
e.g. ``pool+vgg_pool5``.

Features are cached per file under ``--cache`` (default ``~/.cache/fairchord-bench``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

log = logging.getLogger("artist_eval")
SR = 16_000
DEFAULT_CSV = Path(__file__).resolve().parent / "data" / "gate_music.csv"


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def is_cohort(row: dict[str, str]) -> bool:
    """Tune-half outside tracks: half build the cohort, half are threshold negatives."""
    return hashlib.sha256(row["path"].encode()).digest()[0] % 2 == 0


def load_excerpt(path: str, seconds: float | None) -> np.ndarray:
    """Mono 16 kHz: the whole file, or ``seconds`` from its middle."""
    import soundfile as sf
    import torch
    import torchaudio

    info = sf.info(path)
    start, frames = 0, -1
    if seconds is not None and info.duration > seconds:
        start = int((info.duration - seconds) / 2 * info.samplerate)
        frames = int(seconds * info.samplerate)
    wave, rate = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
    mono = torch.from_numpy(wave.mean(axis=1))
    return torchaudio.functional.resample(mono, rate, SR).numpy() if rate != SR else mono.numpy()


def cached_outputs(
    embedder: Any, row: dict[str, str], cache: Path, seconds: float | None
) -> dict[str, np.ndarray]:
    key = hashlib.sha256(f"{row['path']}|{seconds}|{embedder.sha256}".encode()).hexdigest()[:24]
    file = cache / f"{key}.npz"
    if file.exists():
        with np.load(file) as z:
            return {k: z[k] for k in z.files}
    outputs = embedder.patch_outputs(load_excerpt(row["path"], seconds))
    np.savez(file, **outputs)
    return outputs


class ClapWindows:
    """The demo CLAP as an embedder for this comparison: its 10 s windows (5 s hop)."""

    def __init__(self, path: Path) -> None:
        from training.clap_embedder import ClapEmbedder

        self.clap = ClapEmbedder.load(path)
        self.sha256 = self.clap.sha256

    def patch_outputs(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        return {"clap": np.asarray(self.clap.embed_audio(wave), dtype=np.float32)}


class TopK:
    """The previous gate's artist score: per window, the mean of the top-3 cosine
    similarities to one artist's training windows; highest over windows."""

    method = "topk"

    def __init__(self, windows: dict[int, np.ndarray], artists: dict[int, list[int]]) -> None:
        self.party_ids = np.array(sorted({a for ids in artists.values() for a in ids}))
        self.banks = []
        for party in self.party_ids:
            rows = [w for rec, w in windows.items() if party in artists[rec]]
            bank = np.concatenate(rows)
            self.banks.append(bank / np.linalg.norm(bank, axis=1, keepdims=True))

    def scores(self, windows: np.ndarray) -> np.ndarray:
        q = windows / np.linalg.norm(windows, axis=1, keepdims=True)
        out = []
        for bank in self.banks:
            sims = q @ bank.T
            out.append(np.sort(sims, axis=1)[:, -3:].mean(axis=1).max())
        return np.array([out])


def features(outputs: dict[str, np.ndarray], feature: str) -> np.ndarray:
    if "+" in feature:
        return np.concatenate([features(outputs, part) for part in feature.split("+")], axis=1)
    if feature.startswith("vgg_pool") and feature != "vgg_pool5":
        return np.concatenate([outputs[f"{feature}_mean"], outputs[f"{feature}_max"]], axis=1)
    if feature == "clap":
        return outputs["clap"]
    if feature == "pool":
        return np.concatenate([outputs["mean_pool"], outputs["max_pool"]], axis=1)
    return outputs[feature]


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a positive outscores a negative (ties count half)."""
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def clopper_pearson_upper(k: int, n: int, conf: float = 0.95) -> float:
    """Two-sided ``conf`` Clopper-Pearson upper bound of a rate k/n."""
    from scipy.stats import beta

    if n == 0:
        return float("nan")
    if k >= n:
        return 1.0
    return float(beta.ppf(1 - (1 - conf) / 2, k + 1, n - k))


def threshold_at_rate(negatives: np.ndarray, rate: float) -> float:
    values = np.sort(negatives)[::-1]
    allowed = int(np.floor(rate * values.size))
    return float(np.nextafter(values[allowed], np.inf))


def evaluate(
    rows: list[dict[str, str]],
    outputs: dict[str, dict[str, np.ndarray]],
    *,
    feature: str,
    method: str,
    top_n: int,
    split: str,
    rate: float,
) -> dict[str, Any]:
    from generation.artist_model import fit_artist_model

    artists = sorted({r["artist"] for r in rows if r["role"] == "training"})
    party = {a: i for i, a in enumerate(artists)}
    training = {i: r for i, r in enumerate(rows) if r["role"] == "training"}
    cohort_rows = [
        r for r in rows if r["role"] == "outside" and r["split"] == "tune" and is_cohort(r)
    ]
    enrol = {i: features(outputs[r["path"]], feature) for i, r in training.items()}
    enrol_artists = {i: [party[r["artist"]]] for i, r in training.items()}
    model: Any
    if method == "topk":
        model = TopK(enrol, enrol_artists)
    else:
        model = fit_artist_model(
            enrol,
            enrol_artists,
            [features(outputs[r["path"]], feature) for r in cohort_rows],
            method=method,
            top_n=top_n,
        )

    def track_scores(role: str, half: str, calibration: bool = False) -> list[tuple[Any, ...]]:
        out = []
        for r in rows:
            if r["role"] != role or r["split"] != half:
                continue
            if role == "outside" and half == "tune" and is_cohort(r) != (not calibration):
                continue
            s = model.scores(features(outputs[r["path"]], feature)).max(axis=0)  # [A]
            order = [int(model.party_ids[j]) for j in np.argsort(-s)]
            own = (
                float(s[list(model.party_ids).index(party[r["artist"]])])
                if (r["artist"] in party)
                else None
            )
            out.append((float(s.max()), own, order[0], party.get(r["artist"]), r))
        return out

    calib = track_scores("outside", "tune", calibration=True)
    threshold = threshold_at_rate(np.array([c[0] for c in calib]), rate)
    pos = track_scores("same_artist", split)
    neg = calib if split == "tune" else track_scores("outside", split)
    pos_max = np.array([p[0] for p in pos])
    pos_own = np.array([p[1] for p in pos])
    neg_max = np.array([n[0] for n in neg])
    flagged = int((pos_max >= threshold).sum())
    blocked = int((neg_max >= threshold).sum())
    return {
        "feature": feature,
        "method": method,
        "top_n": top_n if method == "asnorm" else None,
        "split": split,
        "threshold": threshold,
        "calibration_negatives": len(calib),
        "cohort_tracks": len(cohort_rows),
        "positives": len(pos),
        "negatives": len(neg),
        "auc_max": roc_auc(pos_max, neg_max),
        "auc_own": roc_auc(pos_own, neg_max),
        "correct_artist": int(sum(p[2] == p[3] for p in pos)),
        "flagged": flagged,
        "flag_rate": flagged / max(len(pos), 1),
        "false_blocks": blocked,
        "false_block_rate": blocked / max(len(neg), 1),
        "false_block_upper95": clopper_pearson_upper(blocked, len(neg)),
        "blocked_negatives": [n[4]["path"] for n in neg if n[0] >= threshold],
        "_scores": {"pos": pos_max.tolist(), "neg": neg_max.tolist()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--split", choices=("tune", "report"), default="tune")
    parser.add_argument(
        "--feature",
        action="append",
        help="pool|mean_pool|max_pool|penultimate|logits (repeatable; default: all)",
    )
    parser.add_argument("--method", action="append", help="topk|cosine|snorm|asnorm (repeatable)")
    parser.add_argument(
        "--clap", type=Path, help="also score the demo CLAP at PATH (feature 'clap')"
    )
    parser.add_argument(
        "--vgg",
        action="store_true",
        help="also score MSD_vgg (features vgg_pool1..vgg_pool5, vgg_logits; 'A+B' concatenates)",
    )
    parser.add_argument("--top-n", type=int, action="append", help="AS-norm cohort size")
    parser.add_argument("--false-block-rate", type=float, default=0.01)
    parser.add_argument("--excerpt-seconds", type=float, default=30.0)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "fairchord-bench")
    parser.add_argument("--plot", type=Path, help="write score histograms of the first variant")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    from training.musicnn.embedder import MusicnnEmbedder
    from training.musicnn.vgg import MusicnnVggEmbedder

    torch.set_num_threads(2)
    # Only what this split needs: the training files, the tune half (cohort, calibration
    # negatives) and, for --split report, the report half.
    rows = [
        r
        for r in read_rows(args.csv)
        if Path(r["path"]).is_file() and r["split"] in ("train", "tune", args.split)
    ]
    embedders: list[Any] = [MusicnnEmbedder.load()]
    if args.clap:
        embedders.append(ClapWindows(args.clap))
    if args.vgg:
        embedders.append(MusicnnVggEmbedder.load())
    outputs: dict[str, dict[str, np.ndarray]] = {r["path"]: {} for r in rows}
    for embedder in embedders:
        kind = "clap" if isinstance(embedder, ClapWindows) else "musicnn"
        kind = "vgg" if isinstance(embedder, MusicnnVggEmbedder) else kind
        # Its outputs share names with musicnn's (logits): kept apart by a prefix.
        prefix = "vgg_" if kind == "vgg" else ""
        cache = args.cache / kind
        cache.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        for i, r in enumerate(rows):
            seconds = None if r["role"] == "training" else args.excerpt_seconds
            out = cached_outputs(embedder, r, cache, seconds)
            outputs[r["path"]].update({prefix + k: v for k, v in out.items()})
            if (i + 1) % 50 == 0:
                log.info(
                    "embedded %d/%d files (%.0f s)", i + 1, len(rows), time.perf_counter() - start
                )
    results = []
    default_features = ["pool", "mean_pool", "max_pool", "penultimate", "logits"]
    if args.clap:
        default_features.append("clap")
    if args.vgg:
        default_features += ["vgg_pool5", "vgg_pool4", "vgg_pool3", "pool+vgg_pool5"]
    for feature in args.feature or default_features:
        for method in args.method or ["topk", "cosine", "snorm", "asnorm"]:
            for top_n in (args.top_n or [50]) if method == "asnorm" else [0]:
                results.append(
                    evaluate(
                        rows,
                        outputs,
                        feature=feature,
                        method=method,
                        top_n=top_n,
                        split=args.split,
                        rate=args.false_block_rate,
                    )
                )
    if args.plot and results:
        plot_histograms(results[0], args.plot)
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "_scores"} for r in results]))
    else:
        print(
            f"{'feature':<12} {'method':<7} {'n':>4} {'AUC max':>8} {'AUC own':>8} "
            f"{'correct':>8} {'flagged':>9} {'false blocks (upper 95%)':>26}"
        )
        for r in results:
            print(
                f"{r['feature']:<12} {r['method']:<7} {r['top_n'] or '':>4} {r['auc_max']:>8.3f} "
                f"{r['auc_own']:>8.3f} {r['correct_artist']:>3}/{r['positives']:<4} "
                f"{r['flagged']:>3}/{r['positives']:<4} {r['false_blocks']:>4}/{r['negatives']:<4}"
                f" {r['false_block_rate']:6.1%} ({r['false_block_upper95']:.1%})"
            )
    return 0


def plot_histograms(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    pos, neg = result["_scores"]["pos"], result["_scores"]["neg"]
    bins = np.linspace(min(pos + neg), max(pos + neg), 40)
    ax.hist(neg, bins=bins, alpha=0.6, label=f"outside artists ({len(neg)} tracks)")
    ax.hist(pos, bins=bins, alpha=0.6, label=f"unseen tracks by training artists ({len(pos)})")
    ax.axvline(result["threshold"], color="k", linestyle="--", label="calibrated threshold")
    ax.set_xlabel(f"highest artist score ({result['feature']}, {result['method']})")
    ax.set_ylabel("tracks")
    ax.set_title(f"artist scores, {result['split']} half")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
