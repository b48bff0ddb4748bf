"""Re-orchestrated melodies: does the gate see a copied tune played on other instruments,
in another key and at another tempo?

    .venv/bin/python benchmarks/reorchestration_eval.py [--manifest CSV] [--work-dir DIR]
        [--tune-scores 1,2,3] [--embed-seconds 60] [--no-embedding] [--no-melody] [--json]

The six music21 scores of the demo corpus (the manifest rows whose ``source`` starts with
``music21-corpus``) are the training members: each is rendered exactly as the corpus
renders it (music21 → MIDI → fluidsynth with the TimGM6mb soundfont, decoded to 16 kHz
mono through the gate's signal path). Every score is then rendered again from a rewritten
MIDI file in variant families:

- ``timbre``: every part on another General MIDI program (strings, brass, organ, guitar),
  same key and tempo;
- ``key+tempo``: the original instruments, +2 semitones and 10 % faster, or -2 semitones
  and 10 % slower;
- ``reorchestrated``: each of the four programs combined with each key/tempo pair (the
  copied-tune case; 8 variants per score).

Fingerprints (``generation.fingerprint``): the index holds the six originals (one party
per score); a variant is blocked when its windowed score (``match_windows``, as the gate
scores) reaches ``MIN_THRESHOLD`` = 10, the demo's calibrated threshold. Negatives: each
variant against an index of the other five originals, the false-match level.

Melody (``generation.melody``): the same positives and negatives; the threshold is the
highest negative of the tuning scores (``--tune-scores``, default 1-3, on which the
detector's parameters were also chosen), and block rates are reported for the other
scores, for the tuning scores and overall. The false-block check: 30 s middle excerpts
of the installed Wesnoth and HyperRogue music (other pieces) against the six originals.
Speed: 10 s queries against an index of about an hour of audio.

For information, MSD-musicnn: cosine similarity of the mean-pooled, L2-normalised
embedding of each variant (its first ``--embed-seconds``) to its own original and to the
other five; how often the own original is the nearest.

Exit codes: 0 done, 2 bad input (manifest or scores missing), 3 a render tool missing.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("reorchestration_eval")
SR = 16_000
SCORE_SOURCE_PREFIX = "music21-corpus"
DEFAULT_MANIFEST = (
    Path(__file__).resolve().parent.parent / "provenance" / "data" / "demo_manifest.csv"
)
EXIT_BAD_INPUT = 2
EXIT_MISSING_TOOL = 3

# One General MIDI program per instrument family (0-based program numbers).
PROGRAMS = {
    "strings": 48,  # String Ensemble 1
    "brass": 61,  # Brass Section
    "organ": 19,  # Church Organ
    "guitar": 24,  # Acoustic Guitar (nylon)
}
KEY_TEMPO = ((2, 1.10), (-2, 0.90))  # (semitones, tempo factor)
DRUM_CHANNEL = 10  # 1-based, as music21 numbers MIDI channels
REWRITE_VERSION = 2  # part of every cached variant's key: bump when rewrite_midi changes


@dataclass(frozen=True)
class Variant:
    """A rewrite of a score's MIDI: ``program`` None keeps the score's own instruments."""

    family: str
    program_name: str | None
    semitones: int
    tempo: float

    @property
    def name(self) -> str:
        parts = [self.program_name or "own-instruments"]
        if self.semitones:
            parts.append(f"{self.semitones:+d}st")
        if self.tempo != 1.0:
            parts.append(f"{(self.tempo - 1) * 100:+.0f}%tempo")
        return " ".join(parts)


def variants() -> list[Variant]:
    out = [Variant("timbre", name, 0, 1.0) for name in PROGRAMS]
    out += [Variant("key+tempo", None, st, tempo) for st, tempo in KEY_TEMPO]
    out += [
        Variant("reorchestrated", name, st, tempo) for name in PROGRAMS for st, tempo in KEY_TEMPO
    ]
    return out


def score_references(manifest: Path) -> list[str]:
    """The music21 corpus references of the manifest's score rows, in manifest order."""
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r["path"] for r in rows if (r.get("source") or "").startswith(SCORE_SOURCE_PREFIX)]


