"""The `clap-train` and `clap-embed` flows: train our CLAP on eligible segments, embed them all.

Each records what it made: the embedder row (checkpoint digest) and, for
embedding, the segment-embeddings file with its digest, which `audit verify`
re-hashes. Retries are on the steps that read files only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.cache_policies import NONE as NO_CACHE
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from flows.local_runs import step
from flows.sessions import transaction
from provenance.embedders import object_uris, record_embedder, record_segment_embeddings
from provenance.hashing import sha256_file
from provenance.object_store import home_location
from training.clap_data import ClipExample

_progress_console = Console(stderr=True)


def feature_root() -> Path:
    """The feature set CLAP reads: the default mel configuration's shards."""
    from flows.featurize import feature_root as root_for
    from training.mel import MelConfig

    root = root_for(MelConfig())
    if not (root / "manifest.json").exists():
        raise FileNotFoundError(f"no feature set at {root}: run `fairchord featurize` first")
    return root


@step(cache_policy=NO_CACHE)
def eligible_task(db_url: str | None, policy_name: str) -> list[int]:
    from provenance.eligibility import eligible_recordings
    from provenance.policies import load_policy

    policy = load_policy(policy_name)
    with transaction(db_url) as session:
        return sorted(e.recording_id for e in eligible_recordings(session, policy))


@step(retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def examples_task(
    db_url: str | None, recording_ids: list[int] | None, show_progress: bool
) -> list[ClipExample]:
    """Decode each catalogued segment's audio from the object store."""
    from training.clap_data import load_examples, segment_catalog

    catalog = segment_catalog(feature_root())
    with transaction(db_url) as session:
        uris = object_uris(session)
    with Progress(console=_progress_console, transient=True, disable=not show_progress) as bar:
        step = bar.add_task("decoding segments", total=catalog.num_rows)
        return load_examples(
            catalog, uris, recording_ids=recording_ids, progress=lambda n: bar.advance(step, n)
        )


@step(cache_policy=NO_CACHE)
def train_clap_task(
    examples: list[ClipExample], config_name: str, out: str, show_progress: bool
) -> dict[str, Any]:
    from training.clap_train import CLAP_CONFIGS, plot_losses, train_clap

    config = CLAP_CONFIGS[config_name]
    with Progress(
        TextColumn("training CLAP"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        console=_progress_console,
        disable=not show_progress,
    ) as bar:
        step = bar.add_task("clap", total=config.steps, loss=float("nan"))
        result = train_clap(
            examples,
            config=config,
            out_path=Path(out),
            progress=lambda done, loss: bar.update(step, completed=done, loss=loss),
        )
    png = plot_losses(result, Path(out).with_suffix(".loss.png"))
    return {
        "checkpoint": str(result.path),
        "sha256": result.sha256,
        "steps": config.steps,
        "seconds": round(result.seconds, 1),
        "first_loss": result.losses[0],
        "last_loss": result.losses[-1],
        "loss_png": str(png),
    }


@step(cache_policy=NO_CACHE)
def record_embedder_task(db_url: str | None, sha256: str, path: str, config: dict[str, Any]) -> int:
    with transaction(db_url) as session:
        return record_embedder(session, sha256=sha256, uri=home_location(path), config=config)


@flow(name="clap-train")
def clap_train_flow(
    config_name: str = "demo",
    policy_name: str = "commercial",
    out: str | None = None,
    db_url: str | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Train our CLAP on the segments of recordings eligible under the policy; record it."""
    from training.clap_embedder import default_clap_path
    from training.clap_train import CLAP_CONFIGS

    if config_name not in CLAP_CONFIGS:
        raise ValueError(f"unknown CLAP config {config_name!r}; allowed: {', '.join(CLAP_CONFIGS)}")
    eligible = eligible_task(db_url, policy_name)
    if not eligible:
        raise ValueError(f"no recording is eligible under {policy_name!r}: ingest some first")
    examples = examples_task(db_url, eligible, show_progress)
    path = str(out or default_clap_path())
    trained = train_clap_task(examples, config_name, path, show_progress)
    config = {"config": config_name, "policy": policy_name}
    record_embedder_task(db_url, trained["sha256"], trained["checkpoint"], config)
    return {**trained, "segments": len(examples), "recordings": len(eligible)}


@step(cache_policy=NO_CACHE)
def embed_task(
    clap: str | None, examples: list[ClipExample], show_progress: bool
) -> dict[str, Any]:
    """Embed every segment and write ``embeddings-SHA.arrow`` beside the shards."""
    import numpy as np

    from training.clap_embedder import EMBED_BATCH, ClapEmbedder
    from training.segment_embeddings import write_embeddings

    embedder = ClapEmbedder.load(Path(clap) if clap else None)
    vectors: list[np.ndarray] = []
    with Progress(console=_progress_console, disable=not show_progress) as bar:
        step = bar.add_task("embedding segments", total=len(examples))
        for start in range(0, len(examples), EMBED_BATCH):
            chunk = examples[start : start + EMBED_BATCH]
            vectors.extend(embedder.embed_clips([e.wave_16k for e in chunk]))
            bar.advance(step, len(chunk))
    path = write_embeddings(
        feature_root(),
        embedder_sha256=embedder.sha256,
        recording_ids=[e.recording_id for e in examples],
        segment_indices=[e.segment_index for e in examples],
        embeddings=np.stack(vectors),
        replace=True,
    )
    return {
        "embeddings": str(path),
        "embeddings_sha256": sha256_file(path),
        "segments": len(examples),
        "embedder_sha256": embedder.sha256,
        "embedder_path": str(embedder.path),
        "embedder_config": embedder.config,
    }


@step(cache_policy=NO_CACHE)
def record_embeddings_task(db_url: str | None, embedded: dict[str, Any]) -> None:
    with transaction(db_url) as session:
        embedder_id = record_embedder(
            session,
            sha256=embedded["embedder_sha256"],
            uri=home_location(embedded["embedder_path"]),
            config=embedded["embedder_config"],
        )
        record_segment_embeddings(
            session,
            embedder_id=embedder_id,
            uri=home_location(embedded["embeddings"]),
            sha256=embedded["embeddings_sha256"],
            segments=embedded["segments"],
        )


@flow(name="clap-embed")
def clap_embed_flow(
    clap: str | None = None, db_url: str | None = None, show_progress: bool = False
) -> dict[str, Any]:
    """Embed every segment of the feature set with a CLAP; record the file and its digest."""
    from training.clap_embedder import ClapEmbedder

    ClapEmbedder.load(Path(clap) if clap else None)  # a missing or unusable CLAP fails here
    examples = examples_task(db_url, None, show_progress)
    embedded = embed_task(clap, examples, show_progress)
    record_embeddings_task(db_url, embedded)
    return {k: embedded[k] for k in ("embeddings", "embeddings_sha256", "segments")} | {
        "embedder_sha256": embedded["embedder_sha256"]
    }
