"""Gate evaluation on a checkpoint's snapshot: replay block rates per transform, false blocks
on other artists' music, artist-flag rate on unseen tracks by snapshot artists.

    .venv/bin/python benchmarks/gate_eval.py --checkpoint ID [--other-dir DIR ...] [--json]

- Replays: every snapshot recording (first ``--clip-seconds`` s) under each transform
  (pitch ±1/±2 st, tempo ±5/±10 %, noise 20 dB SNR, 4 kHz low-pass, MP3/OGG re-encode,
  5 s crop, ±6 dB gain, mixed under another snapshot track at −6 dB) through the gate.
- False blocks: accepted recordings not in the snapshot whose credited parties are not
  snapshot artists (the demo corpus's excluded files), plus audio files under --other-dir
  (e.g. Debian-packaged music not in the snapshot).
- Artist flags: accepted recordings not in the snapshot credited to a snapshot artist.

Everything goes through the gate's one signal path (decode → 16 kHz → embedder).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("gate_eval")
SR = 16_000


def _pitch(steps: float) -> Callable[[np.ndarray], np.ndarray]:
    def run(w: np.ndarray) -> np.ndarray:
        import librosa

        return librosa.effects.pitch_shift(w, sr=SR, n_steps=steps).astype(np.float32)

    return run


def _tempo(rate: float) -> Callable[[np.ndarray], np.ndarray]:
    def run(w: np.ndarray) -> np.ndarray:
        import librosa

        return librosa.effects.time_stretch(w, rate=rate).astype(np.float32)

    return run


def _noise(w: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    power = float(np.mean(w.astype(np.float64) ** 2)) or 1e-12
    return (w + rng.standard_normal(w.size) * np.sqrt(power / 100.0)).astype(np.float32)


def _lowpass(w: np.ndarray) -> np.ndarray:
    import torch
    import torchaudio.functional as F

    return F.lowpass_biquad(torch.from_numpy(w), SR, 4000.0).numpy().astype(np.float32)


def _reencode(fmt: str, subtype: str) -> Callable[[np.ndarray], np.ndarray]:
    def run(w: np.ndarray) -> np.ndarray:
        import soundfile as sf

        buf = io.BytesIO()
        sf.write(buf, np.clip(w, -1, 1), SR, format=fmt, subtype=subtype)
        buf.seek(0)
        out, _ = sf.read(buf, dtype="float32")
        return out if out.ndim == 1 else out.mean(axis=1)

    return run


def _crop(w: np.ndarray) -> np.ndarray:
    start = max(0, (w.size - 5 * SR) // 2)
    return w[start : start + 5 * SR]


def transforms() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    return {
        "identity": lambda w: w,
        "pitch_+1st": _pitch(1),
        "pitch_-1st": _pitch(-1),
        "pitch_+2st": _pitch(2),
        "pitch_-2st": _pitch(-2),
        "tempo_+5%": _tempo(1.05),
        "tempo_-5%": _tempo(0.95),
        "tempo_+10%": _tempo(1.10),
        "tempo_-10%": _tempo(0.90),
        "noise_20db": _noise,
        "lowpass_4khz": _lowpass,
        "mp3": _reencode("MP3", "MPEG_LAYER_III"),
        "ogg": _reencode("OGG", "VORBIS"),
        "crop_5s": _crop,
        "gain_+6db": lambda w: (w * 2.0).astype(np.float32),
        "gain_-6db": lambda w: (w * 0.5).astype(np.float32),
    }


def main() -> None:
    from sqlalchemy import select

    from flows.cli.common import session_scope
    from flows.cli.gate import load_embedder, load_wave_16k, resolve_checkpoint
    from generation.gate import SimilarityGate
    from generation.index import GateUnavailable, load_index
    from provenance.models import Credit, Recording, TrainingRunMember

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=int, default=None)
    parser.add_argument("--clap", default=None)
    parser.add_argument("--clip-seconds", type=float, default=20.0)
    parser.add_argument("--other-dir", action="append", default=[], type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    n = int(args.clip_seconds * SR)
    with session_scope() as session:
        ckpt = resolve_checkpoint(session, args.checkpoint)
        embedder = load_embedder(args.clap)
        index = load_index(session, ckpt, embedder_sha256=embedder.sha256)
        gate = SimilarityGate(index, embedder)
        run_id = ckpt.training_run_id
        member_ids = set(
            session.execute(
                select(TrainingRunMember.recording_id).where(
                    TrainingRunMember.training_run_id == run_id
                )
            ).scalars()
        )
        artists_of: dict[int, set[int]] = {}
        for rec_id, party_id in session.execute(
            select(Credit.recording_id, Credit.party_id).where(Credit.role == "artist")
        ):
            artists_of.setdefault(rec_id, set()).add(party_id)
        snapshot_artists = set().union(*(artists_of.get(r, set()) for r in member_ids))
        recordings = session.execute(
            select(Recording).where(
                Recording.status == "accepted", Recording.duplicate_of_id.is_(None)
            )
        ).scalars()
        uris = {r.id: r.object_uri for r in recordings if r.object_uri}

        def verdict(wave: np.ndarray) -> tuple[str, float]:
            try:
                result = gate.check(wave)
            except GateUnavailable as exc:
                log.warning("gate unavailable: %s", exc)
                return "unavailable", float("nan")
            return result.verdict, result.track_similarity

        clips = {r: load_wave_16k(uris[r])[:n] for r in sorted(member_ids) if r in uris}
        keys = sorted(clips)
        replay: dict[str, dict[str, Any]] = {}
        for name, transform in transforms().items():
            blocked = 0
            for rec in keys:
                blocked += verdict(transform(clips[rec]))[0] != "allow"
            replay[name] = {"clips": len(keys), "block_rate": blocked / max(1, len(keys))}
            log.info("replay %-14s %.3f", name, replay[name]["block_rate"])
        mixed = 0
        for i, rec in enumerate(keys):
            other = clips[keys[(i + 1) % len(keys)]]
            m = min(other.size, clips[rec].size)
            mixed += verdict(other[:m] + 0.5 * clips[rec][:m])[0] != "allow"
        replay["mixed_under_-6db"] = {"clips": len(keys), "block_rate": mixed / max(1, len(keys))}

        negatives: list[str] = []
        artist_unseen: list[str] = []
        for rec, uri in uris.items():
            if rec in member_ids:
                continue
            (artist_unseen if artists_of.get(rec, set()) & snapshot_artists else negatives).append(
                uri
            )
        others = [str(p) for d in args.other_dir for p in sorted(d.rglob("*")) if p.is_file()]
        neg_verdicts = [verdict(load_wave_16k(u)[:n])[0] for u in [*negatives, *others]]
        flag_verdicts = [verdict(load_wave_16k(u)[:n])[0] for u in artist_unseen]

    report = {
        "checkpoint_id": ckpt.id,
        "training_run_id": run_id,
        "index_sha256": index.sha256,
        "thresholds": gate.thresholds,
        "replay": replay,
        "false_block": {
            "files": len(neg_verdicts),
            "rate": float(np.mean([v != "allow" for v in neg_verdicts])) if neg_verdicts else None,
        },
        "artist_flag": {
            "files": len(flag_verdicts),
            "rate": float(np.mean([v == "block" for v in flag_verdicts]))
            if flag_verdicts
            else None,
        },
    }
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        log.info(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