def rewrite_midi(src: Path, dest: Path, variant: Variant) -> None:
    """Copy a MIDI file with every part's program, every pitch and the tempo changed.

    The tempo is scaled through the file's division (ticks per quarter note): every tempo
    event keeps its value and each tick lasts ``1/tempo`` as long. Drums (channel 10) are
    neither transposed nor re-programmed.
    """
    from music21 import midi

    mf = midi.MidiFile()
    mf.open(str(src))
    mf.read()
    mf.close()
    division = int(round(mf.ticksPerQuarterNote * variant.tempo))
    if not 0 < division < 1 << 15:
        raise ValueError(f"tempo {variant.tempo} gives a MIDI division {division} out of range")
    mf.ticksPerQuarterNote = division
    program = PROGRAMS[variant.program_name] if variant.program_name else None
    for track in mf.tracks:
        channels: set[int] = set()
        for event in track.events:
            if event.isDeltaTime() or event.channel == DRUM_CHANNEL:
                continue
            if event.type in (
                midi.ChannelVoiceMessages.NOTE_ON,
                midi.ChannelVoiceMessages.NOTE_OFF,
            ):
                channels.add(event.channel)
                assert event.pitch is not None  # note events always carry a pitch
                pitch = event.pitch + variant.semitones
                if not 0 <= pitch <= 127:
                    raise ValueError(f"{src}: pitch {event.pitch} moves out of MIDI range")
                event.pitch = pitch
            elif event.type == midi.ChannelVoiceMessages.PROGRAM_CHANGE and program is not None:
                event.data = program
        _silence_at_end(track, channels)
        if program is None:
            continue
        # Parts without a program change play the default piano: give them the program.
        programmed = {
            e.channel
            for e in track.events
            if not e.isDeltaTime() and e.type == midi.ChannelVoiceMessages.PROGRAM_CHANGE
        }
        prefix: list[Any] = []
        for channel in sorted(channels - programmed):
            prefix.append(midi.DeltaTime(track, time=0, channel=channel))
            change = midi.MidiEvent(
                track, type=midi.ChannelVoiceMessages.PROGRAM_CHANGE, channel=channel
            )
            change.data = program
            prefix.append(change)
        track.events[0:0] = prefix
    mf.open(str(dest), "wb")
    mf.write()
    mf.close()


def _silence_at_end(track: Any, channels: Iterable[int]) -> None:
    """All notes off, then all sound off, on every channel at the end of the track.

    A sustained program (strings, organ) holds a note whose note-off fluidsynth lost to an
    overlapping repeat of the same pitch forever, and fluidsynth then never stops
    rendering; the piano of the corpus render decays on its own.
    """
    from music21 import midi

    events: list[Any] = []
    for channel in sorted(channels):
        for controller in (123, 120):  # all notes off, all sound off
            events.append(midi.DeltaTime(track, time=0, channel=channel))
            change = midi.MidiEvent(
                track, type=midi.ChannelVoiceMessages.CONTROLLER_CHANGE, channel=channel
            )
            change.parameter1, change.parameter2 = controller, 0
            events.append(change)
    end = len(track.events)
    if end and track.events[-1].type == midi.MetaEvents.END_OF_TRACK:
        end -= 2 if end >= 2 and track.events[-2].isDeltaTime() else 1
    track.events[end:end] = events


def render_original(reference: str, work: Path) -> np.ndarray:
    """The training member: the corpus's own render (cached), decoded as the gate decodes."""
    from flows.render_scores import ScoreRef, render_score
    from generation.gate_models import load_wave_16k

    ref = ScoreRef.parse(reference)
    rendered = render_score(str(ref), work / "scores" / ref.wav_name())
    return load_wave_16k(str(rendered.path))


