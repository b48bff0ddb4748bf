"""CLAP's view of a feature set: each shard row's 10 s of audio, with its caption and artists.

CLAP sees audio, not our mels, so clips are cut again from the originals at
the rows' start times, decoded to 16 kHz mono (the same signal path the gate
uses). The mel column is never read here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa

from training.clap_embedder import MODEL_RATE, WINDOW_S
from training.clap_train import ClipExample
from training.featurizer import decode_for_mel
from training.shards import open_shard, shard_paths

CATALOG_COLUMNS = ["recording_id", "segment_index", "start_s", "caption", "artist_ids"]


def segment_catalog(feature_root: str | Path) -> pa.Table:
    """Every segment of the feature set, without mels, in shard order."""
    parts = [open_shard(p).select(CATALOG_COLUMNS) for p in shard_paths(feature_root)]
    if not parts:
        raise ValueError(f"feature set {feature_root} has no shards: run `fairchord featurize`")
    return pa.concat_tables(parts)


def load_examples(
    catalog: pa.Table,
    object_uris: dict[int, str],
    *,
    recording_ids: Iterable[int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ClipExample]:
    """Cut each catalogued segment's first 10 s from its decoded original."""
    wanted = None if recording_ids is None else {int(r) for r in recording_ids}
    rows = catalog.to_pylist()
    by_recording: dict[int, list[dict]] = {}
    for row in rows:
        rid = int(row["recording_id"])
        if wanted is None or rid in wanted:
            by_recording.setdefault(rid, []).append(row)
    size = int(WINDOW_S * MODEL_RATE)
    examples = []
    for rid, segments in sorted(by_recording.items()):
        if rid not in object_uris:
            raise KeyError(f"recording {rid} has no stored object to read audio from")
        wave = decode_for_mel(object_uris[rid])
        for row in segments:
            start = int(round(float(row["start_s"]) * MODEL_RATE))
            clip = wave[start : start + size]
            if clip.size == 0:
                continue
            if clip.size < size:
                clip = np.resize(clip, size)  # repeat-pad, as CLAP does
            examples.append(
                ClipExample(
                    wave_16k=np.ascontiguousarray(clip, dtype=np.float32),
                    caption=str(row["caption"]),
                    recording_id=rid,
                    segment_index=int(row["segment_index"]),
                    artist_ids=[int(a) for a in row["artist_ids"] or []],
                )
            )
        if progress:
            progress(len(segments))
    return examples
