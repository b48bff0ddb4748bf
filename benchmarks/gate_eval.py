"""Gate evaluation on a checkpoint's snapshot: replay block rates per transform, false blocks
on other artists' music, artist-flag rate on unseen tracks by snapshot artists.

    .venv/bin/python benchmarks/gate_eval.py [--checkpoint ID] [--set benchmarks/data/gate_music.csv
        --split report] [--debian-extras] [--other-dir DIR ...] [--scores FILE.jsonl] [--json]

With ``--set CSV --split report`` the false-block and artist-flag sets are the held-out
half of the evaluation set (``benchmarks/data/gate_music.csv``): ``outside`` tracks
(false blocks, with a 95 % Clopper-Pearson upper bound) and ``same_artist`` tracks
(artist flags), a ``--clip-seconds`` excerpt from the middle of each. The gate's cohort
and every tuned parameter come from the tune half only.

- Replays: every snapshot recording (first ``--clip-seconds`` s) under each transform
  the tuning used (pitch ±1/±2 st, tempo ±5/±10 %, noise 20 dB SNR, 4 kHz low-pass,
  MP3/OGG re-encode, 5 s crop, ±6 dB gain) and families it did not (``unseen:``): speed
  change (pitch and tempo together), reverb, telephone band-limiting, a quieter outside
  track mixed in, low-bitrate MP3 and Opus, crops at other offsets; also mixed at −6 dB
  under a track outside the snapshot, and through the model's log-mel and the
  Griffin-Lim vocoder, as a memorised generation would sound.
- False blocks: accepted recordings not in the snapshot whose credited parties are not
  snapshot artists (the demo corpus's excluded files), with ``--debian-extras`` the
  installed Debian music the corpus leaves out whose ARTIST tag names no snapshot artist,
  plus audio files under --other-dir.
- Artist flags: recordings (and, with ``--debian-extras``, installed Debian tracks) not in
  the snapshot by a snapshot artist.

Everything goes through the gate's one signal path (decode → 16 kHz → embedder).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import time
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


def _through_model_mel(w: np.ndarray) -> np.ndarray:
    """What a memorised training clip looks like when generated: the model's log-mel,
    then the default vocoder (Griffin-Lim)."""
    from generation.vocoder import GriffinLimVocoder
    from training.mel import log_mel

    return np.asarray(GriffinLimVocoder()(log_mel(w)), dtype=np.float32)


def _speed(factor: float) -> Callable[[np.ndarray], np.ndarray]:
    """Play faster or slower, pitch and tempo together (a resampled tape)."""

    def run(w: np.ndarray) -> np.ndarray:
        import torch
        import torchaudio.functional as F

        rate = int(round(SR / factor))
        return F.resample(torch.from_numpy(w), SR, rate).numpy().astype(np.float32)

    return run


def _reverb(seconds: float, wet: float) -> Callable[[np.ndarray], np.ndarray]:
    """A synthetic room: exponentially decaying noise as the impulse response."""

    def run(w: np.ndarray) -> np.ndarray:
        from scipy.signal import fftconvolve

        rng = np.random.default_rng(7)
        t = np.arange(int(seconds * SR)) / SR
        ir = rng.standard_normal(t.size) * np.exp(-6.9 * t / seconds)
        ir /= np.sqrt(np.sum(ir**2))
        out = (1 - wet) * w + wet * fftconvolve(w, ir)[: w.size]
        return (out / max(1.0, float(np.abs(out).max()))).astype(np.float32)

    return run


def _telephone(w: np.ndarray) -> np.ndarray:
    import torch
    import torchaudio.functional as F

    x = F.highpass_biquad(torch.from_numpy(w), SR, 300.0)
    return F.lowpass_biquad(x, SR, 3400.0).numpy().astype(np.float32)


def _low_bitrate(
    fmt: str, subtype: str, level: float, mode: str | None
) -> Callable[[np.ndarray], np.ndarray]:
    """Lossy re-encode at libsndfile's lowest bitrates (MP3 ~25 kbit/s CBR at 16 kHz,
    Opus ~7 kbit/s)."""

    def run(w: np.ndarray) -> np.ndarray:
        import soundfile as sf

        rate = 48_000 if fmt == "OGG" and subtype == "OPUS" else SR
        x = w
        if rate != SR:
            import torch
            import torchaudio.functional as F

            x = F.resample(torch.from_numpy(w), SR, rate).numpy()
        buf = io.BytesIO()
        sf.write(
            buf,
            np.clip(x, -1, 1),
            rate,
            format=fmt,
            subtype=subtype,
            compression_level=level,
            bitrate_mode=mode,
        )
        buf.seek(0)
        out, got = sf.read(buf, dtype="float32")
        out = out if out.ndim == 1 else out.mean(axis=1)
        if got != SR:
            import torch
            import torchaudio.functional as F

            out = F.resample(torch.from_numpy(out), got, SR).numpy()
        return np.asarray(out, dtype=np.float32)

    return run


def _crop_at(offset: float, seconds: float = 8.0) -> Callable[[np.ndarray], np.ndarray]:
    def run(w: np.ndarray) -> np.ndarray:
        start = int(max(0, w.size - seconds * SR) * offset)
        return w[start : start + int(seconds * SR)]

    return run


def unseen_transforms() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Families the fingerprint and threshold tuning never used."""
    return {
        "unseen:speed_+3%": _speed(1.03),
        "unseen:speed_-3%": _speed(0.97),
        "unseen:speed_+6%": _speed(1.06),
        "unseen:reverb_room": _reverb(0.4, 0.5),
        "unseen:reverb_hall": _reverb(1.5, 0.6),
        "unseen:telephone_300-3400hz": _telephone,
        "unseen:mp3_low_bitrate": _low_bitrate("MP3", "MPEG_LAYER_III", 0.9, "CONSTANT"),
        "unseen:opus_low_bitrate": _low_bitrate("OGG", "OPUS", 1.0, None),
        "unseen:crop_8s_at_30%": _crop_at(0.3),
        "unseen:crop_8s_at_90%": _crop_at(0.9),
    }


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
        "mel_vocoded": _through_model_mel,
        **unseen_transforms(),
    }


