"""Near-duplicate links on real music: false links between different recordings, and true
duplicates (re-encodes, gain changes, small crops) that must still link.

    .venv/bin/python benchmarks/near_duplicate_eval.py [--set benchmarks/data/gate_music.csv]
        [--demo-dir DIR] [--cache DIR] [--originals N] [--jobs 2] [--json]

Recordings: the demo corpus (built with ``flows.demo_corpus.build_demo_corpus``, the
Debian files and the rendered scores) plus every installed track the evaluation set lists
(``benchmarks/install_gate_music.sh`` installs them), one per distinct sha256.

- **False links**: every unordered pair of distinct files. A pair counts as linked under a
  rule when ingesting either one after the other would link it (the duration window is
  the newcomer's). Both rules are the production code's: the old one (duration +
  fingerprint within 80 bits), and the new one (``provenance.near_duplicates``: the same,
  then the fine spectral correlation). A linked pair whose samples correlate at 0.9 or
  more (best shift within 2 s) is one recording in two files, a right link; any other
  link is a false one.
- **True duplicates**: ``--originals`` recordings spread over the set (every k-th by
  path, of at most 6 minutes), each re-encoded (MP3, low-bitrate MP3, Vorbis, FLAC),
  gain-changed (−6 dB, +3 dB),
  cropped (0.5 s from the start, 1 s from the end, 1 % from both ends) and MP3 at −6 dB;
  each variant must link to its original.

Features (fingerprint, duration, spectral profile) are cached per sha256 under
``--cache``, so a rerun only recomputes what changed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

log = logging.getLogger("near_duplicate_eval")
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Track:
    name: str
    path: str
    sha256: str
    duration_s: float
    fingerprint: str | None
    profile_file: str


def _features(args: tuple[str, str, str]) -> Track | None:
    """Probe one file (fingerprint, duration) and cache its spectral profile."""
    from provenance.audio_match import spectral_profile
    from provenance.audio_probe import AudioProbeError, probe_audio
    from provenance.hashing import sha256_file

    name, path, cache = args
    sha = sha256_file(path)
    meta_file = Path(cache) / f"{sha}.json"
    profile_file = Path(cache) / f"{sha}.npy"
    if meta_file.exists() and profile_file.exists():
        meta = json.loads(meta_file.read_text())
        return Track(name, path, sha, meta["duration_s"], meta["fingerprint"], str(profile_file))
    try:
        facts = probe_audio(path)
        profile = spectral_profile(path)
    except (AudioProbeError, RuntimeError, sf.LibsndfileError) as exc:
        log.warning("%s: skipped (%s)", path, exc)
        return None
    np.save(profile_file, profile.cells)
    meta_file.write_text(
        json.dumps({"duration_s": facts.duration_s, "fingerprint": facts.fingerprint})
    )
    return Track(name, path, sha, facts.duration_s, facts.fingerprint, str(profile_file))


def collect(set_csv: Path, demo_dir: Path) -> list[tuple[str, str]]:
    """``(name, path)`` of the demo corpus files and of every installed evaluation track."""
    from flows.demo_corpus import build_demo_corpus

    found: list[tuple[str, str]] = []
    manifest = build_demo_corpus(demo_dir)
    with open(manifest, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            found.append((f"demo:{row['path']}", str(manifest.parent / row["path"])))
    with open(set_csv, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if Path(row["path"]).is_file():
                found.append((f"{row['package']}:{Path(row['path']).name}", row["path"]))
    return found


# --------------------------------------------------------------------------- rules


def _profile(track: Track) -> Any:
    from provenance.audio_match import SpectralProfile

    return SpectralProfile(np.load(track.profile_file))


def pair_evidence(
    a: Track, b: Track, profiles: Callable[[Track], Any], *, fine: bool
) -> tuple[bool, int, float, float | None]:
    """``(duration match, bits, duration gap, correlation or None)`` for ``b`` ingested
    after ``a`` or the other way round (either order linking counts)."""
    from provenance.audio_probe import fingerprint_distance
    from provenance.near_duplicates import (
        DEFAULT_DURATION_TOLERANCE,
        duration_window_s,
        fine_correlation,
    )

    gap = b.duration_s - a.duration_s
    window = max(
        duration_window_s(a.duration_s, DEFAULT_DURATION_TOLERANCE),
        duration_window_s(b.duration_s, DEFAULT_DURATION_TOLERANCE),
    )
    matched = abs(gap) <= window
    if not (matched and a.fingerprint and b.fingerprint):
        return matched, -1, gap, None
    bits = fingerprint_distance(a.fingerprint, b.fingerprint)
    correlation = None
    if fine:
        correlation, _ = fine_correlation(profiles(a), profiles(b), duration_delta_s=gap)
    return matched, bits, gap, correlation


def pcm_correlation(path_a: str, path_b: str, *, rate: int = 8000) -> float:
    """Sample-level correlation of two files (mono, ``rate``), at the best of ±2 s shifts."""
    from training.audio_io import load_audio

    a = load_audio(path_a, sample_rate=rate)
    b = load_audio(path_b, sample_rate=rate)
    n = min(len(a), len(b))
    size = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    cross = np.fft.irfft(np.conj(np.fft.rfft(a, size)) * np.fft.rfft(b, size), size)
    shifts = np.r_[0 : 2 * rate, size - 2 * rate : size]
    best = int(shifts[np.argmax(cross[shifts])])
    lag = best if best < size // 2 else best - size
    x = a[max(0, -lag) : max(0, -lag) + n]
    y = b[max(0, lag) : max(0, lag) + n]
    n = min(len(x), len(y))
    return float(np.corrcoef(x[:n], y[:n])[0, 1])


SAME_RECORDING_PCM = 0.9


def old_rule(bits: int) -> bool:
    from provenance.audio_probe import DEFAULT_NEAR_DUPLICATE_BITS

    return 0 <= bits <= DEFAULT_NEAR_DUPLICATE_BITS


def new_rule(bits: int, correlation: float | None) -> bool:
    from provenance.audio_match import DEFAULT_MIN_CORRELATION

    return old_rule(bits) and correlation is not None and correlation >= DEFAULT_MIN_CORRELATION


# --------------------------------------------------------------------------- variants


def _encode(wave: np.ndarray, rate: int, fmt: str, subtype: str, **kwargs: Any) -> bytes:
    """Encode in blocks: one long write makes libsndfile's Vorbis encoder overflow its stack."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", rate, wave.shape[1], subtype=subtype, format=fmt, **kwargs) as out:
        for start in range(0, len(wave), 65536):
            out.write(wave[start : start + 65536])
    return buf.getvalue()


