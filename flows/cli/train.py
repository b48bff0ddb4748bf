"""`fairchord train`: snapshot the eligible recordings, train the diffusion model, record it all."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli.common import EXIT_BAD_INPUT, console, fail, migrated_engine, print_json


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        policy: str = typer.Option(
            "commercial", "--policy", help="Licence policy the snapshot must satisfy."
        ),
        config: str = typer.Option(
            "demo",
            "--config",
            help="Training config: debug (CI), demo (~2 min on CPU), small (~20 min), base (GPU).",
        ),
        resume: bool = typer.Option(
            False,
            "--resume",
            help="Continue the newest unfinished run of this policy and config from its last "
            "checkpoint (same snapshot, same data order: bit-for-bit).",
        ),
        max_steps: int = typer.Option(
            None, "--max-steps", help="Train this many steps instead of the config's (>= 1)."
        ),
        clap: str = typer.Option(
            None, "--clap", help="CLAP checkpoint for caption embeddings (default: ours)."
        ),
        json_output: bool = typer.Option(
            False, "--json", help="Print the summary as one JSON document."
        ),
    ) -> None:
        """Freeze a snapshot of the recordings eligible under --policy right now (members with
        their licence and consent in force, Merkle digest), train on those rows only, write
        safetensors checkpoints under $FAIRCHORD_HOME/runs/RUN_ID/, record them, and build the
        similarity gate's index for the run."""
        from training.train_config import NAMED_CONFIGS

        if config not in NAMED_CONFIGS:
            fail(
                f"--config {config!r} is not one of {sorted(NAMED_CONFIGS)}",
                EXIT_BAD_INPUT,
            )
        if max_steps is not None and max_steps < 1:
            fail(f"--max-steps must be >= 1, got {max_steps}", EXIT_BAD_INPUT)
        if clap is not None and not Path(clap).is_file():
            fail(f"--clap {clap}: no such checkpoint file", EXIT_BAD_INPUT)
        from provenance.policies import PolicyError, load_policy

        try:
            load_policy(policy)
        except PolicyError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        migrated_engine().dispose()  # exits with a clear message on an unmigrated DB

        from flows.local_runs import run_flow
        from flows.train import train_flow

        try:
            summary = run_flow(
                train_flow,
                policy=policy,
                config_name=config,
                max_steps=max_steps,
                resume=resume,
                clap_path=clap,
                progress=not json_output,
            )
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        if json_output:
            print_json(summary)
            return
        trained = summary["train"]
        console.print(
            f"training run [bold]{summary['training_run_id']}[/bold] "
            f"({summary['policy']['name']} v{summary['policy']['version']}, config {config}): "
            f"{summary['member_count']} member recording(s), digest {summary['members_digest']}"
        )
        console.print(
            f"{trained['step']} steps, {trained['parameters']:,} parameters, "
            f"{trained['segments_per_second']} segments/s, final loss {trained['final_loss']:.4f}"
            + (f", validation {trained['val_loss']:.4f}" if trained["val_loss"] else ""),
            highlight=False,
        )
        console.print(
            f"checkpoint {trained['final_checkpoint']} (sha256 {trained['final_sha256']})",
            highlight=False,
        )
        index = summary["gate_index"]
        if index["built"]:
            console.print(f"gate index {index['sha256'][:12]}: {index['vectors']} vectors")
        else:
            console.print(
                f"no CLAP track index ({index['reason']}); next, `fairchord gate calibrate` "
                "builds the gate's index: generation fails closed until it has run"
            )
        console.print(f"plots in {summary['run_dir']}/plots", highlight=False)
