"""Wall time of `fairchord` commands, against `python -c pass` and `fairchord --help` in the
same run (the peers the CLI targets are stated against).

Each command runs ``--repeat`` times as a fresh process in a throwaway home with a migrated
SQLite database and no ``PREFECT_API_URL`` (what a newcomer has); the median is reported:

- ``python -c pass``: the interpreter alone;
- ``fairchord --help``: the CLI's imports (target ≤ 1 s);
- a bad path (``fairchord ingest /no/such/folder``): rejected before anything heavy
  (target ≤ 1.5 s);
- ``fairchord ingest`` of one 2 s WAV (target ≤ 3 s), which today starts a temporary
  Prefect server for the flow run.

    .venv/bin/python benchmarks/cli_speed.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

TARGETS = {"fairchord --help": 1.0, "bad path": 1.5, "ingest one file": 3.0}


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - started, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per command (median)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="fairchord-cli-speed-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.pop("FAIRCHORD_DB_URL", None)
    env.update(FAIRCHORD_HOME=str(home), PREFECT_HOME=str(home / "prefect"))
    cli = [sys.executable, "-m", "flows.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, cwd=home, check=True, capture_output=True)

    commands: dict[str, list[str]] = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "fairchord --help": [*cli, "--help"],
        "bad path": [*cli, "ingest", str(home / "no" / "such" / "folder")],
    }
    seconds: dict[str, list[float]] = {name: [] for name in [*commands, "ingest one file"]}
    codes: dict[str, int] = {}
    rate = 22_050
    for run in range(args.repeat):
        for name, argv in commands.items():
            took, codes[name] = timed(argv, env, home)
            seconds[name].append(took)
        folder = home / f"incoming-{run}"
        folder.mkdir()
        tone = 0.3 * np.sin(2 * np.pi * (220 + 10 * run) * np.arange(2 * rate) / rate)
        sf.write(folder / "tone.wav", tone.astype(np.float32), rate)
        took, codes["ingest one file"] = timed([*cli, "ingest", str(folder)], env, home)
        seconds["ingest one file"].append(took)

    pass_s = statistics.median(seconds["python -c pass"])
    help_s = statistics.median(seconds["fairchord --help"])
    rows = []
    for name, values in seconds.items():
        median = statistics.median(values)
        target = TARGETS.get(name)
        rows.append(
            {
                "command": name,
                "median_s": round(median, 3),
                "runs_s": [round(v, 3) for v in values],
                "exit_code": codes[name],
                "x_python": round(median / pass_s, 1),
                "x_help": round(median / help_s, 2),
                "target_s": target,
                "meets_target": None if target is None else median <= target,
            }
        )
    if args.json:
        print(json.dumps({"repeat": args.repeat, "load": os.getloadavg(), "rows": rows}))
        return
    print(f"{args.repeat} runs each, load average {os.getloadavg()[0]:.2f}")
    print(f"{'command':<18} {'median s':>9} {'× python':>9} {'× --help':>9}  target")
    for r in rows:
        verdict = (
            ""
            if r["target_s"] is None
            else (f"≤ {r['target_s']} s: {'met' if r['meets_target'] else 'NOT met'}")
        )
        print(
            f"{r['command']:<18} {r['median_s']:>9.2f} {r['x_python']:>9.1f} "
            f"{r['x_help']:>9.2f}  {verdict} (exit {r['exit_code']})"
        )


if __name__ == "__main__":
    main()