def render_variant(reference: str, plain_midi: Path, variant: Variant, work: Path) -> np.ndarray:
    """Rewrite the score's MIDI for ``variant`` and render it as the corpus renders scores.

    The WAV is kept under ``work/variants`` with a sidecar holding everything it depends
    on (the corpus render key and the variant), and reused when the sidecar matches.
    """
    from flows.render_scores import DEFAULT_SOUNDFONT, ScoreRef, render_key, render_midi
    from generation.gate_models import load_wave_16k

    ref = ScoreRef.parse(reference)
    slug = variant.name.replace(" ", "_").replace("%", "pct")
    wav = work / "variants" / ref.wav_name().removesuffix(".wav") / f"{slug}.wav"
    sidecar = wav.with_name(wav.name + ".json")
    key = json.dumps(
        {
            "render": render_key(ref, soundfont=DEFAULT_SOUNDFONT, sample_rate=44100),
            "variant": [variant.program_name, variant.semitones, variant.tempo],
            "programs": PROGRAMS,
            "rewrite": REWRITE_VERSION,
        },
        sort_keys=True,
    )
    if wav.is_file() and sidecar.is_file() and sidecar.read_text() == key:
        return load_wave_16k(str(wav))
    wav.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reorchestration-", dir=work) as tmp:
        rewritten, partial = Path(tmp) / "variant.mid", Path(tmp) / "variant.wav"
        rewrite_midi(plain_midi, rewritten, variant)
        render_midi(rewritten, partial, soundfont=DEFAULT_SOUNDFONT, sample_rate=44100)
        partial.replace(wav)
    sidecar.write_text(key)
    return load_wave_16k(str(wav))


@dataclass
class Rendered:
    score: int  # 0-based position among the scores; also the recording and party id
    variant: Variant
    wave: np.ndarray


# --------------------------------------------------------------------------- fingerprints


def fingerprint_scores(
    originals: Sequence[np.ndarray], rendered: Sequence[Rendered]
) -> list[dict[str, Any]]:
    """Per variant: the windowed score against all six originals and against the other five."""
    from generation.fingerprint import FingerprintIndex, quads

    refs = [quads(w) for w in originals]

    def index_of(members: Iterable[int]) -> FingerprintIndex:
        keep = list(members)
        parts = [refs[i] for i in keep]
        return FingerprintIndex(
            np.concatenate([q.hashes for q in parts]),
            np.repeat(np.asarray(keep, dtype=np.int64), [len(q) for q in parts]),
            np.concatenate([q.anchor_t for q in parts]),
            np.concatenate([q.anchor_f for q in parts]),
            np.concatenate([q.span for q in parts]),
            {i: [i] for i in keep},
        )

    full = index_of(range(len(originals)))
    without = [index_of(j for j in range(len(originals)) if j != i) for i in range(len(refs))]
    out = []
    for item in rendered:
        hit = full.match_windows(item.wave)
        miss = without[item.score].match_windows(item.wave)
        out.append(
            {
                "score": hit.score,
                "recording": hit.recording_id,
                "pitch_semitones": hit.pitch_semitones,
                "time_scale": round(hit.time_scale, 3),
                "negative_score": miss.score,
                "negative_recording": miss.recording_id,
            }
        )
    return out


# --------------------------------------------------------------------------- embeddings


def mean_embeddings(waves: Sequence[np.ndarray], seconds: float) -> np.ndarray:
    """[n, D] mean-pooled MSD-musicnn embeddings of each wave's first ``seconds``, unit norm."""
    from training.musicnn.embedder import MusicnnEmbedder

    embedder = MusicnnEmbedder.load()
    rows = []
    for wave in waves:
        vec = embedder.embed_audio(wave[: int(seconds * SR)]).mean(axis=0)
        rows.append(vec / (np.linalg.norm(vec) + 1e-12))
    return np.stack(rows).astype(np.float64)


def embedding_similarity(
    originals: np.ndarray, variant_vecs: np.ndarray, rendered: Sequence[Rendered]
) -> list[dict[str, Any]]:
    cos = variant_vecs @ originals.T
    out = []
    for row, item in zip(cos, rendered, strict=True):
        others = np.delete(row, item.score)
        out.append(
            {
                "own_cosine": round(float(row[item.score]), 4),
                "best_other_cosine": round(float(others.max()), 4),
                "own_is_nearest": bool(int(np.argmax(row)) == item.score),
            }
        )
    return out


# --------------------------------------------------------------------------- melody


