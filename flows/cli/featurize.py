"""`fairchord featurize`: mels + captions of every accepted recording into Arrow shards."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    checked_dask_address,
    console,
    dask_address_option,
    fail,
    migrated_engine,
    print_json,
    terminal_safe,
)


def register(app: typer.Typer) -> None:
    @app.command("featurize")
    def featurize(
        json_output: bool = typer.Option(
            False, "--json", help="Print the summary as one JSON document."
        ),
        dask: bool = typer.Option(
            False, "--dask", help="Run per-recording tasks on a local two-worker Dask cluster."
        ),
        dask_address: str = dask_address_option(),
        shard_mb: float = typer.Option(
            128.0, "--shard-mb", help="Target shard size in MB (a recording is never split)."
        ),
        hop: float = typer.Option(
            10.24,
            "--hop",
            help="Seconds between segment starts (windows are 10.24 s); fixed per feature set.",
        ),
        clap_tags: str = typer.Option(
            None,
            "--clap-tags",
            help="A CLAP checkpoint: add zero-shot genre/instrument/mood tags to captions "
            "(about 0.13 s per segment on 2 cores).",
        ),
    ) -> None:
        """Featurize accepted, non-duplicate recordings not yet in the current feature set:
        decode, segment into 10.24 s windows, log-mel (AudioLDM config), caption (no party
        names), write shards under $FAIRCHORD_HOME/features/MEL_CONFIG_HASH/."""
        if shard_mb <= 0:
            fail(f"--shard-mb must be positive, got {shard_mb}", EXIT_BAD_INPUT)
        if not 0 < hop <= 10.24:
            fail(f"--hop must be in (0, 10.24] seconds, got {hop}", EXIT_BAD_INPUT)
        if clap_tags is not None and not Path(clap_tags).is_file():
            fail(f"--clap-tags {clap_tags}: no such checkpoint file", EXIT_BAD_INPUT)
        address = checked_dask_address(dask_address)
        migrated_engine().dispose()  # exits with a clear message on an unmigrated DB

        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        from flows.featurize import add_progress_callback, run_featurize

        progress = Progress(
            TextColumn("featurizing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[audio]:.0f} s of audio"),
            TimeElapsedColumn(),
            console=console if not json_output else None,
            disable=json_output,
        )
        bar = progress.add_task("featurize", total=None, audio=0.0)

        def on_progress(done: int, total: int, audio_seconds: float) -> None:
            progress.update(bar, completed=done, total=total, audio=audio_seconds)

        remove = add_progress_callback(on_progress)
        try:
            with progress:
                summary = run_featurize(
                    shard_mb=shard_mb,
                    hop_s=hop,
                    use_dask=dask,
                    dask_address=address,
                    clap_path=clap_tags,
                )
        except ValueError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        finally:
            remove()
        if json_output:
            print_json(summary)
            if summary["failed"]:
                raise typer.Exit(EXIT_FAILED)
            return
        console.print(
            f"feature set [bold]{summary['mel_config_hash']}[/bold]: "
            f"{summary['recordings']} new recording(s), {summary['segments']} segment(s), "
            f"{summary['audio_seconds']:.0f} s of audio, {len(summary['shards'])} new shard(s) "
            f"in {summary['seconds']:.1f} s; {summary['recordings_covered']} recording(s) covered"
        )
        console.print(f"shards and manifest in {summary['root']}", highlight=False)
        for failure in summary["failed"]:
            console.print(f"[yellow]skipped[/yellow] {terminal_safe(failure)}", highlight=False)
        if summary["failed"]:
            fail(f"{len(summary['failed'])} recording(s) could not be featurized (see above)")
