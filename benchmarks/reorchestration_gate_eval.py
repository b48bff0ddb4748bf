"""Re-orchestrated member scores against a home's real, calibrated gate.

    FAIRCHORD_HOME=~/.fairchord .venv/bin/python benchmarks/reorchestration_gate_eval.py \\
        [--checkpoint N] [--work-dir DIR] [--crop-seconds 10] [--json]

Renders the demo corpus's six music21 member scores in the 16 variants of
``reorchestration_eval.py`` (other General MIDI programs, ±2 semitones with ±10 % tempo,
and both at once) and runs every render through the home's gate exactly as
``fairchord gate check`` does, twice: the whole render, and a ``--crop-seconds`` crop from
its middle (the length of a generated clip). Reports, per variant family, how many are
blocked and by which detector, for scores 1-3 (on which the melody detector's front end
was chosen) and 4-6 apart. Nothing here is tuned: the thresholds are the home's
calibration, set on outside music and the snapshot.

Needs a home whose snapshot holds the six scores (the demo under the ``research``
policy) and whose gate was calibrated with the melody detector (``fairchord gate
calibrate``). Exit codes: 0 done, 2 bad input, 3 a render tool missing, 6 the gate could
not decide.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reorchestration_eval import (  # noqa: E402
    DEFAULT_MANIFEST,
    SR,
    render_all,
    score_references,
)

TUNE_SCORES = {0, 1, 2}
DETECTORS = ("track", "artist", "fingerprint", "melody")


def _detectors(reasons: Sequence[str]) -> list[str]:
    prefixes = {
        "track_similarity": "track",
        "artist_similarity": "artist",
        "fingerprint": "fingerprint",
        "melody": "melody",
    }
    return sorted({name for p, name in prefixes.items() for r in reasons if r.startswith(p)})


def _middle(wave: np.ndarray, seconds: float) -> np.ndarray:
    n = int(seconds * SR)
    start = max(0, (wave.size - n) // 2)
    return wave[start : start + n]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for query in ("whole", "crop"):
        for half, scores in (("scores 1-3", TUNE_SCORES), ("scores 4-6", None)):
            for family in dict.fromkeys(r["family"] for r in rows):
                chosen = [
                    r
                    for r in rows
                    if r["query"] == query
                    and r["family"] == family
                    and ((r["score"] in scores) if scores else (r["score"] not in TUNE_SCORES))
                ]
                if not chosen:
                    continue
                out.setdefault(query, {}).setdefault(half, {})[family] = {
                    "n": len(chosen),
                    "blocked": sum(r["verdict"] == "block" for r in chosen),
                    "by": {d: sum(d in r["detectors"] for r in chosen) for d in DETECTORS},
                }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=int, default=None, help="default: the newest")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--work-dir", type=Path, default=None, help="render cache folder")
    parser.add_argument("--crop-seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.manifest.is_file():
        print(f"manifest {args.manifest} does not exist", file=sys.stderr)
        return 2
    references = score_references(args.manifest)
    if len(references) <= max(TUNE_SCORES):
        print(f"{args.manifest} has {len(references)} score rows; need 4 or more", file=sys.stderr)
        return 2

    from flows.cli.common import session_scope
    from flows.cli.gate import resolve_checkpoint
    from flows.render_scores import MissingRenderToolError
    from generation.gate import SimilarityGate
    from generation.gate_models import load_gate_embedder
    from generation.index import GateUnavailable, load_index

    with tempfile.TemporaryDirectory(prefix="fairchord-reorch-gate-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            _, rendered = render_all(references, work)
        except MissingRenderToolError as exc:
            print(str(exc), file=sys.stderr)
            return 3
    rows: list[dict[str, Any]] = []
    timings: list[float] = []
    try:
        with session_scope() as session:
            ckpt = resolve_checkpoint(session, args.checkpoint)
            embedder = load_gate_embedder()
            index = load_index(session, ckpt, embedder_sha256=embedder.sha256)
            if "melody" not in index.thresholds:
                print("this gate was calibrated without the melody detector", file=sys.stderr)
            gate = SimilarityGate(index, embedder)
            for item in rendered:
                for query, wave in (
                    ("whole", item.wave),
                    ("crop", _middle(item.wave, args.crop_seconds)),
                ):
                    started = time.perf_counter()
                    result = gate.check(wave)
                    timings.append((time.perf_counter() - started) / (wave.size / SR / 10))
                    rows.append(
                        {
                            "score": item.score,
                            "reference": references[item.score],
                            "variant": item.variant.name,
                            "family": item.variant.family,
                            "query": query,
                            "seconds": round(wave.size / SR, 1),
                            "verdict": result.verdict,
                            "detectors": _detectors(result.reasons),
                            "scores": result.detector_scores,
                        }
                    )
    except GateUnavailable as exc:
        print(f"the gate could not decide: {exc}", file=sys.stderr)
        return 6
    report = {
        "checkpoint": args.checkpoint,
        "crop_seconds": args.crop_seconds,
        "families": summarise(rows),
        "gate_s_per_10s_median": round(float(np.median(timings)), 3),
        "per_variant": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for query, halves in report["families"].items():
        label = "whole renders" if query == "whole" else f"{args.crop_seconds:g} s middle crops"
        print(f"{label}:")
        for half, families in halves.items():
            for family, row in families.items():
                by = ", ".join(f"{d} {n}" for d, n in row["by"].items() if n)
                print(
                    f"  {half:10s} {family:16s} blocked {row['blocked']:2d}/{row['n']:<2d} "
                    f"({row['blocked'] / row['n']:.0%})  by: {by or '-'}"
                )
    print(f"gate time per 10 s of audio, median: {report['gate_s_per_10s_median']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