def melody_scores(
    originals: Sequence[np.ndarray], rendered: Sequence[Rendered]
) -> list[dict[str, Any]]:
    """Per variant: the melody match against all six originals and against the other five."""
    from generation.melody import MelodyIndex

    everyone = range(len(originals))
    full = MelodyIndex.build({i: originals[i] for i in everyone}, {i: [i] for i in everyone})
    without = [
        MelodyIndex.build(
            {j: originals[j] for j in everyone if j != i}, {j: [j] for j in everyone if j != i}
        )
        for i in everyone
    ]
    out = []
    for item in rendered:
        hit = full.match(item.wave)
        miss = without[item.score].match(item.wave)
        out.append(
            {
                "melody_score": round(hit.score, 4),
                "melody_recording": hit.recording_id,
                "melody_transpose": hit.transpose_semitones,
                "melody_time_scale": hit.time_scale,
                "melody_negative_score": round(miss.score, 4),
                "melody_negative_recording": miss.recording_id,
            }
        )
    return out


def melody_rates(
    rendered: Sequence[Rendered],
    rows: Sequence[dict[str, Any]],
    members: Sequence[int],
    threshold: float,
) -> dict[str, Any]:
    """How many of ``members`` match their own original above ``threshold``."""
    blocked = [
        float(rows[i]["melody_score"]) > threshold
        and rows[i]["melody_recording"] == rendered[i].score
        for i in members
    ]
    return {
        "n": len(members),
        "blocked": int(sum(blocked)),
        "block_rate": round(sum(blocked) / len(members), 3) if members else None,
    }


def summarise_melody(
    rendered: Sequence[Rendered], rows: Sequence[dict[str, Any]], tune_scores: set[int]
) -> dict[str, Any]:
    """Block rates with the threshold set on the tuning scores' negatives (and on all)."""
    tune = [i for i, r in enumerate(rendered) if r.score in tune_scores]
    threshold_tune = max(float(rows[i]["melody_negative_score"]) for i in tune)
    threshold_all = max(float(r["melody_negative_score"]) for r in rows)

    halves = {
        "tune": tune,
        "report": [i for i, r in enumerate(rendered) if r.score not in tune_scores],
        "overall": list(range(len(rendered))),
    }
    families = list(dict.fromkeys(r.variant.family for r in rendered))
    table: dict[str, Any] = {}
    for half, members in halves.items():
        table[half] = {"all variants": melody_rates(rendered, rows, members, threshold_tune)}
        for family in families:
            table[half][family] = melody_rates(
                rendered,
                rows,
                [i for i in members if rendered[i].variant.family == family],
                threshold_tune,
            )
    positives = [float(r["melody_score"]) for r in rows]
    negatives = [float(r["melody_negative_score"]) for r in rows]
    return {
        "tune_scores": sorted(s + 1 for s in tune_scores),
        "threshold_from_tune_negatives": round(threshold_tune, 4),
        "threshold_from_all_negatives": round(threshold_all, 4),
        "rates": table,
        "overall_with_threshold_from_all_negatives": melody_rates(
            rendered, rows, halves["overall"], threshold_all
        ),
        "positive_score_range": [round(min(positives), 4), round(max(positives), 4)],
        "negative_score_median": round(float(np.median(negatives)), 4),
    }


OUTSIDE_MUSIC = (
    Path("/usr/share/games/wesnoth/1.16/data/core/music"),
    Path("/usr/share/hyperrogue/music"),
)


