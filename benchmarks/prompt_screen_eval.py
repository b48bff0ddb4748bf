"""Prompt screen on lists of disguised and benign prompts: what it refuses, what it passes.

The screen is built without a database from the demo corpus's artists (an artist credit
such as "Max McCracken (Maxstack)" is a name and an alias). Each list comes in two halves
under ``benchmarks/data/prompts/``: ``*_tune.txt``, on which the rules and thresholds were
tuned, and ``*_report.txt``, kept for reporting. Targets: every disguised prompt refused,
no benign prompt refused. Every miss is printed (a disguised prompt passed, a benign one
refused, with the screen's reasons).

    .venv/bin/python benchmarks/prompt_screen_eval.py
    .venv/bin/python benchmarks/prompt_screen_eval.py --json --check
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from flows.demo_corpus import load_demo_facts, named_artists
from generation.prompt_screen import PromptScreen
from generation.screen_names import ScreenedParty

DATA = Path(__file__).parent / "data" / "prompts"
LISTS = ("disguised", "benign")
HALVES = ("tune", "report")


def demo_parties(manifest: Path | None, *, opted_out: frozenset[str]) -> list[ScreenedParty]:
    """The named people of the demo corpus (or of ``manifest``'s ``artist`` column)."""
    if manifest is None:
        credits = [fact.artist for fact in load_demo_facts()]
    else:
        with manifest.open(encoding="utf-8", newline="") as f:
            credits = [row["artist"] for row in csv.DictReader(f)]
    aliases: dict[str, tuple[str, ...]] = {}
    for credit in credits:
        names, extra = named_artists(credit)
        for name in names:
            aliases[name] = tuple(dict.fromkeys(aliases.get(name, ()) + extra))
    return [
        ScreenedParty(
            number,
            name,
            aliases=alias_list,
            style_opt_out_event_id=number if name in opted_out else None,
        )
        for number, (name, alias_list) in enumerate(sorted(aliases.items()), start=1)
    ]


def read_prompts(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluate(screen: PromptScreen, data: Path) -> dict[str, Any]:
    """Refused/passed counts and rates for each list and half, and every miss."""
    halves: dict[str, Any] = {}
    for kind in LISTS:
        for half in HALVES:
            prompts = read_prompts(data / f"{kind}_{half}.txt")
            refused, misses = 0, []
            for prompt in prompts:
                result = screen.screen(prompt)
                blocked = result.verdict == "block"
                refused += blocked
                if blocked != (kind == "disguised"):
                    misses.append({"prompt": prompt, "reasons": result.reasons})
            halves[f"{kind}_{half}"] = {
                "prompts": len(prompts),
                "refused": refused,
                "passed": len(prompts) - refused,
                "refused_rate": refused / len(prompts) if prompts else 0.0,
                "passed_rate": (len(prompts) - refused) / len(prompts) if prompts else 0.0,
                "misses": misses,
            }
    return halves


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="a CSV with an 'artist' column (default: the demo corpus's facts file)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=DATA, help=f"folder of the prompt lists (default {DATA})"
    )
    parser.add_argument(
        "--opt-out",
        action="append",
        default=[],
        metavar="NAME",
        help="screen NAME as opted out of style imitation (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 unless the report half meets the targets (all disguised refused, "
        "no benign refused)",
    )
    args = parser.parse_args()

    for kind in LISTS:
        for half in HALVES:
            if not (args.data_dir / f"{kind}_{half}.txt").is_file():
                print(f"error: {args.data_dir / f'{kind}_{half}.txt'} not found", file=sys.stderr)
                return 2
    started = time.perf_counter()
    screen = PromptScreen(demo_parties(args.manifest, opted_out=frozenset(args.opt_out)))
    built = time.perf_counter() - started
    started = time.perf_counter()
    halves = evaluate(screen, args.data_dir)
    screened = sum(h["prompts"] for h in halves.values())
    per_prompt = (time.perf_counter() - started) / max(1, screened)
    result = {
        "parties": [p.name for p in screen.parties.values()],
        "build_s": round(built, 3),
        "ms_per_prompt": round(1000 * per_prompt, 2),
        "halves": halves,
    }
    met = halves["disguised_report"]["passed"] == 0 and halves["benign_report"]["refused"] == 0
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(
            f"{len(screen.parties)} parties; built in {built:.2f} s; "
            f"{1000 * per_prompt:.1f} ms a prompt"
        )
        for name, half in halves.items():
            print(
                f"{name:17} {half['prompts']:4} prompts  "
                f"refused {half['refused']:4} ({half['refused_rate']:6.1%})  "
                f"passed {half['passed']:4} ({half['passed_rate']:6.1%})"
            )
        for name, half in halves.items():
            for miss in half["misses"]:
                verb = "passed" if name.startswith("disguised") else "refused"
                print(f"MISS {name}: {verb} {miss['prompt']!r} {'; '.join(miss['reasons'])}")
        print("report half meets the targets" if met else "report half misses the targets")
    if args.check and not met:
        print("error: the report half misses the targets", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
