"""Ingest throughput on the demo corpus against a decode-only floor, in audio-seconds per
wall-second.

In one run, on the same files:

- **decode only**: a plain loop that decodes every file with soundfile (float32, in
  blocks) and does nothing else; the floor, the best pass of two (before and after the
  ingests).
- **ingest core**: :func:`provenance.ingest_runs.ingest_source`, sequential, no Prefect
  (hash, decode-validate, measure, fingerprint, tags, object store, DB rows).
- **ingest flow**: the `ingest-source` Prefect flow as `fairchord ingest` runs it (thread
  runner, ``--workers`` threads, default 2), after a warm-up run so the Prefect server is
  up and every import done.

Each ingest writes a fresh SQLite provenance DB and object store. The target is the flow
taking at most 2x the decode-only wall time. CPU seconds are printed beside wall seconds
(the flow's include its Prefect server's): on shared cores the wall figures vary from run
to run, and a wall time far above its CPU time means waiting, not work.

The demo corpus is built with `fairchord corpus demo` in a temporary FAIRCHORD_HOME
unless ``--corpus`` names a built one. Run:
``.venv/bin/python benchmarks/ingest_throughput.py [--corpus DIR] [--workers 2] [--json]
[--profile]`` (``--profile`` prints the top functions of the core ingest under cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_RATIO = 2.0
REPO = Path(__file__).resolve().parents[1]


def build_demo_corpus(home: Path) -> Path:
    """`fairchord corpus demo` into ``home``; returns the manifest path."""
    env = dict(os.environ, FAIRCHORD_HOME=str(home))
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "corpus", "demo", "--json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"fairchord corpus demo failed ({out.returncode}): {out.stderr.strip()}")
    return Path(json.loads(out.stdout)["manifest"])


def corpus_files(manifest: Path) -> list[Path]:
    with manifest.open(newline="", encoding="utf-8") as f:
        return [(manifest.parent / row["path"]).resolve() for row in csv.DictReader(f)]


def decode_only(paths: list[Path]) -> tuple[float, float, float]:
    """(audio seconds, wall seconds, CPU seconds) of decoding every file, nothing else."""
    import soundfile as sf

    audio = 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        with sf.SoundFile(path) as snd:
            frames = 0
            for block in snd.blocks(blocksize=65536, dtype="float32", always_2d=True):
                frames += len(block)
            audio += frames / snd.samplerate
    return audio, time.perf_counter() - wall, time.process_time() - cpu


def fresh_target(base: Path, name: str) -> tuple[str, str]:
    """A migrated SQLite provenance DB and an empty object store under ``base/name``."""
    from provenance import migrate
    from provenance.db import make_engine

    folder = base / name
    folder.mkdir(parents=True)
    url = f"sqlite:///{folder / 'provenance.sqlite'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url, str(folder / "objects")


def ingest_core(manifest: Path, base: Path, profile: bool) -> tuple[float, float, float, Any]:
    """(audio seconds, wall, CPU, counts) of the sequential ingest without Prefect."""
    from provenance.db import make_engine, session_factory
    from provenance.ingest_runs import ingest_source
    from provenance.object_store import ObjectStore
    from provenance.sources import open_source

    url, store_root = fresh_target(base, "core")
    engine = make_engine(url)
    profiler = cProfile.Profile() if profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    result = ingest_source(
        session_factory(engine), open_source(str(manifest)), ObjectStore(store_root)
    )
    if profiler:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    engine.dispose()
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(30)
        print(text.getvalue(), file=sys.stderr)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
        print(text.getvalue(), file=sys.stderr)
    counts = result.counts
    return counts["audio_seconds"], wall, cpu, counts


def children_cpu() -> dict[int, float]:
    """CPU seconds so far of each child process (the Prefect server runs as one)."""
    import psutil

    seconds = {}
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        seconds[child.pid] = times.user + times.system
    return seconds


def ingest_flow(manifest: Path, base: Path, workers: int) -> tuple[float, float, float, Any]:
    """(audio seconds, wall, CPU, counts) of the Prefect flow, after a one-file warm-up.
    CPU includes the Prefect server's, which shares the same cores."""
    from flows.ingest import run_ingest

    warm = base / "warmup-source"
    warm.mkdir()
    smallest = min(corpus_files(manifest), key=lambda p: p.stat().st_size)
    shutil.copy(smallest, warm / smallest.name)
    url, store_root = fresh_target(base, "warmup")
    run_ingest(str(warm), db_url=url, store_uri=store_root, workers=workers)

    url, store_root = fresh_target(base, "flow")
    before = children_cpu()
    wall, cpu = time.perf_counter(), time.process_time()
    summary = run_ingest(str(manifest), db_url=url, store_uri=store_root, workers=workers)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = children_cpu()
    cpu += sum(t - before.get(pid, 0.0) for pid, t in after.items())
    counts = summary["counts"]
    return counts["audio_seconds"], wall, cpu, counts