def outside_excerpts(seconds: float) -> list[tuple[str, np.ndarray]]:
    """``seconds`` from the middle of every installed Wesnoth and HyperRogue track."""
    from generation.gate_models import load_wave_16k

    out = []
    for folder in OUTSIDE_MUSIC:
        for path in sorted(folder.glob("*.ogg")):
            wave = load_wave_16k(str(path))
            n = int(seconds * SR)
            start = max(0, (wave.size - n) // 2)
            out.append((str(path), wave[start : start + n]))
    return out


def melody_outside(
    originals: Sequence[np.ndarray],
    excerpts: Sequence[tuple[str, np.ndarray]],
    threshold: float,
    threshold_all: float,
) -> dict[str, Any]:
    """Outside music against the six originals: the false-block check."""
    from generation.melody import MelodyIndex

    everyone = range(len(originals))
    index = MelodyIndex.build({i: originals[i] for i in everyone}, {i: [i] for i in everyone})
    scored = sorted(((index.match(wave).score, path) for path, wave in excerpts), reverse=True)
    scores = [score for score, _ in scored]
    return {
        "n": len(scored),
        "above_threshold": sum(score > threshold for score in scores),
        "above_threshold_from_all_negatives": sum(score > threshold_all for score in scores),
        "max_score": round(scores[0], 4) if scores else None,
        "median_score": round(float(np.median(scores)), 4) if scores else None,
        "highest": [{"path": path, "score": round(score, 4)} for score, path in scored[:5]],
    }


def melody_speed(
    waves: Sequence[np.ndarray], queries: Sequence[np.ndarray], *, index_seconds: float
) -> dict[str, Any]:
    """Build an index of about ``index_seconds`` of audio and time 10 s queries against it."""
    from generation.melody import MelodyIndex

    chosen: dict[int, np.ndarray] = {}
    total = 0.0
    while total < index_seconds:  # repeat the renders when they hold less than asked
        for wave in waves:
            if total >= index_seconds:
                break
            chosen[len(chosen)] = wave
            total += wave.size / SR
    started = time.perf_counter()
    index = MelodyIndex.build(chosen, {})
    build_s = time.perf_counter() - started
    clips = [q[: 10 * SR] for q in queries if q.size >= 10 * SR]
    index.match(clips[0])  # the first match computes the index's block transforms
    times = []
    for clip in clips:
        started = time.perf_counter()
        index.match(clip)
        times.append(time.perf_counter() - started)
    return {
        "index_seconds": round(index.seconds, 1),
        "index_bytes": len(index.to_bytes()),
        "build_s": round(build_s, 2),
        "queries": len(times),
        "match_ms_median": round(1000 * float(np.median(times)), 1),
        "match_ms_p90": round(1000 * float(np.percentile(times, 90)), 1),
        "match_ms_max": round(1000 * max(times), 1),
    }


# --------------------------------------------------------------------------- report


def family_of(v: Variant) -> str:
    return v.family if v.family != "reorchestrated" else f"reorchestrated ({v.program_name})"


def summarise_fingerprints(
    rendered: Sequence[Rendered], rows: Sequence[dict[str, Any]], threshold: int
) -> dict[str, Any]:
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(rendered):
        for key in (item.variant.family, family_of(item.variant)):
            groups.setdefault(key, [])
            if i not in groups[key]:
                groups[key].append(i)
    out: dict[str, Any] = {}
    for key, members in groups.items():
        scores = [int(rows[i]["score"]) for i in members]
        own = [rows[i]["recording"] == rendered[i].score for i in members]
        blocked = [s >= threshold and o for s, o in zip(scores, own, strict=True)]
        out[key] = {
            "n": len(members),
            "blocked": int(sum(blocked)),
            "block_rate": round(sum(blocked) / len(members), 3),
            "scores": scores,
            "negative_scores": [int(rows[i]["negative_score"]) for i in members],
        }
    return out


def summarise_embeddings(
    rendered: Sequence[Rendered], rows: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for family in dict.fromkeys(r.variant.family for r in rendered):
        members = [i for i, r in enumerate(rendered) if r.variant.family == family]
        own = np.array([rows[i]["own_cosine"] for i in members])
        other = np.array([rows[i]["best_other_cosine"] for i in members])
        nearest = sum(rows[i]["own_is_nearest"] for i in members)
        out[family] = {
            "n": len(members),
            "own_nearest": int(nearest),
            "own_nearest_rate": round(nearest / len(members), 3),
            "own_cosine_median": round(float(np.median(own)), 4),
            "best_other_cosine_median": round(float(np.median(other)), 4),
        }
    return out


def fail(message: str, code: int) -> None:
    sys.stderr.write(f"reorchestration_eval: {message}\n")
    raise SystemExit(code)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Render the demo corpus's six music21 scores and re-orchestrated variants "
            "(other instruments, ±2 semitones, ±10 %% tempo); report how often the "
            "fingerprint detector blocks them, the false-match level against the other "
            "scores, and (for information) MSD-musicnn similarity."
        )
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        default=DEFAULT_MANIFEST,
        help="demo manifest CSV; its rows whose source starts with 'music21-corpus' are used",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="folder for the renders (reused between runs when unchanged); default a temporary one",
    )
    parser.add_argument(
        "--embed-seconds",
        type=float,
        default=60.0,
        help="embed the first this-many seconds of every render with MSD-musicnn",
    )
    parser.add_argument(
        "--no-embedding", action="store_true", help="skip the MSD-musicnn comparison"
    )
    parser.add_argument(
        "--tune-scores",
        default="1,2,3",
        help="1-based scores (manifest order) whose negatives set the melody threshold; "
        "the others are the report half",
    )
    parser.add_argument(
        "--outside-seconds",
        type=float,
        default=30.0,
        help="length of the middle excerpt of each outside (Wesnoth, HyperRogue) track",
    )
    parser.add_argument(
        "--speed-index-seconds",
        type=float,
        default=3600.0,
        help="audio in the index the melody matching speed is measured against",
    )
    parser.add_argument("--no-melody", action="store_true", help="skip the melody detector")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return parser.parse_args(argv)


