"""How well a CLAP embedder serves the gate, measured on the corpus itself.

* **Replay retrieval**: for each transform, embed a transformed copy of every
  sampled segment and search all segments: recall@1 is how often the nearest
  one is the segment it came from.
* **Artist separation**: ROC AUC of cosine similarity for same-artist versus
  different-artist segment pairs (segments of the same recording excluded).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from training.augment import calibration_transforms
from training.clap_train import ClipExample

DEFAULT_TRANSFORMS = ("pitch_+2", "tempo_+10%", "noise_20db", "lowpass_4k", "mp3", "crop_5s")


def _auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    return float(roc_auc_score(labels, np.r_[positives, negatives]))


def evaluate_clap(
    embed: Callable[[np.ndarray], np.ndarray],
    examples: Sequence[ClipExample],
    *,
    embeddings: np.ndarray | None = None,
    transforms: Sequence[str] = DEFAULT_TRANSFORMS,
    queries: int = 40,
    seed: int = 0,
) -> dict[str, Any]:
    """``embed(wave_16k) -> [D]``; ``embeddings`` of ``examples`` if already computed."""
    if embeddings is None:
        embeddings = np.stack([embed(e.wave_16k) for e in examples])
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(examples), size=min(queries, len(examples)), replace=False)
    available = calibration_transforms(seed=seed)
    recall: dict[str, float] = {}
    for name in transforms:
        transform = available[name]
        hits = 0
        for i in picks:
            query = embed(transform(examples[i].wave_16k))
            hits += int(np.argmax(embeddings @ query) == i)
        recall[name] = hits / len(picks)
    sims = embeddings @ embeddings.T
    same: list[float] = []
    different: list[float] = []
    for i in range(len(examples)):
        for j in range(i + 1, len(examples)):
            a, b = examples[i], examples[j]
            if a.recording_id == b.recording_id or not a.artist_ids or not b.artist_ids:
                continue
            (same if set(a.artist_ids) & set(b.artist_ids) else different).append(float(sims[i, j]))
    auc = _auc(np.array(same), np.array(different)) if same and different else float("nan")
    return {
        "segments": len(examples),
        "queries": int(len(picks)),
        "recall_at_1": recall,
        "artist_pairs": {"same": len(same), "different": len(different)},
        "artist_roc_auc": auc,
    }