def clopper_pearson_upper(k: int, n: int, conf: float = 0.95) -> float | None:
    """Two-sided ``conf`` Clopper-Pearson upper bound of a rate k/n."""
    from scipy.stats import beta

    if n == 0:
        return None
    return 1.0 if k >= n else float(beta.ppf(1 - (1 - conf) / 2, k + 1, n - k))


def middle(path: str, seconds: float) -> np.ndarray:
    """``seconds`` from the middle of a file, decoded as the gate decodes (soundfile, mono
    mean, soxr HQ to 16 kHz), reading only the excerpt (some tracks last 30 minutes)."""
    import soundfile as sf
    import soxr

    info = sf.info(path)
    frames = int(seconds * info.samplerate)
    start = max(0, (info.frames - frames) // 2)
    data, rate = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
    wave = data.mean(axis=1)
    if rate != SR:
        wave = soxr.resample(wave, rate, SR, quality="HQ")
    return np.ascontiguousarray(wave, dtype=np.float32)


def held_out_set(csv_path: Path, split: str) -> tuple[list[str], list[str]]:
    """(outside tracks, unseen same-artist tracks) of one half of the evaluation set."""
    import csv

    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = [
            r for r in csv.DictReader(handle) if r["split"] == split and Path(r["path"]).is_file()
        ]
    return (
        [r["path"] for r in rows if r["role"] == "outside"],
        [r["path"] for r in rows if r["role"] == "same_artist"],
    )


# Installed Debian music the demo corpus draws from; the files it does not use are
# evaluation material (by snapshot artists: artist flags; by anyone else: false blocks).
DEBIAN_MUSIC = (
    "/usr/share/games/wesnoth/1.16/data/core/music",
    "/usr/share/games/singularity/music",
    "/usr/share/hyperrogue/music",
    "/usr/share/scummvm/drascula/audio",
)


def _artist_tag(path: Path) -> str | None:
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as handle:
            return handle.artist or None
    except Exception:
        return None


def debian_extras(
    session: Any, snapshot_artists: set[int], known_sha: set[str], member_sha: set[str]
) -> tuple[list[str], list[str], list[str]]:
    """(negatives, unseen tracks by snapshot artists, skipped) among installed Debian music
    not ingested. An ARTIST tag decides; an untagged file is a negative only in a folder
    holding no snapshot recording (otherwise its composer is unknown: skipped)."""
    from provenance.hashing import sha256_uri
    from provenance.parties import find_parties

    negatives: list[str] = []
    unseen: list[str] = []
    skipped: list[str] = []
    for folder in DEBIAN_MUSIC:
        files = [p for p in sorted(Path(folder).glob("*")) if p.is_file()]
        digests = {p: sha256_uri(str(p)) for p in files}
        holds_members = bool(set(digests.values()) & member_sha)
        for path in files:
            if digests[path] in known_sha:
                continue
            tag = _artist_tag(path)
            if tag is None:
                (skipped if holds_members else negatives).append(str(path))
                continue
            parties = {p.id for p in find_parties(session, tag)}
            (unseen if parties & snapshot_artists else negatives).append(str(path))
    return negatives, unseen, skipped


def main() -> None:
    from sqlalchemy import select

    from flows.cli.common import session_scope
    from flows.cli.gate import resolve_checkpoint
    from generation.gate import GateResult, SimilarityGate
    from generation.gate_models import load_gate_embedder, load_wave_16k
    from generation.index import GateUnavailable, load_index
    from provenance.models import Credit, Recording, TrainingRunMember

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=int, default=None)
    parser.add_argument("--clip-seconds", type=float, default=20.0)
    parser.add_argument("--set", type=Path, default=None, help="Evaluation set CSV.")
    parser.add_argument("--split", choices=("tune", "report"), default="report")
    parser.add_argument(
        "--skip-replays", action="store_true", help="Only false blocks and artist flags."
    )
    parser.add_argument("--other-dir", action="append", default=[], type=Path)
    parser.add_argument(
        "--debian-extras",
        action="store_true",
        help="Also use the installed Debian music the demo corpus leaves out "
        f"({', '.join(DEBIAN_MUSIC)}), classified by ARTIST tag.",
    )
    parser.add_argument(
        "--scores", type=Path, default=None, help="Write every check's detector scores (JSONL)."
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    n = int(args.clip_seconds * SR)
    timings: list[float] = []
    rows: list[dict[str, Any]] = []
    with session_scope() as session:
        ckpt = resolve_checkpoint(session, args.checkpoint)
        embedder = load_gate_embedder()
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
        all_recordings = session.execute(select(Recording)).scalars().all()
        known_sha = {r.sha256 for r in all_recordings}
        member_sha = {r.sha256 for r in all_recordings if r.id in member_ids}
        uris = {
            r.id: r.object_uri
            for r in all_recordings
            if r.object_uri and r.status == "accepted" and r.duplicate_of_id is None
        }

        def check(wave: np.ndarray, kind: str = "", item: Any = None) -> GateResult | None:
            started = time.perf_counter()
            try:
                result = gate.check(wave)
            except GateUnavailable as exc:
                log.warning("gate unavailable: %s", exc)
                rows.append({"set": kind, "item": item, "verdict": "unavailable"})
                return None
            timings.append(time.perf_counter() - started)
            rows.append(
                {
                    "set": kind,
                    "item": item,
                    "verdict": result.verdict,
                    "scores": result.detector_scores,
                    "reasons": result.reasons,
                }
            )
            return result

        clips = {r: load_wave_16k(uris[r])[:n] for r in sorted(member_ids) if r in uris}
        keys = sorted(clips)
        negatives: list[str] = []
        artist_unseen: list[str] = []
        for rec, uri in uris.items():
            if rec in member_ids or args.set is not None:
                continue
            (artist_unseen if artists_of.get(rec, set()) & snapshot_artists else negatives).append(
                uri
            )
        if args.set is not None:
            negatives, artist_unseen = held_out_set(args.set, args.split)
        skipped: list[str] = []
        if args.debian_extras:
            extra_neg, extra_unseen, skipped = debian_extras(
                session, snapshot_artists, known_sha, member_sha
            )
            negatives += extra_neg
            artist_unseen += extra_unseen
        negatives += [str(p) for d in args.other_dir for p in sorted(d.rglob("*")) if p.is_file()]
        neg_waves = {u: middle(u, args.clip_seconds) for u in negatives}

        neg_results = {}
        for i, (u, w) in enumerate(neg_waves.items()):
            neg_results[u] = check(w, "false_block", u)
            if (i + 1) % 50 == 0:
                log.info("false-block checks %d/%d", i + 1, len(neg_waves))
        flag_results = {
            u: check(middle(u, args.clip_seconds), "artist_flag", u) for u in artist_unseen
        }
        log.info(
            "false blocks %d/%d, artist flags %d/%d",
            sum(r is None or r.verdict == "block" for r in neg_results.values()),
            len(neg_results),
            sum(r is not None and r.verdict == "block" for r in flag_results.values()),
            len(flag_results),
        )

        replay: dict[str, dict[str, Any]] = {}

        def replay_rates(kind: str, copies: list[tuple[int, np.ndarray]]) -> dict[str, Any]:
            hits = {"any": 0, "clap": 0, "fingerprint": 0, "melody": 0}
            for rec, copy in copies:
                result = check(copy, f"replay:{kind}", rec)
                hits["any"] += result is None or result.verdict == "block"
                if result is not None:
                    hits["clap"] += any(r.startswith("track_") for r in result.reasons)
                    hits["fingerprint"] += any(r.startswith("fingerprint") for r in result.reasons)
                    hits["melody"] += any(r.startswith("melody") for r in result.reasons)
            total = max(1, len(copies))
            return {
                "clips": len(copies),
                "block_rate": hits["any"] / total,
                "clap_track_rate": hits["clap"] / total,
                "fingerprint_rate": hits["fingerprint"] / total,
                "melody_rate": hits["melody"] / total,
            }

        for name, transform in ({} if args.skip_replays else transforms()).items():
            try:
                copies = [(rec, transform(clips[rec])) for rec in keys]
            except Exception as exc:  # a transform's own failure is reported, not fatal
                log.warning("transform %s failed: %s", name, exc)
                replay[name] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            replay[name] = replay_rates(name, copies)
            log.info("replay %-14s %.3f", name, replay[name]["block_rate"])
        # A quieter outside track mixed in (-12 dB) under a replay: not a tuning transform.
        beds_quiet = list(neg_waves.values())
        if beds_quiet and not args.skip_replays:
            quiet = []
            for i, rec in enumerate(keys):
                bed = beds_quiet[(7 * i) % len(beds_quiet)]
                m = min(bed.size, clips[rec].size)
                quiet.append((rec, clips[rec][:m] + 0.25 * bed[:m]))
            replay["unseen:outside_track_-12db_under"] = replay_rates("quiet_bed", quiet)
        # Mixed at -6 dB under a track that is not in the snapshot (another artist's), so the
        # louder part cannot be what gets it blocked.
        beds = list(neg_waves.values()) or [clips[k] for k in keys[1:] + keys[:1]]
        mixes = []
        for i, rec in enumerate(keys):
            bed = beds[i % len(beds)]
            m = min(bed.size, clips[rec].size)
            mixes.append((rec, bed[:m] + 0.5 * clips[rec][:m]))
        if not args.skip_replays:
            replay["mixed_under_-6db"] = {
                **replay_rates("mixed_under_-6db", mixes),
                "bed": "non-snapshot tracks" if neg_waves else "other snapshot tracks",
            }

    def summary(results: dict[str, GateResult | None], *, flags: bool) -> dict[str, Any]:
        if not results:
            return {"files": 0, "rate": None}
        hit = [
            (r is not None and r.verdict == "block")
            if flags
            else (r is None or r.verdict == "block")
            for r in results.values()
        ]
        fp = [r.detector_scores.get("fingerprint", 0.0) for r in results.values() if r]
        by_detector = {
            name: sum(
                1
                for r in results.values()
                if r is not None and any(reason.startswith(prefix) for reason in r.reasons)
            )
            for name, prefix in (
                ("track", "track_"),
                ("artist", "artist_"),
                ("fingerprint", "fingerprint"),
                ("melody", "melody"),
            )
        }
        return {
            "files": len(results),
            "hits": int(sum(hit)),
            "rate": float(np.mean(hit)),
            "upper95": clopper_pearson_upper(int(sum(hit)), len(hit)),
            "by_detector": by_detector,
            "blocked_files": [u for u, h in zip(results, hit, strict=True) if h],
            "max_fingerprint_score": max(fp) if fp else None,
            "max_track_similarity": max(
                (r.track_similarity for r in results.values() if r), default=None
            ),
        }

    report = {
        "checkpoint_id": ckpt.id,
        "training_run_id": run_id,
        "index_sha256": index.sha256,
        "thresholds": gate.thresholds,
        "search": gate.search.name,
        "clip_seconds": args.clip_seconds,
        "replay": replay,
        "false_block": summary(neg_results, flags=False),
        "artist_flag": summary(flag_results, flags=True),
        "skipped_unknown_composer": skipped,
        "gate_ms_per_clip_mean": 1000 * float(np.mean(timings)) if timings else None,
    }
    if args.scores:
        args.scores.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        log.info(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
