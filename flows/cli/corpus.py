"""`fairchord corpus demo`: build the real demo corpus (Debian audio + rendered scores)."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, console, err_console, fail, print_json

corpus_app = typer.Typer(
    name="corpus",
    help="Build corpora to ingest (the demo corpus).",
    no_args_is_help=True,
)


@corpus_app.command("demo")
def demo(
    dest: Path = typer.Option(
        None,
        "--dest",
        help="Folder to build in (default: $FAIRCHORD_HOME/corpus/demo).",
        file_okay=False,
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Print the manifest path and per-file facts as one JSON document."
    ),
) -> None:
    """Build the demo corpus: 30 real files by named artists and with stated licences.

    Copies the audio of the Debian packages (wesnoth-1.16-music, singularity-music,
    hyperrogue-music, asc-music, drascula-music, frozen-bubble-data,
    sound-theme-freedesktop), renders six music21 scores to WAV with fluidsynth and the
    TimGM6mb soundfont (cached), signs one excerpt with a C2PA "do not train" credential
    (a development key standing in for its rights holder), and writes manifest.csv for
    `fairchord ingest`.

    Exit codes: 0 built; 1 a file could not be copied or rendered; 2 a Debian package
    is missing (the message names it and the apt-get command).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from flows.demo_corpus import (
        DemoCorpusError,
        MissingDebianPackageError,
        build_demo_corpus,
        ensure_consent_list,
        read_demo_manifest,
    )
    from flows.render_scores import RenderError

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        disable=json_output,
        transient=True,
    )
    bar = progress.add_task("demo corpus", total=None)

    def on_progress(what: str, done: int, total: int) -> None:
        progress.update(bar, description=what, completed=done, total=total)

    try:
        with progress:
            manifest = build_demo_corpus(dest, progress=on_progress)
    except MissingDebianPackageError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except (DemoCorpusError, RenderError, OSError) as exc:
        fail(f"demo corpus: {exc}", EXIT_FAILED)
    consent_list = ensure_consent_list()
    rows = read_demo_manifest(manifest)
    if json_output:
        print_json(
            {
                "manifest": str(manifest),
                "root": str(manifest.parent),
                "consent_list": str(consent_list),
                "files": rows,
            }
        )
        return
    seconds = sum(float(r["duration_s"]) for r in rows)
    included = sum(r["expected_commercial_decision"].startswith("include") for r in rows)
    console.print(
        f"demo corpus: {len(rows)} files, {seconds / 60:.1f} min of audio "
        f"({included} a commercial policy should accept) in {manifest.parent}",
        highlight=False,
    )
    console.print(f"manifest: {manifest}", highlight=False)
    console.print(f"do-not-train list (for `consent sync`): {consent_list}", highlight=False)
    console.print(f"next: fairchord ingest {manifest}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(corpus_app, name="corpus")
