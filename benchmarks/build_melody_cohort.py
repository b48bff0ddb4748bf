"""Build the melody detector's shipped outside-music chroma, ``generation/data/melody_cohort.npz``.

    .venv/bin/python benchmarks/build_melody_cohort.py [--csv benchmarks/data/gate_music.csv]
        [--out generation/data/melody_cohort.npz] [--excerpt-seconds 30]

The same tracks as the musicnn cohort (``build_gate_cohort.py``): the **tune** half's
``outside`` tracks only, a 30 s excerpt from the middle of each, decoded to 16 kHz mono as
the gate decodes, and stored as the melody detector's chroma with each track's package,
path, artist, licence and file sha256 (calibration leaves out a track that is a member).
All of them are negatives for the melody threshold (the detector has no score
normalisation to keep apart). Needs the Debian packages of
``benchmarks/install_gate_music.sh``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from artist_eval import DEFAULT_CSV, load_excerpt  # noqa: E402
from build_gate_cohort import track_meta, tune_outside_rows  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--excerpt-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)

    from rich.progress import track

    from generation.melody import chroma
    from generation.melody_cohort import default_melody_cohort_path, write_melody_cohort

    rows = tune_outside_rows(args.csv)
    if not rows:
        print(
            "no tune-half outside tracks are installed: run benchmarks/install_gate_music.sh",
            file=sys.stderr,
        )
        return 2
    classes, loudness, meta = [], [], []
    for row in track(rows, description="chroma of the cohort"):
        wave = load_excerpt(row["path"], args.excerpt_seconds)
        c, loud = chroma(wave)
        classes.append(c)
        loudness.append(loud)
        meta.append(track_meta(row, wave.size / 16_000))
    out = args.out or default_melody_cohort_path()
    sha = write_melody_cohort(out, classes=classes, loudness=loudness, meta=meta)
    print(
        f"{out}: {len(meta)} tracks by {len({m['artist'] for m in meta})} artists, "
        f"{out.stat().st_size / 1e6:.1f} MB, sha256 {sha}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
