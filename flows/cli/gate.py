"""`fairchord gate check|calibrate`: the similarity gate on any audio, and its calibration.

Exit codes of `gate check`: 0 every file allowed; 5 at least one file blocked; 6 the gate
could not decide (no/corrupt/mismatched index, embedder error, NaN scores) — fail closed;
2 bad input (missing or undecodable file, unknown checkpoint); 3 database not initialised.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from flows.cli.common import (
    EXIT_BAD_INPUT,
    console,
    fail,
    print_json,
    print_json_line,
    session_scope,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from provenance.models import Checkpoint

EXIT_BLOCKED = 5
EXIT_GATE_UNAVAILABLE = 6


def resolve_checkpoint(session: Session, checkpoint_id: int | None) -> Checkpoint:
    """The given checkpoint, else the newest final one, else the newest one; exits 2
    naming what is missing."""
    from provenance.checkpoints import CheckpointNotFound, checkpoint_or_newest

    try:
        return checkpoint_or_newest(session, checkpoint_id)
    except CheckpointNotFound as exc:
        fail(str(exc), EXIT_BAD_INPUT)


def register(app: typer.Typer) -> None:
    gate_app = typer.Typer(
        help="The similarity gate: check audio against a checkpoint's training snapshot.",
        no_args_is_help=True,
    )
    app.add_typer(gate_app, name="gate")

    @gate_app.command("check")
    def check(
        audio: list[Path] = typer.Argument(
            ..., help="Audio files to check (any decodable format)."
        ),
        checkpoint: int = typer.Option(
            None, "--checkpoint", help="Checkpoint id (default: newest final checkpoint)."
        ),
        json_output: bool = typer.Option(
            False, "--json", help="JSON Lines: one compact JSON object per file, one per line."
        ),
    ) -> None:
        """Gate each file exactly as generated audio is gated. Exit 0 all allowed, 5 some
        blocked, 6 the gate could not decide (fails closed), 2 bad input."""
        from generation.gate import SimilarityGate
        from generation.gate_models import load_gate_embedder, load_wave_16k
        from generation.index import GateUnavailable, load_index

        for path in audio:
            if not path.is_file():
                fail(f"{path} is not a file", EXIT_BAD_INPUT)
        waves = {}
        for path in audio:
            try:
                waves[path] = load_wave_16k(str(path))
            except Exception as exc:
                fail(f"cannot decode {path}: {exc}", EXIT_BAD_INPUT)
        blocked = False
        try:
            with session_scope() as session:
                ckpt = resolve_checkpoint(session, checkpoint)
                embedder = load_gate_embedder()
                index = load_index(session, ckpt, embedder_sha256=embedder.sha256)
                gate = SimilarityGate(index, embedder)
                for path, wave in waves.items():
                    result = gate.check(wave)
                    blocked |= result.verdict == "block"
                    doc = {"file": str(path), "checkpoint_id": ckpt.id, **result.to_json()}
                    if json_output:
                        print_json_line(doc)
                    else:
                        console.print(
                            f"{path}: [bold]{result.verdict}[/bold] track "
                            f"{result.track_similarity:.3f} (recording "
                            f"{result.nearest['recording_id']}) {'; '.join(result.reasons)}",
                            highlight=False,
                        )
        except GateUnavailable as exc:
            fail(f"gate could not decide (nothing allowed): {exc}", EXIT_GATE_UNAVAILABLE)
        if blocked:
            raise typer.Exit(EXIT_BLOCKED)

    @gate_app.command("calibrate")
    def calibrate(
        checkpoint: int = typer.Option(
            None, "--checkpoint", help="Checkpoint id (default: newest final checkpoint)."
        ),
        false_block_rate: float = typer.Option(
            0.01, "--false-block-rate", help="Allowed share of negatives blocked (0..1)."
        ),
        clip_seconds: float = typer.Option(
            30.0,
            "--clip-seconds",
            help="Calibrate on the first N seconds of each member recording (0: all of it).",
        ),
        json_output: bool = typer.Option(
            False, "--json", help="Print the report as one JSON document."
        ),
    ) -> None:
        """Build the gate for the checkpoint's snapshot and set its thresholds: embeds every
        member recording with the pretrained music embedder (MSD-musicnn) into the gate
        index, fingerprints them, enrols each training artist and normalises against the
        shipped outside-music cohort; thresholds come from transformed copies of training
        clips (track and fingerprint scores) and from outside music (artist score).
        Runs as the flow `gate-calibrate`."""
        from flows.calibrate import calibrate_flow
        from flows.cli.common import migrated_engine
        from flows.local_runs import run_flow
        from generation.index import GateUnavailable

        if not 0 <= false_block_rate < 1:
            fail(f"--false-block-rate must be in [0, 1), got {false_block_rate}", EXIT_BAD_INPUT)
        if clip_seconds < 0:
            fail(f"--clip-seconds must be >= 0, got {clip_seconds}", EXIT_BAD_INPUT)
        migrated_engine().dispose()  # exits with a clear message on an unmigrated DB
        try:
            report = run_flow(
                calibrate_flow,
                checkpoint_id=checkpoint,
                false_block_rate=false_block_rate,
                clip_seconds=clip_seconds,
                show_progress=not json_output,
            )
        except LookupError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        except GateUnavailable as exc:
            fail(f"cannot calibrate: {exc}", EXIT_GATE_UNAVAILABLE)
        if json_output:
            print_json(report)
        else:
            thresholds = report["thresholds"]
            console.print(
                f"track ≥ {thresholds['track']:.4f} (recall {report['track_recall']:.3f}), "
                f"fingerprint ≥ {thresholds['fingerprint']['threshold']:g} (recall "
                f"{report['fingerprint_recall']:.3f}), replays blocked by either "
                f"{report['replay_recall']:.3f}; artist ≥ {thresholds['artist']:.4f} "
                f"(recall {report['artist_recall']:.3f}); false blocks on negatives "
                f"{report['combined_false_block_rate']:.3%} over {report['recordings']} recordings",
                highlight=False,
            )
            if report["melody"] is not None:
                mel = report["melody"]
                console.print(
                    f"melody ≥ {mel['thresholds']['window']:.3f} for 30 s windows, "
                    f"≥ {mel['thresholds']['short']:.3f} for clips under 20 s; outside "
                    f"negatives {mel['outside_negatives']['window']} tracks "
                    f"({mel['cohort_excluded_as_members']} left out as members)",
                    highlight=False,
                )
            for name, recall in report["per_transform_recall"].items():
                console.print(f"  {name:<16} replays blocked {recall:.3f}", highlight=False)
