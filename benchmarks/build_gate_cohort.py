"""Build the gate's shipped outside-music cohort, ``generation/data/musicnn_cohort.npz``.

    .venv/bin/python benchmarks/build_gate_cohort.py [--csv benchmarks/data/gate_music.csv]
        [--out generation/data/musicnn_cohort.npz] [--excerpt-seconds 30]

Takes the **tune** half's ``outside`` tracks of the evaluation set only (the report half is
never seen by the gate), a 30 s excerpt from the middle of each, embeds it with the gate's
MSD-musicnn embedder and stores the windows with each track's package, path, artist,
licence and file sha256 (calibration leaves out a track that is a snapshot member).
Tracks whose sha256-of-path is even are the ``cohort`` (score normalisation), the others
the ``calibration`` negatives, exactly as ``benchmarks/artist_eval.py`` splits them.
Needs the Debian packages of ``benchmarks/install_gate_music.sh``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from artist_eval import (  # noqa: E402
    DEFAULT_CSV,
    cached_outputs,
    features,
    is_cohort,
    load_excerpt,
    read_rows,
)


def tune_outside_rows(csv_path: Path) -> list[dict[str, str]]:
    """The tune half's installed outside tracks: what both shipped cohorts are made of."""
    return [
        r
        for r in read_rows(csv_path)
        if r["role"] == "outside" and r["split"] == "tune" and Path(r["path"]).is_file()
    ]


def track_meta(row: dict[str, str], seconds: float) -> dict[str, Any]:
    """A cohort track's provenance: package, path, artist, licence, file sha256, length."""
    return {
        "package": row["package"],
        "path": row["path"],
        "artist": row["artist"],
        "licence": row["licence"],
        "sha256": hashlib.sha256(Path(row["path"]).read_bytes()).hexdigest(),
        "excerpt_seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--excerpt-seconds", type=float, default=30.0)
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "fairchord-bench" / "musicnn"
    )
    args = parser.parse_args(argv)

    import torch
    from rich.progress import track

    from generation.cohort import default_cohort_path, write_cohort
    from training.musicnn.embedder import MusicnnEmbedder

    torch.set_num_threads(2)
    rows = tune_outside_rows(args.csv)
    if not rows:
        print(
            "no tune-half outside tracks are installed: run benchmarks/install_gate_music.sh",
            file=sys.stderr,
        )
        return 2
    embedder = MusicnnEmbedder.load()
    tracks, roles, meta, levels = [], [], [], []
    args.cache.mkdir(parents=True, exist_ok=True)
    for row in track(rows, description="embedding the cohort"):
        outputs = cached_outputs(embedder, row, args.cache, args.excerpt_seconds)
        tracks.append(features(outputs, embedder.feature))
        levels.append(embedder.window_levels_db(load_excerpt(row["path"], args.excerpt_seconds)))
        roles.append("cohort" if is_cohort(row) else "calibration")
        meta.append(track_meta(row, len(tracks[-1]) * 3.0))
    out = args.out or default_cohort_path()
    sha = write_cohort(
        out, embedder_sha256=embedder.sha256, tracks=tracks, roles=roles, meta=meta, levels=levels
    )
    print(
        f"{out}: {roles.count('cohort')} cohort + {roles.count('calibration')} calibration "
        f"tracks by {len({m['artist'] for m in meta})} artists, sha256 {sha}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
