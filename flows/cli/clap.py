"""`fairchord clap`: train our own CLAP, embed every segment with it, and measure it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from flows.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    console,
    fail,
    migrated_engine,
    print_json,
    session_scope,
)

clap_app = typer.Typer(
    help="The CLAP embedder: train it offline on eligible segments, embed, evaluate.",
    no_args_is_help=True,
)


def _feature_root() -> Path:
    from flows.clap import feature_root

    try:
        return feature_root()
    except FileNotFoundError as exc:
        fail(str(exc), EXIT_BAD_INPUT)


def _examples() -> list[Any]:
    from rich.progress import Progress

    from provenance.embedders import object_uris
    from training.clap_data import load_examples, segment_catalog

    catalog = segment_catalog(_feature_root())
    with session_scope() as session:
        uris = object_uris(session)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("decoding segments", total=catalog.num_rows)
        return load_examples(catalog, uris, progress=lambda n: bar.advance(task, n))


@clap_app.command("train")
def train(
    config_name: str = typer.Option(
        "demo", "--config", help="debug (seconds), demo (about a minute) or full (minutes)."
    ),
    policy_name: str = typer.Option(
        "commercial", "--policy", help="Train only on recordings eligible under this policy."
    ),
    out: Path | None = typer.Option(None, "--out", help="Checkpoint path (default: ours)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Train a CLAP (HTSAT-tiny audio, transformer text) on the eligible segments:
    contrastive audio–caption loss plus augmentation invariance. Writes the checkpoint,
    a loss-curve PNG beside it, and records the embedder (flow `clap-train`)."""
    from flows.clap import clap_train_flow
    from flows.local_runs import run_flow
    from provenance.policies import PolicyError, load_policy
    from training.clap_train import CLAP_CONFIGS

    if config_name not in CLAP_CONFIGS:
        fail(
            f"unknown --config {config_name!r}; allowed: {', '.join(CLAP_CONFIGS)}", EXIT_BAD_INPUT
        )
    try:
        load_policy(policy_name)
    except PolicyError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    _feature_root()
    migrated_engine().dispose()  # exits with a clear message on an unmigrated DB
    try:
        info = run_flow(
            clap_train_flow,
            config_name=config_name,
            policy_name=policy_name,
            out=str(out) if out else None,
            show_progress=not as_json,
        )
    except ValueError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    if as_json:
        print_json(info)
    else:
        console.print(
            f"CLAP trained on {info['segments']} segments of {info['recordings']} eligible "
            f"recordings in {info['seconds']:.0f} s: loss {info['first_loss']:.3f} → "
            f"{info['last_loss']:.3f}\ncheckpoint {info['checkpoint']} "
            f"(sha256 {info['sha256'][:12]}), loss curve {info['loss_png']}",
            highlight=False,
        )


@clap_app.command("embed")
def embed(
    clap: Path | None = typer.Option(None, "--clap", help="CLAP checkpoint (default: ours)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Embed every segment of the feature set into `embeddings-SHA.arrow` beside the shards,
    and record the file's digest (flow `clap-embed`; `audit verify` re-hashes it)."""
    from flows.clap import clap_embed_flow
    from flows.local_runs import run_flow
    from training.clap_embedder import ClapCheckpointMissing, ClapEmbedder

    try:
        ClapEmbedder.load(clap)
    except (ClapCheckpointMissing, ValueError) as exc:  # missing, or not a usable CLAP
        fail(str(exc), EXIT_BAD_INPUT)
    _feature_root()
    migrated_engine().dispose()
    info = run_flow(clap_embed_flow, clap=str(clap) if clap else None, show_progress=not as_json)
    if as_json:
        print_json(info)
    else:
        console.print(f"{info['segments']} segment embeddings in {info['embeddings']}")


@clap_app.command("eval")
def evaluate(
    clap: Path | None = typer.Option(None, "--clap", help="CLAP checkpoint (default: ours)."),
    queries: int = typer.Option(40, "--queries", help="Segments to transform per transform."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Recall@1 of each segment's transformed copy among all segments, per transform, and
    same- vs different-artist similarity separation (ROC AUC)."""
    import numpy as np

    from training.clap_embedder import ClapCheckpointMissing, ClapEmbedder
    from training.clap_eval import evaluate_clap
    from training.segment_embeddings import embedding_matrix, read_embeddings

    try:
        embedder = ClapEmbedder.load(clap)
    except (ClapCheckpointMissing, ValueError) as exc:  # missing, or not a usable CLAP
        fail(str(exc), EXIT_BAD_INPUT)
    examples = _examples()
    embeddings = None
    try:
        table = read_embeddings(_feature_root(), embedder.sha256)
        index = {
            (r, s): i
            for i, (r, s) in enumerate(
                zip(
                    table.column("recording_id").to_pylist(),
                    table.column("segment_index").to_pylist(),
                    strict=True,
                )
            )
        }
        matrix = embedding_matrix(table)
        embeddings = np.stack([matrix[index[(e.recording_id, e.segment_index)]] for e in examples])
    except (FileNotFoundError, KeyError):
        embeddings = None  # computed below
    result = evaluate_clap(
        embedder.embed_audio_clip, examples, embeddings=embeddings, queries=queries
    )
    result["embedder_sha256"] = embedder.sha256
    if as_json:
        print_json(result)
        return
    console.print(f"CLAP {embedder.sha256[:12]} on {result['segments']} segments")
    for name, value in result["recall_at_1"].items():
        console.print(f"  recall@1 {name:12s} {value:.3f}")
    console.print(f"  same- vs different-artist ROC AUC {result['artist_roc_auc']:.3f}")
    if not np.isfinite(result["artist_roc_auc"]):
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.add_typer(clap_app, name="clap")
