"""The tone corpus made ready for the train flow: recorded, featurized, with a debug CLAP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.clap import clap_embed_flow, clap_train_flow
from flows.featurize import featurize_flow
from tests.common.corpus import seed_tone_corpus


def trainable_tone_corpus(
    db_url: str, folder: Path, *, embed: bool = True
) -> tuple[dict[str, int], dict[str, Any]]:
    """Record :data:`tests.common.corpus.TONE_CORPUS` (files in ``folder``), featurize it and
    train a ``debug`` CLAP on it; with ``embed``, embed every segment too (the gate index
    needs it, training does not). Returns title → recording id and the CLAP flow's summary."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = seed_tone_corpus(db_url, folder)
    featurized = featurize_flow(db_url=db_url)
    if featurized["segments"] != len(ids):
        raise AssertionError(f"expected one segment per recording, got {featurized}")
    clap = clap_train_flow(config_name="debug", db_url=db_url)
    if embed and (embedded := clap_embed_flow(db_url=db_url))["segments"] != len(ids):
        raise AssertionError(f"expected every segment embedded, got {embedded}")
    return ids, clap