def render_all(references: Sequence[str], work: Path) -> tuple[list[np.ndarray], list[Rendered]]:
    from flows.render_scores import ScoreRef, write_midi

    originals, rendered = [], []
    plan = variants()
    for number, reference in enumerate(references):
        originals.append(render_original(reference, work))
        with tempfile.TemporaryDirectory(prefix="reorchestration-", dir=work) as tmp:
            plain = Path(tmp) / "score.mid"
            write_midi(ScoreRef.parse(reference), plain)
            for variant in plan:
                wave = render_variant(reference, plain, variant, work)
                rendered.append(Rendered(number, variant, wave))
        log.info("rendered %s and %d variants", reference, len(plan))
    return originals, rendered


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from flows.render_scores import MissingRenderToolError
    from generation.fingerprint import MIN_THRESHOLD

    if not args.manifest.is_file():
        fail(f"manifest {args.manifest} does not exist", EXIT_BAD_INPUT)
    references = score_references(args.manifest)
    if not references:
        fail(f"{args.manifest} has no rows whose source starts with {SCORE_SOURCE_PREFIX!r}", 2)
    started = time.perf_counter()
    try:
        originals, rendered = render_all(references, work)
    except MissingRenderToolError as exc:
        fail(str(exc), EXIT_MISSING_TOOL)
    render_s = time.perf_counter() - started

    started = time.perf_counter()
    fp_rows = fingerprint_scores(originals, rendered)
    fingerprint_s = time.perf_counter() - started
    report: dict[str, Any] = {
        "scores": [
            {"reference": ref, "duration_s": round(w.size / SR, 1)}
            for ref, w in zip(references, originals, strict=True)
        ],
        "variants_per_score": len(variants()),
        "fingerprint": {
            "threshold": MIN_THRESHOLD,
            "families": summarise_fingerprints(rendered, fp_rows, MIN_THRESHOLD),
            "max_negative_score": max(int(r["negative_score"]) for r in fp_rows),
        },
        "per_variant": [
            {"reference": references[r.score], "variant": r.variant.name, **row}
            for r, row in zip(rendered, fp_rows, strict=True)
        ],
        "seconds": {"render": round(render_s, 1), "fingerprint": round(fingerprint_s, 1)},
    }
    if not args.no_melody:
        try:
            tune_scores = {int(x) - 1 for x in args.tune_scores.split(",") if x.strip()}
        except ValueError:
            fail(f"--tune-scores {args.tune_scores!r} is not a comma-separated list", 2)
        if not tune_scores or not tune_scores < set(range(len(references))):
            fail(
                f"--tune-scores {args.tune_scores!r} must name some but not all of the "
                f"scores 1..{len(references)}",
                EXIT_BAD_INPUT,
            )
        started = time.perf_counter()
        mel_rows = melody_scores(originals, rendered)
        summary = summarise_melody(rendered, mel_rows, tune_scores)
        for row, mel in zip(report["per_variant"], mel_rows, strict=True):
            row.update(mel)
        excerpts = outside_excerpts(args.outside_seconds)
        summary["outside"] = melody_outside(
            originals,
            excerpts,
            summary["threshold_from_tune_negatives"],
            summary["threshold_from_all_negatives"],
        )
        # For information only (the threshold is then chosen on the evaluation set itself):
        # the block rates if the threshold sat just above every outside excerpt.
        above_outside = summary["outside"]["max_score"]
        summary["if_threshold_above_outside"] = {
            "threshold": above_outside,
            **{
                family: melody_rates(
                    rendered,
                    mel_rows,
                    [i for i, r in enumerate(rendered) if r.variant.family == family],
                    above_outside,
                )
                for family in dict.fromkeys(r.variant.family for r in rendered)
            },
        }
        report["seconds"]["melody"] = round(time.perf_counter() - started, 1)
        summary["speed"] = melody_speed(
            [*originals, *(r.wave for r in rendered)],
            [w for _, w in excerpts],
            index_seconds=args.speed_index_seconds,
        )
        report["melody"] = summary
    if not args.no_embedding:
        started = time.perf_counter()
        vecs = mean_embeddings([*originals, *(r.wave for r in rendered)], args.embed_seconds)
        emb_rows = embedding_similarity(vecs[: len(originals)], vecs[len(originals) :], rendered)
        report["embedding"] = {
            "embed_seconds": args.embed_seconds,
            "families": summarise_embeddings(rendered, emb_rows),
        }
        for row, emb in zip(report["per_variant"], emb_rows, strict=True):
            row.update(emb)
        report["seconds"]["embedding"] = round(time.perf_counter() - started, 1)
    return report