def variants(path: str) -> Iterator[tuple[str, bytes]]:
    """The true-duplicate variants of one file, as encoded bytes, one at a time."""
    wave, rate = sf.read(path, dtype="float32", always_2d=True)
    one_pct = int(0.01 * len(wave))
    yield "mp3", _encode(wave, rate, "MP3", "MPEG_LAYER_III")
    yield "vorbis", _encode(wave, rate, "OGG", "VORBIS")
    yield (
        "mp3_low_bitrate",
        _encode(
            np.clip(wave, -1, 1),
            rate,
            "MP3",
            "MPEG_LAYER_III",
            compression_level=0.9,
            bitrate_mode="CONSTANT",
        ),
    )
    yield "flac", _encode(wave, rate, "FLAC", "PCM_16")
    yield "gain_-6dB", _encode(wave * 0.5, rate, "FLAC", "PCM_16")
    yield "gain_+3dB", _encode(np.clip(wave * 1.41, -1, 1), rate, "FLAC", "PCM_16")
    yield "mp3_gain_-6dB", _encode(wave * 0.5, rate, "MP3", "MPEG_LAYER_III")
    yield "crop_start_0.5s", _encode(wave[int(0.5 * rate) :], rate, "FLAC", "PCM_16")
    yield "crop_end_1s", _encode(wave[: len(wave) - rate], rate, "FLAC", "PCM_16")
    yield "crop_1pct_both", _encode(wave[one_pct : len(wave) - one_pct], rate, "FLAC", "PCM_16")


