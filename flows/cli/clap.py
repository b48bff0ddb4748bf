"""`fairchord clap`: train our own CLAP, embed every segment with it, and measure it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from flows.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, console, fail, print_json, session_scope

clap_app = typer.Typer(
    help="The CLAP embedder: train it offline on eligible segments, embed, evaluate.",
    no_args_is_help=True,
)


def _feature_root() -> Path:
    from flows.featurize import feature_root
    from training.mel import MelConfig

    root = feature_root(MelConfig())
    if not (root / "manifest.json").exists():
        fail(f"no feature set at {root}: run `fairchord featurize` first", EXIT_BAD_INPUT)
    return root


def _object_uris() -> dict[int, str]:
    from sqlalchemy import select

    from provenance.models import Recording

    with session_scope() as session:
        return {
            rid: uri
            for rid, uri in session.execute(
                select(Recording.id, Recording.object_uri).where(Recording.object_uri.is_not(None))
            )
        }


def _examples(recording_ids: set[int] | None) -> list[Any]:
    from rich.progress import Progress

    from training.clap_data import load_examples, segment_catalog

    catalog = segment_catalog(_feature_root())
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("decoding segments", total=catalog.num_rows)
        return load_examples(
            catalog,
            _object_uris(),
            recording_ids=recording_ids,
            progress=lambda n: bar.advance(task, n),
        )


def _record_embedder(sha256: str, path: Path, config: dict[str, Any]) -> None:
    from sqlalchemy import select

    from provenance.audit_log import append_event
    from provenance.models import Embedder

    with session_scope() as session:
        if session.execute(select(Embedder).where(Embedder.sha256 == sha256)).scalar_one_or_none():
            return
        row = Embedder(sha256=sha256, uri=str(path), kind="laion_clap", config=config)
        session.add(row)
        session.flush()
        append_event(
            session,
            "embedder.trained",
            entity="embedder",
            entity_id=row.id,
            payload={"sha256": sha256, "uri": str(path), "config": config},
        )


@clap_app.command("train")
def train(
    config_name: str = typer.Option("demo", "--config", help="debug (seconds) or demo (minutes)."),
    policy_name: str = typer.Option(
        "commercial", "--policy", help="Train only on recordings eligible under this policy."
    ),
    out: Path | None = typer.Option(None, "--out", help="Checkpoint path (default: ours)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Train a CLAP (HTSAT-tiny audio, transformer text) on the eligible segments:
    contrastive audio–caption loss plus augmentation invariance. Writes the checkpoint,
    a loss-curve PNG beside it, and records the embedder."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from provenance.eligibility import eligible_recordings
    from provenance.policies import PolicyError, load_policy
    from training.clap_embedder import default_clap_path
    from training.clap_train import CLAP_CONFIGS, plot_losses, train_clap

    if config_name not in CLAP_CONFIGS:
        fail(
            f"unknown --config {config_name!r}; allowed: {', '.join(CLAP_CONFIGS)}", EXIT_BAD_INPUT
        )
    config = CLAP_CONFIGS[config_name]
    try:
        policy = load_policy(policy_name)
    except PolicyError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    with session_scope() as session:
        eligible = {e.recording_id for e in eligible_recordings(session, policy)}
    if not eligible:
        fail(f"no recording is eligible under {policy_name!r}: ingest some first", EXIT_BAD_INPUT)
    examples = _examples(eligible)
    path = out or default_clap_path()
    with Progress(
        TextColumn("training CLAP"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        console=console,
        disable=as_json,
    ) as bar:
        task = bar.add_task("clap", total=config.steps, loss=float("nan"))
        result = train_clap(
            examples,
            config=config,
            out_path=path,
            progress=lambda step, loss: bar.update(task, completed=step, loss=loss),
        )
    png = plot_losses(result, path.with_suffix(".loss.png"))
    _record_embedder(result.sha256, path, {"config": config_name, "policy": policy_name})
    info = {
        "checkpoint": str(path),
        "sha256": result.sha256,
        "segments": len(examples),
        "recordings": len(eligible),
        "steps": config.steps,
        "seconds": round(result.seconds, 1),
        "first_loss": result.losses[0],
        "last_loss": result.losses[-1],
        "loss_png": str(png),
    }
    if as_json:
        print_json(info)
    else:
        console.print(
            f"CLAP trained on {len(examples)} segments of {len(eligible)} eligible recordings in "
            f"{result.seconds:.0f} s: loss {result.losses[0]:.3f} → {result.losses[-1]:.3f}\n"
            f"checkpoint {path} (sha256 {result.sha256[:12]}), loss curve {png}"
        )


@clap_app.command("embed")
def embed(
    clap: Path | None = typer.Option(None, "--clap", help="CLAP checkpoint (default: ours)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Embed every segment of the feature set into `embeddings-SHA.arrow` beside the shards."""
    import numpy as np
    from rich.progress import Progress

    from training.clap_embedder import EMBED_BATCH, ClapCheckpointMissing, ClapEmbedder
    from training.shards import write_embeddings

    try:
        embedder = ClapEmbedder.load(clap)
    except (ClapCheckpointMissing, ValueError) as exc:  # missing, or not a usable CLAP
        fail(str(exc), EXIT_BAD_INPUT)
    examples = _examples(None)
    vectors: list[np.ndarray] = []
    batch = EMBED_BATCH
    with Progress(console=console, disable=as_json) as bar:
        task = bar.add_task("embedding segments", total=len(examples))
        for start in range(0, len(examples), batch):
            chunk = examples[start : start + batch]
            vectors.extend(embedder.embed_clips([e.wave_16k for e in chunk]))
            bar.advance(task, len(chunk))
    path = write_embeddings(
        _feature_root(),
        embedder_sha256=embedder.sha256,
        recording_ids=[e.recording_id for e in examples],
        segment_indices=[e.segment_index for e in examples],
        embeddings=np.stack(vectors),
        replace=True,
    )
    _record_embedder(embedder.sha256, embedder.path, embedder.config)
    info = {"embeddings": str(path), "segments": len(examples), "embedder_sha256": embedder.sha256}
    if as_json:
        print_json(info)
    else:
        console.print(f"{len(examples)} segment embeddings in {path}")


@clap_app.command("eval")
def evaluate(
    clap: Path | None = typer.Option(None, "--clap", help="CLAP checkpoint (default: ours)."),
    queries: int = typer.Option(40, "--queries", help="Segments to transform per transform."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Recall@1 of each segment's transformed copy among all segments, per transform, and
    same- vs different-artist similarity separation (ROC AUC)."""
    import numpy as np

    from training.clap_embedder import ClapCheckpointMissing, ClapEmbedder
    from training.clap_eval import evaluate_clap
    from training.shards import embedding_matrix, read_embeddings

    try:
        embedder = ClapEmbedder.load(clap)
    except (ClapCheckpointMissing, ValueError) as exc:  # missing, or not a usable CLAP
        fail(str(exc), EXIT_BAD_INPUT)
    examples = _examples(None)
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
