"""`fairchord demo`: the main job end to end on the embedded default (SQLite, local folder).

Each step is the same `fairchord` command a user would type, run in order in
a child process so its output and exit code are exactly what a user sees.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass

import typer
from rich.table import Table

from flows.child_processes import call_owned
from flows.cli.common import console, fail
from provenance.settings import fairchord_home


@dataclass(frozen=True)
class Step:
    title: str
    args: tuple[str, ...]
    # Exit codes that mean the step did what the demo wants (e.g. a blocked prompt).
    ok_codes: tuple[int, ...] = (0,)
    # A file whose presence means the step's work is already done (the step is skipped).
    done_if_exists: str | None = None


NAMED_ARTIST_PROMPT = "an epic orchestral theme in the style of Mattias Westlund"
BENIGN_PROMPT = "slow ambient pads, minor key, soft dynamics, dark timbre"


def demo_steps(*, train_config: str, clap_index: bool = False) -> list[Step]:
    """The demo's commands in order. ``clap_index`` adds the CLAP segment embedding (the
    CLAP track index beside the gate); the gate itself runs on MSD-musicnn and does not
    need it, so the default demo leaves it out."""
    home = fairchord_home()
    manifest = str(home / "corpus" / "demo" / "manifest.csv")
    report = str(home / "reports" / "audit-latest.html")
    generated = str(home / "generated")
    steps = [
        Step("Create the provenance database", ("db", "upgrade")),
        Step(
            "Signing keys for the Content Credentials of generated audio (development chain)",
            ("keys", "init", "--if-missing"),
        ),
        Step("Build the demo corpus (Debian audio + rendered scores)", ("corpus", "demo")),
        Step("Ingest it: hash, validate, store, record licences and credits", ("ingest", manifest)),
        Step(
            "Eligibility of every recording under the commercial policy",
            ("policy", "check", "--policy", "commercial"),
        ),
        Step("Featurize: mels, captions, Arrow shards", ("featurize",)),
        Step(
            "Train our own CLAP on the eligible segments",
            ("clap", "train", "--config", "demo", "--policy", "commercial"),
            done_if_exists=str(home / "clap" / "clap.pt"),
        ),
        Step(
            f"Train the diffusion model ({train_config}) on the commercial snapshot",
            ("train", "--policy", "commercial", "--config", train_config),
        ),
        Step(
            "Build and calibrate the similarity gate: MSD-musicnn windows, fingerprints, "
            "artist model against the shipped outside-music cohort",
            ("gate", "calibrate"),
        ),
        Step(
            "Generate with every safeguard on: an ordinary prompt, two variations, each gated",
            ("generate", BENIGN_PROMPT, "--n", "2", "--seed", "1", "--out", generated),
            # 5: the gate blocked a variation (not written) — the safeguard working, shown.
            ok_codes=(0, 5),
        ),
        Step(
            "A prompt naming a training artist is refused (exit 7), nothing is sampled",
            ("generate", NAMED_ARTIST_PROMPT, "--seed", "1", "--out", generated),
            ok_codes=(7,),
        ),
        Step(
            "Audit what the checkpoint learned from (HTML report)",
            ("audit", "licenses", "--format", "html", "--out", report),
        ),
        Step("Verify the audit log and every stored object", ("audit", "verify")),
        Step(
            "Verify the newest generated file's Content Credential against the record",
            ("verify-output", "--latest"),
        ),
    ]
    if clap_index:
        train = next(i for i, s in enumerate(steps) if s.args[0] == "train")
        steps.insert(train, Step("Embed every segment with that CLAP", ("clap", "embed")))
    return steps


SETUP_SECONDS_ENV = "FAIRCHORD_DEMO_SETUP_SECONDS"


def timing_table(rows: list[tuple[str, float, int | None]]) -> Table:
    """One row per step (title, wall seconds, exit code or None when skipped) and the total."""
    table = Table(title="demo step times", show_footer=True)
    total = sum(seconds for _, seconds, _ in rows)
    table.add_column("step", footer="total")
    table.add_column("wall", justify="right", footer=_minutes(total))
    table.add_column("exit", justify="right")
    for title, seconds, code in rows:
        table.add_row(title, _minutes(seconds), "skipped" if code is None else str(code))
    return table


def _minutes(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 60} min {whole % 60:02d} s" if whole >= 60 else f"{seconds:.1f} s"


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        train_config: str = typer.Option(
            "demo",
            "--train-config",
            help="Diffusion config: demo (the default, ~2 min), small (~20 min) or debug (CI).",
        ),
        clap_index: bool = typer.Option(
            False,
            "--clap-index",
            help="Also embed every segment with the CLAP (a CLAP track index; the gate runs "
            "on MSD-musicnn and does not need it).",
        ),
        stop_after: int = typer.Option(
            0, "--stop-after", help="Stop after this many steps (0: run them all)."
        ),
    ) -> None:
        """Run the whole chain on the demo corpus: build, ingest, check, featurize, train,
        generate with safeguards, audit. Uses $FAIRCHORD_HOME (default ~/.fairchord).
        Ends with a table of each step's wall time."""
        steps = demo_steps(train_config=train_config, clap_index=clap_index)
        if stop_after:
            steps = steps[:stop_after]
        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        env.setdefault("DO_NOT_TRACK", "1")
        console.print(f"[bold]fairchord demo[/bold] in {fairchord_home()}")
        times: list[tuple[str, float, int | None]] = []
        setup = os.environ.get(SETUP_SECONDS_ENV, "")
        if setup.isdigit():
            times.append(("setup (scripts/setup.sh)", float(setup), 0))
        for number, step in enumerate(steps, start=1):
            command = ["fairchord", *step.args]
            console.rule(f"[bold]{number}/{len(steps)} {step.title}[/bold]")
            console.print(f"$ {shlex.join(command)}", style="dim", highlight=False)
            label = f"{number}. {shlex.join(command[:3])}"
            if step.done_if_exists and os.path.exists(step.done_if_exists):
                console.print(
                    f"[yellow]skipped:[/yellow] {step.done_if_exists} exists "
                    "(delete it to redo this step)",
                    highlight=False,
                )
                times.append((label, 0.0, None))
                continue
            started = time.perf_counter()
            exe = [sys.executable, "-m", "flows.cli", *step.args]
            code = call_owned(exe, env=env)
            took = time.perf_counter() - started
            times.append((label, took, code))
            if code not in step.ok_codes:
                console.print(timing_table(times))
                fail(f"step {number} ({step.title}) exited {code} after {took:.0f} s")
            console.print(f"[green]done[/green] in {took:.1f} s (exit {code})")
        console.rule("[bold green]demo complete[/bold green]")
        console.print(timing_table(times))