def _variant_results(args: tuple[Track]) -> list[dict[str, Any]]:
    from provenance.audio_match import SpectralProfile, spectral_profile
    from provenance.audio_probe import probe_audio

    (original,) = args
    results = []
    original_profile = SpectralProfile(np.load(original.profile_file))
    for kind, data in variants(original.path):
        facts = probe_audio(io.BytesIO(data))
        copy = Track(original.name, "", "", facts.duration_s, facts.fingerprint, "")
        profile = spectral_profile(io.BytesIO(data))

        def profiles(t: Track, copy: Track = copy, profile: Any = profile) -> Any:
            return profile if t is copy else original_profile

        matched, bits, _, corr = pair_evidence(original, copy, profiles, fine=True)
        results.append(
            {
                "original": original.name,
                "variant": kind,
                "duration_match": matched,
                "bits": bits,
                "correlation": corr,
                "old_links": matched and old_rule(bits),
                "new_links": matched and new_rule(bits, corr),
            }
        )
    return results


# --------------------------------------------------------------------------- report


def clopper_pearson_upper(k: int, n: int, conf: float = 0.95) -> float:
    from scipy.stats import beta

    return 1.0 if k >= n else float(beta.ppf(conf, k + 1, n - k))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, default=REPO / "benchmarks/data/gate_music.csv")
    parser.add_argument("--demo-dir", type=Path, default=Path("/tmp/fairchord-near-dup/demo"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/fairchord-near-dup/features"))
    parser.add_argument("--originals", type=int, default=40, help="tracks to make variants of")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args.cache.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    files = collect(args.set, args.demo_dir)
    with ProcessPoolExecutor(args.jobs) as pool:
        probed = list(pool.map(_features, [(n, p, str(args.cache)) for n, p in files]))
    tracks: dict[str, Track] = {}
    for track in probed:
        if track is not None and track.sha256 not in tracks:
            tracks[track.sha256] = track
    items = sorted(tracks.values(), key=lambda t: t.path)
    log.info(
        "%d files, %d distinct recordings (%.0f s)",
        len(files),
        len(items),
        time.perf_counter() - started,
    )

    cached: dict[str, Any] = {}

    def profiles(t: Track) -> Any:
        if t.sha256 not in cached:
            cached[t.sha256] = _profile(t)
        return cached[t.sha256]

    pairs = 0
    duration_matched = 0
    coarse: list[dict[str, Any]] = []
    fine_checked: list[float] = []
    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            pairs += 1
            matched, bits, gap, _ = pair_evidence(a, b, profiles, fine=False)
            if not matched:
                continue
            duration_matched += 1
            # The fine step runs on every duration-matched pair here (not only within 80
            # bits), to show the margin the threshold has on real music.
            _, _, _, corr = pair_evidence(a, b, profiles, fine=True)
            assert corr is not None
            fine_checked.append(corr)
            if old_rule(bits):
                coarse.append(
                    {
                        "a": a.name,
                        "b": b.name,
                        "bits": bits,
                        "gap_s": round(gap, 2),
                        "correlation": round(corr, 4),
                        "new_links": new_rule(bits, corr),
                        "pcm_correlation": round(pcm_correlation(a.path, b.path), 4),
                    }
                )
    # A linked pair whose samples correlate at SAME_RECORDING_PCM is one recording in two
    # files (say, two mixes), so its link is right; every other link is a false one.
    false_old = [c for c in coarse if c["pcm_correlation"] < SAME_RECORDING_PCM]
    false_new = [c for c in false_old if c["new_links"]]
    old_links, new_links = len(false_old), len(false_new)
    log.info(
        "pairs done (%.0f s): %d duration-matched, %d within 80 bits, %d linked by the new rule",
        time.perf_counter() - started,
        duration_matched,
        len(coarse),
        sum(1 for c in coarse if c["new_links"]),
    )
    for c in coarse:
        log.info("  coarse match: %s", json.dumps(c))
    # Variants decode whole files: originals of at most 6 minutes keep memory modest.
    spread = sorted((t for t in items if t.duration_s <= 360), key=lambda t: t.sha256)
    step = max(1, len(spread) // max(1, args.originals))
    originals = spread[::step][: args.originals]
    with ProcessPoolExecutor(args.jobs) as pool:
        variant_rows = [
            r for rows in pool.map(_variant_results, [(t,) for t in originals]) for r in rows
        ]
    by_kind: dict[str, dict[str, Any]] = {}
    for row in variant_rows:
        entry = by_kind.setdefault(
            row["variant"], {"n": 0, "old": 0, "new": 0, "min_correlation": 1.0, "max_bits": 0}
        )
        entry["n"] += 1
        entry["old"] += int(row["old_links"])
        entry["new"] += int(row["new_links"])
        if row["correlation"] is not None:
            entry["min_correlation"] = round(min(entry["min_correlation"], row["correlation"]), 4)
        entry["max_bits"] = max(entry["max_bits"], row["bits"])
    fine = np.array(fine_checked) if fine_checked else np.zeros(1)
    report = {
        "recordings": len(items),
        "pairs": pairs,
        "duration_matched_pairs": duration_matched,
        "false_links_old_rule": old_links,
        "false_links_new_rule": new_links,
        "false_link_rate_old": old_links / pairs if pairs else 0.0,
        "false_link_rate_new": new_links / pairs if pairs else 0.0,
        "false_link_rate_new_upper95": clopper_pearson_upper(new_links, pairs) if pairs else None,
        "recordings_lost_old_rule": len({c["b"] for c in false_old}),
        "recordings_lost_new_rule": len({c["b"] for c in false_new}),
        "same_recording_links_old_rule": len(coarse) - old_links,
        "same_recording_links_new_rule": sum(
            1 for c in coarse if c["new_links"] and c["pcm_correlation"] >= SAME_RECORDING_PCM
        ),
        "coarse_matches": sorted(coarse, key=lambda c: -c["correlation"]),
        "duration_matched_correlation": {
            "max": round(float(fine.max()), 4),
            "p99": round(float(np.quantile(fine, 0.99)), 4),
            "median": round(float(np.median(fine)), 4),
        },
        "true_duplicates": {"originals": len(originals), "by_variant": by_kind},
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"recordings: {report['recordings']} distinct ({len(files)} files); pairs: {pairs}")
    spread_of = report["duration_matched_correlation"]
    print(
        f"duration-matched pairs: {duration_matched}; fine correlation over them: "
        f"median {spread_of['median']}, p99 {spread_of['p99']}, max {spread_of['max']}"
    )
    lost_old, lost_new = report["recordings_lost_old_rule"], report["recordings_lost_new_rule"]
    print(
        f"false links, old rule (duration + <= 80 bits): {old_links} "
        f"({report['false_link_rate_old']:.2e} of pairs; {lost_old} recordings lost)"
    )
    print(
        f"false links, new rule (+ correlation >= threshold): {new_links} "
        f"({report['false_link_rate_new']:.2e} of pairs, 95 % upper bound "
        f"{report['false_link_rate_new_upper95']:.2e}; {lost_new} recordings lost)"
    )
    print(
        f"links between files of one recording (samples correlate >= {SAME_RECORDING_PCM}): "
        f"old rule {report['same_recording_links_old_rule']}, "
        f"new rule {report['same_recording_links_new_rule']}"
    )
    print("pairs within 80 bits (fine correlation, sample correlation):")
    for c in report["coarse_matches"]:
        print(
            f"  {c['bits']:3d} bits  fine {c['correlation']:.3f}  samples "
            f"{c['pcm_correlation']:.3f}  gap {c['gap_s']:+.2f} s  {c['a']}  ~  {c['b']}"
        )
    print(f"true duplicates ({len(originals)} originals):")
    for kind, e in by_kind.items():
        print(
            f"  {kind:16s} old rule {e['old']}/{e['n']}  new rule {e['new']}/{e['n']}  "
            f"max bits {e['max_bits']}  min correlation {e['min_correlation']}"
        )
    print(f"took {report['seconds']} s")


if __name__ == "__main__":
    main()
