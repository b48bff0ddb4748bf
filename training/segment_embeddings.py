"""CLAP audio embeddings of a feature set's segments: the ``embeddings-<sha[:12]>.arrow`` file."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.shard_writer import replace_atomically
from training.shards import open_shard, select_recordings

EMBEDDING_DIM = 512

EMBEDDING_SCHEMA = pa.schema(
    [
        pa.field("recording_id", pa.int64(), nullable=False),
        pa.field("segment_index", pa.int32(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32(), EMBEDDING_DIM), nullable=False),
        pa.field("embedder_sha256", pa.string(), nullable=False),
    ]
)


def embeddings_path(root: str | Path, embedder_sha256: str) -> Path:
    return Path(root) / f"embeddings-{embedder_sha256[:12]}.arrow"


def write_embeddings(
    root: str | Path,
    *,
    embedder_sha256: str,
    recording_ids: Sequence[int],
    segment_indices: Sequence[int],
    embeddings: np.ndarray,
    replace: bool = False,
) -> Path:
    """Write (or extend) ``embeddings-<sha[:12]>.arrow``: one row per (recording, segment).

    Existing rows for other keys are kept unless ``replace``; keys given here
    replace older rows with the same key. Written tmp + rename, stream format.
    """
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = len(recording_ids)
    if emb.shape != (n, EMBEDDING_DIM) or len(segment_indices) != n:
        raise ValueError(
            f"need embeddings [{n}, {EMBEDDING_DIM}] and {n} segment indices, "
            f"got {emb.shape} and {len(segment_indices)}"
        )
    new = pa.table(
        [
            pa.array(np.asarray(recording_ids, dtype=np.int64)),
            pa.array(np.asarray(segment_indices, dtype=np.int32)),
            pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), EMBEDDING_DIM),
            pa.array([embedder_sha256] * n, pa.string()),
        ],
        schema=EMBEDDING_SCHEMA,
    )
    path = embeddings_path(root, embedder_sha256)
    if path.exists() and not replace:
        old = open_shard(path)
        keys = pc.add(pc.multiply(new.column("recording_id"), 1 << 20), new.column("segment_index"))
        old_keys = pc.add(
            pc.multiply(old.column("recording_id"), 1 << 20),
            pc.cast(old.column("segment_index"), pa.int64()),
        )
        keep = pc.invert(pc.is_in(old_keys, value_set=pc.cast(keys, pa.int64())))
        new = pa.concat_tables([old.filter(keep), new])
    new = new.sort_by([("recording_id", "ascending"), ("segment_index", "ascending")])
    tmp = path.with_name(path.name + ".tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, EMBEDDING_SCHEMA) as writer:
        writer.write_table(new)
    replace_atomically(tmp, path)
    return path


def read_embeddings(
    root: str | Path, embedder_sha256: str, *, recording_ids: Iterable[int] | None = None
) -> pa.Table:
    """The embeddings of one embedder (memory-mapped), optionally only for some recordings."""
    path = embeddings_path(root, embedder_sha256)
    if not path.exists():
        raise FileNotFoundError(f"no embeddings for embedder {embedder_sha256[:12]} at {path}")
    table = open_shard(path)
    if recording_ids is not None:
        table = select_recordings(table, recording_ids)
    return table


def embedding_matrix(table: pa.Table) -> np.ndarray:
    """The ``embedding`` column as float32 ``[rows, 512]``."""
    column = table.column("embedding").combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, EMBEDDING_DIM)