def machine() -> dict[str, Any]:
    import prefect
    import soundfile as sf

    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "libsndfile": sf.__libsndfile_version__,
        "soundfile": sf.__version__,
        "prefect": prefect.__version__,
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, help="A built demo corpus folder (or manifest).")
    parser.add_argument("--workers", type=int, default=2, help="Threads of the ingest flow.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the core ingest (to stderr)."
    )
    args = parser.parse_args()
    for var, value in (
        ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
        ("DO_NOT_TRACK", "1"),
        ("HF_HUB_OFFLINE", "1"),
        ("TRANSFORMERS_OFFLINE", "1"),
    ):
        os.environ.setdefault(var, value)

    with tempfile.TemporaryDirectory(prefix="fairchord-ingest-bench-") as tmp:
        base = Path(tmp)
        os.environ["FAIRCHORD_HOME"] = str(base / "home")
        os.environ["PREFECT_HOME"] = str(base / "prefect")  # a throwaway ephemeral server
        (base / "prefect").mkdir()
        os.environ.pop("FAIRCHORD_DB_URL", None)
        if args.corpus is None:
            print("building the demo corpus (fairchord corpus demo) ...", file=sys.stderr)
            manifest = build_demo_corpus(base / "home")
        else:
            manifest = args.corpus / "manifest.csv" if args.corpus.is_dir() else args.corpus
        paths = corpus_files(manifest)
        load_before = os.getloadavg()

        decode_only(paths)  # untimed: bring every file into the page cache
        first = decode_only(paths)
        core = ingest_core(manifest, base, args.profile)
        flow = ingest_flow(manifest, base, args.workers)
        second = decode_only(paths)
        floor = min(first, second, key=lambda r: r[1])
        load_after = os.getloadavg()

    rows = {
        "decode only (soundfile loop)": floor,
        "ingest core (sequential, no Prefect)": core[:3],
        f"ingest flow (Prefect, {args.workers} threads)": flow[:3],
    }
    figures = {
        "files": len(paths),
        "audio_seconds": round(floor[0], 1),
        "rows": {
            name: {
                "audio_seconds": round(audio, 1),
                "wall_seconds": round(wall, 2),
                "cpu_seconds": round(cpu, 2),
                "audio_s_per_wall_s": round(audio / wall, 1),
            }
            for name, (audio, wall, cpu) in rows.items()
        },
        "decode_passes_wall_seconds": [round(first[1], 2), round(second[1], 2)],
        "ratio_flow_to_decode": round(flow[1] / floor[1], 2),
        "ratio_core_to_decode": round(core[1] / floor[1], 2),
        "target_ratio": TARGET_RATIO,
        "accepted": flow[3]["accepted"],
        "quarantined": flow[3]["quarantined"],
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "machine": machine(),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"ingest throughput on the demo corpus: {len(paths)} files, {floor[0]:.1f} s of audio")
    print(f"{'':40} {'wall s':>8} {'CPU s':>8} {'audio-s/wall-s':>15}  (CPU: all processes)")
    for name, row in figures["rows"].items():
        print(
            f"{name:40} {row['wall_seconds']:8.2f} {row['cpu_seconds']:8.2f} "
            f"{row['audio_s_per_wall_s']:15.1f}"
        )
    ratio = figures["ratio_flow_to_decode"]
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(
        f"ingest flow / decode only: {ratio:.2f}x (target <= {TARGET_RATIO:.0f}x: {verdict}); "
        f"core / decode only: {figures['ratio_core_to_decode']:.2f}x"
    )
    print(
        f"accepted {figures['accepted']}, quarantined {figures['quarantined']}; decode passes "
        f"{figures['decode_passes_wall_seconds']} s; load average before/after "
        f"{figures['load_average_before_after']}"
    )
    print("machine: " + ", ".join(f"{k} {v}" for k, v in figures["machine"].items()))


if __name__ == "__main__":
    main()
