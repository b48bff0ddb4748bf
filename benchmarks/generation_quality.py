"""Generation quality per sampler setting, on a trained checkpoint's held-back segments.

For every setting (steps, solver, guidance interval, precision, Griffin-Lim
iterations; :class:`generation.request.SamplingSettings`), one 10 s clip is
generated per held-back segment, for that segment's caption and a fixed seed,
and judged by the two figures of ``fairchord eval``:

- ``fd_musicnn``: the Fréchet distance between MSD-musicnn embeddings (the
  gate's embedder, a pretrained tagger the project did not train; the
  200-d penultimate layer, the mean of a clip's 3 s patches) of the generated
  clips and of the real audio of the same segments (lower is better);
- ``clap_score``: the mean cosine between each clip's audio embedding and its
  caption's text embedding, in the run's own CLAP (the demo CLAP).

The held-back segments are those of ``fairchord eval`` (whole recordings the
training run kept out, :func:`flows.cli.eval.held_back_clips`), taken
round-robin over the recordings and split in two by alternation: settings are
**tuned** on the even segments with seeds ``1000 + i`` and the chosen one is
**reported** against the baseline on the odd segments with seeds ``i``, so the
reported figures are not the ones the choice was made on. The choice: the
candidate with the fewest network evaluations whose ``fd_musicnn`` on the tune
split is within 5 % of the baseline's (or lower) and whose CLAP score is no
more than 0.01 below it; ties go to the lower distance.

With a dozen clips per split, fewer than musicnn's 200 dimensions, the
covariances are rank-deficient and FD is biased upwards; every setting uses
the same segments and seeds, so the figures compare with each other, not with
published FAD values. ``vocoded_real`` (the real segments' stored mels through
the vocoder) is the ceiling for each Griffin-Lim iteration count.

Measured on the demo checkpoint (``demo`` config, 24-channel UNet, 300 steps;
two held-back recordings, so the alternation put recording 4 in the tune split,
7 segments, and recording 13 in the report split, 6 segments):

====================================  =====  ==============  ==============
setting                               evals  tune FD / CLAP  report FD / CLAP
====================================  =====  ==============  ==============
baseline: 2M, 25 steps, full CFG      50     128.3 / 0.0725  170.6 / 0.0758
2M, 10 steps, CFG interval            13     119.7 / 0.0720  165.9 / 0.0753
3M, 10 steps, CFG interval            13     130.2 / 0.0718
2M, 8 steps, CFG interval             10     126.0 / 0.0720
2M, 8 steps, interval, Griffin-Lim 16 10     120.2 / 0.0722  159.2 / 0.0754
2M, 6 steps, interval (chosen)        7      124.1 / 0.0715  166.1 / 0.0748
vocoded real (Griffin-Lim 32 / 16)           77.4 / 55.8     62.4 / 51.4
====================================  =====  ==============  ==============

With 6-7 clips per split the distance moves by more than 5 % between two
vocoders of the same real audio (77.4 against 55.8), so these figures say the
fewer-step settings are not measurably worse on this model, not that they are
better; a better-trained model deserves the same run with more segments.

Run (a fairchord home with a trained checkpoint, its CLAP and the corpus):
``FAIRCHORD_HOME=... nice -n 19 .venv/bin/python benchmarks/generation_quality.py
--clips 12 --out docs/listening/quality.json``. Generated embeddings are cached
in ``--cache`` (keyed by checkpoint, split, seeds and setting), so a re-run only
samples what it has not seen.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from generation_speed import CANDIDATES

from flows.cli.eval import held_back_clips
from generation.request import BASELINE_SAMPLING, SamplingSettings
from generation.vocoder import GriffinLimVocoder
from training.evaluate import HeldBackClip, frechet_distance, musicnn_clip_vectors

SECONDS = 10.0
TUNE_SEED, REPORT_SEED = 1000, 0
FD_TOLERANCE = 0.05  # the bar: within 5 % of the baseline's distance
CLAP_TOLERANCE = 0.01  # cosine


# The candidates tuned by default (generation_speed.py times these and a few more).
TUNED = ("2m-10-interval", "3m-10-interval", "2m-8-interval", "2m-8-interval-gl16", "2m-6-interval")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_run(checkpoint: int | None) -> tuple[Any, Any, dict[str, Any], dict[int, str], str]:
    """The checkpoint's denoiser and meta, its run's spec, member audio URIs and sha256."""
    from flows.cli.common import session_scope
    from flows.cli.gate import resolve_checkpoint
    from flows.train import run_dir, uri_to_path
    from provenance.snapshot import member_recordings
    from training.checkpoint import load_checkpoint

    with session_scope() as session:
        ckpt = resolve_checkpoint(session, checkpoint)
        run_id, sha, path = ckpt.training_run_id, ckpt.sha256, uri_to_path(ckpt.uri)
        uris = {r.id: r.object_uri for r in member_recordings(session, run_id) if r.object_uri}
    spec = json.loads((run_dir(run_id) / "spec.json").read_text(encoding="utf-8"))
    denoiser, meta = load_checkpoint(path)
    return denoiser, meta, spec, uris, sha


def generate_waves(
    denoiser: Any,
    text: np.ndarray,
    settings: SamplingSettings,
    *,
    frames: int,
    seeds: Sequence[int],
) -> tuple[list[np.ndarray], float]:
    """One vocoded clip per text embedding and seed; also the mean seconds per clip."""
    from training.diffusion.sampling import sample_mels

    vocoder = GriffinLimVocoder(n_iter=settings.griffin_lim_iters)
    waves, started = [], time.perf_counter()
    for emb, seed in zip(text, seeds, strict=True):
        mel = sample_mels(
            denoiser,
            emb[None, :],
            frames=frames,
            steps=settings.steps,
            cfg_scale=settings.cfg,
            sampler=settings.sampler,
            cfg_interval=settings.cfg_interval,
            precision=settings.precision,
            seed=seed,
        )[0]
        waves.append(vocoder(mel))
    return waves, (time.perf_counter() - started) / max(1, len(waves))


def cache_key(sha: str, split: str, seeds: Sequence[int], settings: SamplingSettings) -> str:
    doc = json.dumps([sha, split, list(seeds), settings.to_json(), SECONDS], sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:20]


def judge(
    name: str,
    settings: SamplingSettings,
    *,
    split: str,
    clips: Sequence[HeldBackClip],
    seeds: Sequence[int],
    text: np.ndarray,
    real_musicnn: np.ndarray,
    context: dict[str, Any],
) -> dict[str, Any]:
    """FD_musicnn and CLAP score of one setting on one split (cached)."""
    path = Path(context["cache"]) / f"{cache_key(context['sha'], split, seeds, settings)}.npz"
    if path.is_file():
        cached = np.load(path)
        musicnn, audio, seconds = cached["musicnn"], cached["clap"], float(cached["seconds"])
    else:
        frames = int(clips[0].mel_log.shape[-1])
        waves, seconds = generate_waves(
            context["denoiser"], text, settings, frames=frames, seeds=seeds
        )
        musicnn = musicnn_clip_vectors(context["musicnn"], waves)
        audio = np.stack([context["clap"].embed_audio_clip(w) for w in waves])
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, musicnn=musicnn, clap=audio, seconds=seconds)
    row = {
        "setting": name,
        "split": split,
        "settings": settings.to_json(),
        "clips": len(clips),
        "fd_musicnn": round(frechet_distance(musicnn, real_musicnn), 3),
        "clap_score": round(float(np.mean(np.sum(audio * text, axis=1))), 4),
        "seconds_per_clip_here": round(seconds, 2),
    }
    log(
        f"  {split:6} {name:22} fd_musicnn {row['fd_musicnn']:8.3f}  "
        f"clap {row['clap_score']:.4f}  ({row['seconds_per_clip_here']} s/clip)"
    )
    return row


def network_evals(settings: SamplingSettings) -> int:
    """UNet rows one clip costs: one per step, two where guidance applies."""
    from training.diffusion.sampling import get_sigmas_karras

    sigmas = get_sigmas_karras(settings.steps, 0.002, 80.0)[:-1]
    if settings.cfg == 1.0:
        return settings.steps
    if settings.cfg_interval is None:
        return 2 * settings.steps
    lo, hi = settings.cfg_interval
    return settings.steps + int(((sigmas > lo) & (sigmas <= hi)).sum())


def choose(tune: list[dict[str, Any]]) -> str:
    """The cheapest candidate within the tolerances of the baseline on the tune split."""
    base = next(r for r in tune if r["setting"] == "baseline")
    ok = [
        r
        for r in tune
        if r["setting"] != "baseline"
        and r["fd_musicnn"] <= base["fd_musicnn"] * (1 + FD_TOLERANCE)
        and r["clap_score"] >= base["clap_score"] - CLAP_TOLERANCE
    ]
    if not ok:
        return "baseline"
    best = min(ok, key=lambda r: (r["network_evals"], r["griffin_lim_cost"], r["fd_musicnn"]))
    return str(best["setting"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=int, default=None, help="default: newest final")
    parser.add_argument("--clips", type=int, default=8, help="held-back segments per split")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--candidates", default=",".join(TUNED), help="comma-separated names to tune"
    )
    parser.add_argument(
        "--also", default="", help="comma-separated candidates reported beside the choice"
    )
    parser.add_argument(
        "--tune-only", action="store_true", help="stop after the tune split (prints the choice)"
    )
    parser.add_argument(
        "--report", default=None, help="report this candidate instead of the tuned choice"
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/fairchord-quality-cache"))
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [n for n in args.candidates.split(",") if n]
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        raise SystemExit(f"unknown candidates {unknown}; expected some of {sorted(CANDIDATES)}")

    from flows.cli.eval import load_musicnn
    from generation.gate_models import load_clap_embedder

    denoiser, meta, spec, uris, sha = load_run(args.checkpoint)
    clap = load_clap_embedder(None)
    if meta.clap_sha256 and meta.clap_sha256 != clap.sha256:
        raise SystemExit("the loaded CLAP is not the checkpoint's")
    musicnn, missing = load_musicnn()
    if musicnn is None:
        raise SystemExit(f"cannot load MSD-musicnn: {missing}")
    held = held_back_clips(spec, uris, count=2 * args.clips, seconds=SECONDS)
    splits = {"tune": held[0::2], "report": held[1::2]}
    if min(len(v) for v in splits.values()) < 2:
        raise SystemExit(f"only {len(held)} held-back segments of {SECONDS} s")
    context = {"denoiser": denoiser, "clap": clap, "musicnn": musicnn, "sha": sha}
    context["cache"] = args.cache
    log(
        f"checkpoint {sha[:12]}: {len(held)} held-back segments of {SECONDS:g} s from "
        f"recordings {sorted({c.recording_id for c in held})}; load {os.getloadavg()}"
    )

    doc: dict[str, Any] = {
        "checkpoint_sha256": sha,
        "seconds": SECONDS,
        "threads": args.threads,
        "fd_tolerance": FD_TOLERANCE,
        "clap_tolerance": CLAP_TOLERANCE,
    }
    rows: dict[str, list[dict[str, Any]]] = {}
    chosen = args.report
    for split, seed0 in (("tune", TUNE_SEED), ("report", REPORT_SEED)):
        if split == "report" and args.tune_only:
            print(json.dumps({"chosen": choose(rows["tune"]), "tune": rows["tune"]}, indent=2))
            return
        clips = splits[split]
        seeds = [seed0 + i for i in range(len(clips))]
        text = np.asarray(clap.embed_text([c.caption for c in clips]), np.float32)
        real_musicnn = musicnn_clip_vectors(musicnn, [c.wave_16k for c in clips])
        real_clap = np.stack([clap.embed_audio_clip(c.wave_16k) for c in clips])
        ceiling = []
        for iters in sorted({BASELINE_SAMPLING.griffin_lim_iters} | {16, 32}):
            vocoder = GriffinLimVocoder(n_iter=iters)
            vocoded = [vocoder(c.mel_log) for c in clips]
            audio = np.stack([clap.embed_audio_clip(w) for w in vocoded])
            ceiling.append(
                {
                    "set": f"vocoded_real_gl{iters}",
                    "fd_musicnn": round(
                        frechet_distance(musicnn_clip_vectors(musicnn, vocoded), real_musicnn), 3
                    ),
                    "clap_score": round(float(np.mean(np.sum(audio * text, axis=1))), 4),
                }
            )
        ceiling.append(
            {
                "set": "real",
                "fd_musicnn": 0.0,
                "clap_score": round(float(np.mean(np.sum(real_clap * text, axis=1))), 4),
            }
        )
        doc[f"{split}_ceiling"] = ceiling
        log(f"{split}: {len(clips)} segments, seeds {seeds[0]}..{seeds[-1]}; ceiling {ceiling}")
        if split == "tune":
            todo = {"baseline": BASELINE_SAMPLING, **{n: CANDIDATES[n] for n in names}}
        else:
            if chosen is None:
                chosen = choose(rows["tune"])
            todo = {"baseline": BASELINE_SAMPLING}
            for name in [chosen, *[n for n in args.also.split(",") if n]]:
                if name != "baseline":
                    todo[name] = CANDIDATES[name]
        rows[split] = []
        for name, settings in todo.items():
            row = judge(
                name,
                settings,
                split=split,
                clips=clips,
                seeds=seeds,
                text=text,
                real_musicnn=real_musicnn,
                context=context,
            )
            row["network_evals"] = network_evals(settings)
            row["griffin_lim_cost"] = settings.griffin_lim_iters
            row["recordings"] = sorted({c.recording_id for c in clips})
            rows[split].append(row)
        doc[split] = rows[split]
        doc["chosen"] = chosen
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    base = next(r for r in rows["report"] if r["setting"] == "baseline")
    for row in rows["report"]:
        row["fd_vs_baseline"] = round(row["fd_musicnn"] / base["fd_musicnn"] - 1, 3)
    if args.out is not None:
        args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: doc[k] for k in ("chosen", "tune", "report")}, indent=2))


if __name__ == "__main__":
    main()
