"""`fairchord ingest`: bring a folder, manifest or dataset dump into the provenance DB."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    checked_dask_address,
    console,
    dask_address_option,
    err_console,
    fail,
    migrated_engine,
    print_json,
    terminal_safe,
)

# Besides the shared codes (0 ok, 1 failed, 2 bad input, 3 DB not initialised):
EXIT_QUARANTINED = 4  # the run completed, but at least one item is quarantined


def _check_filesystem(uri: str | None) -> None:
    """A URI whose filesystem is not installed is a one-line error, before any work."""
    if uri is None or "://" not in uri or uri.startswith("file://"):
        return
    import fsspec

    protocol = uri.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        fail(f"{uri}: {exc}", EXIT_BAD_INPUT)
    # Reach it before any work: missing credentials, an unknown bucket or an endpoint
    # that does not answer is the user's to fix, not a failed ingestion run.
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        found = fs.exists(path)
    except Exception as exc:  # botocore and aiohttp raise their own types
        fail(
            f"{uri}: cannot reach it ({type(exc).__name__}: {exc}); for s3:// set "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for MinIO)",
            EXIT_BAD_INPUT,
        )
    if not found:
        fail(f"source {uri!r} does not exist", EXIT_BAD_INPUT)


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest(
        source: str = typer.Argument(
            ...,
            help="A folder (local path or fsspec URI), a .csv/.jsonl manifest, a dataset "
            "saved with `datasets` save_to_disk, or an audiofolder with metadata.csv.",
        ),
        manifest: str = typer.Option(
            None,
            "--manifest",
            help="A CSV/JSONL manifest whose relative paths resolve against SOURCE "
            "(columns: path|uri, title, artists (;-separated), licence, consent, source_url).",
        ),
        json_output: bool = typer.Option(
            False, "--json", help="Print the run summary as one JSON document."
        ),
        dask: bool = typer.Option(
            False, "--dask", help="Run per-item tasks on a local two-worker Dask cluster."
        ),
        dask_address: str = dask_address_option(),
        workers: int = typer.Option(2, "--workers", help="Threads for per-item tasks."),
        max_duration: float = typer.Option(
            3600.0, "--max-duration", help="Quarantine audio longer than this (seconds)."
        ),
        min_duration: float = typer.Option(
            0.25, "--min-duration", help="Quarantine audio shorter than this (seconds)."
        ),
        max_mb: float = typer.Option(
            2048.0, "--max-mb", help="Quarantine files larger than this (MiB), unread."
        ),
        silence_dbfs: float = typer.Option(
            -80.0, "--silence-dbfs", help="Quarantine files whose peak is at or under this."
        ),
        allow_scheme: list[str] = typer.Option(
            [],
            "--allow-scheme",
            help="A URL scheme the manifest's rows may name (repeat for more: --allow-scheme "
            "s3 --allow-scheme https). By default rows may name only files inside the "
            "source's root; any URL is quarantined as path_escape.",
        ),
        lenient: bool = typer.Option(
            False,
            "--lenient",
            help=f"Exit 0 even if items were quarantined (instead of {EXIT_QUARANTINED}).",
        ),
        strict: bool = typer.Option(
            False,
            "--strict",
            hidden=True,
            help=f"Kept for old scripts: exit {EXIT_QUARANTINED} on quarantine is the default.",
        ),
    ) -> None:
        """Ingest SOURCE: hash, decode-validate and measure every file, store originals by
        sha256 under $FAIRCHORD_HOME/objects, record recordings, sightings, credits, licence
        assertions and manifest consent, and quarantine bad input with a reason code.
        Safe to rerun (known files are recognised) and to kill (a rerun completes the work).

        A bad item never stops the run: it is quarantined with a reason code (or kept
        with a flag, e.g. a credited name that cannot name a party) and the run goes on.

        Exit codes: 0 the run completed and nothing is quarantined;
        1 the run failed; 2 bad input (no such source, empty manifest, bad option);
        3 database not initialised (`fairchord db upgrade`);
        4 the run completed, but some items are quarantined (the summary lists them by
        reason; a rerun reports them again; --lenient exits 0 instead).
        """
        from provenance.ingest_prepare import IngestLimits
        from provenance.sources.paths import normalise_schemes

        try:
            schemes = normalise_schemes(allow_scheme)
        except ValueError as exc:
            fail(f"--allow-scheme: {exc}", EXIT_BAD_INPUT)
        try:
            limits = IngestLimits(
                max_duration_s=max_duration,
                min_duration_s=min_duration,
                max_bytes=int(max_mb * 2**20),
                silence_dbfs=silence_dbfs,
            )
        except ValueError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        if workers < 1:
            fail(f"--workers must be at least 1, got {workers}", EXIT_BAD_INPUT)
        if manifest is not None and not Path(manifest).is_file() and "://" not in manifest:
            fail(f"--manifest {manifest}: no such file", EXIT_BAD_INPUT)
        if "://" not in source and not Path(source).expanduser().exists():
            fail(f"source {source!r} does not exist", EXIT_BAD_INPUT)
        for uri in (source, manifest):
            _check_filesystem(uri)
        address = checked_dask_address(dask_address)
        migrated_engine().dispose()  # exits with a clear message on an unmigrated DB

        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        from flows.ingest import add_progress_callback, run_ingest
        from provenance.ingest import IngestOutcome
        from provenance.sources import SourceError

        progress = Progress(
            TextColumn("ingesting"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[quarantined]} quarantined"),
            TimeElapsedColumn(),
            console=err_console,
            disable=json_output,
        )
        bar = progress.add_task("ingest", total=None, quarantined=0)
        quarantined = 0

        def on_progress(done: int, total: int, outcome: IngestOutcome) -> None:
            nonlocal quarantined
            quarantined += outcome.status == "quarantined"
            progress.update(bar, completed=done, total=total, quarantined=quarantined)

        remove = add_progress_callback(on_progress)
        try:
            with progress:
                summary = run_ingest(
                    source,
                    manifest=manifest,
                    limits=limits,
                    workers=workers,
                    use_dask=dask,
                    dask_address=address,
                    allowed_schemes=schemes,
                )
        except SourceError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        except Exception as exc:
            fail(f"ingestion failed: {type(exc).__name__}: {exc}", EXIT_FAILED)
        finally:
            remove()
        counts = summary["counts"]
        if json_output:
            print_json(summary)
        else:
            console.print(
                f"run [bold]{summary['run_id']}[/bold] of {terminal_safe(summary['source_uri'])} "
                f"({summary['source_kind']}): {counts['items']} item(s): "
                f"{counts['accepted']} accepted ({counts['near_duplicate']} near-duplicate), "
                f"{counts['duplicate']} duplicate, {counts['unchanged']} unchanged, "
                f"{counts['quarantined']} quarantined in {summary['seconds']:.1f} s",
                highlight=False,
            )
            for reason, n in counts["quarantined_by_reason"].items():
                console.print(f"  [yellow]quarantined[/yellow] {reason}: {n}", highlight=False)
            for flag, n in counts["flags"].items():
                console.print(f"  [yellow]kept, flagged[/yellow] {flag}: {n}", highlight=False)
        del strict  # the default now
        if counts["quarantined"] and not lenient:
            err_console.print(
                f"{counts['quarantined']} item(s) quarantined (exit {EXIT_QUARANTINED}; "
                "--lenient exits 0)",
                highlight=False,
                markup=False,
            )
            raise typer.Exit(EXIT_QUARANTINED)