def print_text(report: dict[str, Any]) -> None:
    fp = report["fingerprint"]
    print(f"{len(report['scores'])} scores, {report['variants_per_score']} variants each")
    print(f"fingerprint: blocked when score >= {fp['threshold']} on the own original")
    for family, row in fp["families"].items():
        print(
            f"  {family:28s} {row['blocked']:3d}/{row['n']:<3d} ({row['block_rate']:.0%})  "
            f"scores {row['scores']}  without own original {row['negative_scores']}"
        )
    print(f"  highest score against an index without the own original: {fp['max_negative_score']}")
    if "melody" in report:
        mel = report["melody"]
        print(
            f"melody: blocked when the score against the own original exceeds "
            f"{mel['threshold_from_tune_negatives']:.3f}, the highest negative of scores "
            f"{mel['tune_scores']} (highest of all negatives: "
            f"{mel['threshold_from_all_negatives']:.3f})"
        )
        for half, families in mel["rates"].items():
            for family, row in families.items():
                print(
                    f"  {half:8s} {family:16s} {row['blocked']:3d}/{row['n']:<3d} "
                    f"({row['block_rate']:.0%})"
                )
        every = mel["overall_with_threshold_from_all_negatives"]
        print(
            f"  overall with the threshold from all negatives: "
            f"{every['blocked']}/{every['n']} ({every['block_rate']:.0%})"
        )
        out = mel["outside"]
        print(
            f"  outside music: {out['above_threshold']}/{out['n']} above the threshold; "
            f"max {out['max_score']}, median {out['median_score']}"
        )
        print(f"  if the threshold sat above every outside excerpt ({out['max_score']}):")
        for family, row in mel["if_threshold_above_outside"].items():
            if family != "threshold":
                print(
                    f"    {family:16s} {row['blocked']:3d}/{row['n']:<3d} ({row['block_rate']:.0%})"
                )
        speed = mel["speed"]
        print(
            f"  speed: 10 s query against {speed['index_seconds']:.0f} s of audio: median "
            f"{speed['match_ms_median']} ms, p90 {speed['match_ms_p90']} ms "
            f"(build {speed['build_s']} s, {speed['index_bytes']} bytes)"
        )
    if "embedding" in report:
        print(
            f"MSD-musicnn (first {report['embedding']['embed_seconds']:g} s, mean-pooled, cosine)"
        )
        for family, row in report["embedding"]["families"].items():
            print(
                f"  {family:28s} own original nearest {row['own_nearest']}/{row['n']}  "
                f"median cosine own {row['own_cosine_median']:.3f} "
                f"best other {row['best_other_cosine_median']:.3f}"
            )
    print("seconds:", report["seconds"])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        report = run(args, args.work_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="fairchord-reorchestration-") as tmp:
            report = run(args, Path(tmp))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
