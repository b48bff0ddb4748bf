"""Arrow shards of featurized segments: their layout, manifest and memory-mapped readers.

Layout of one feature set (``features/<mel_config_hash>/``)::

    shard-00000.arrow ...            Arrow IPC *stream* files (datasets.Dataset.from_file opens
                                     them memory-mapped), one row per segment, ROW_SCHEMA
    manifest.json                    shard names, sha256, rows, bytes, recordings, mel config
    embeddings-<sha[:12]>.arrow      CLAP audio embeddings keyed by (recording_id,
                                     segment_index), EMBEDDING_SCHEMA, one file per embedder

A recording's rows always sit in one shard. Shards are immutable once
renamed from their ``.tmp`` name; an incremental run adds new shards and
rewrites the manifest (also tmp + rename). Writing lives in
:mod:`training.shard_writer`, the embeddings file in :mod:`training.segment_embeddings`.

Reading for training::

    ds = SegmentBatches(root, recording_ids=snapshot_ids, batch_size=16, shuffle=True, seed=0)
    for batch in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2):
        batch["mel"]  # float16 [B, 64, 1024]; batch["valid_frames"], ["caption"], ...
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from provenance.hashing import sha256_file

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "fairchord-features"
# 2: ``mel`` is a fixed-size list of ``n_mels`` rows of ``frames`` values (2-D through
# ``datasets``); version 1 stored it flat and is refused, naming the fix.
MANIFEST_VERSION = 2


def row_schema(n_mels: int, frames: int) -> pa.Schema:
    """One segment per row; ``mel`` is float16 ``[n_mels, frames]``: ``n_mels`` fixed-size
    rows of ``frames`` values, so ``datasets`` reads it as a 2-D array per row."""
    return pa.schema(
        [
            pa.field("recording_id", pa.int64(), nullable=False),
            pa.field("recording_sha256", pa.string(), nullable=False),
            pa.field("segment_index", pa.int32(), nullable=False),
            pa.field("start_s", pa.float32(), nullable=False),
            pa.field("is_partial", pa.bool_(), nullable=False),
            pa.field("frames", pa.int32(), nullable=False),  # frames in `mel` (the full window)
            pa.field("valid_frames", pa.int32(), nullable=False),  # frames holding real audio
            pa.field("mel", pa.list_(pa.list_(pa.float16(), frames), n_mels), nullable=False),
            pa.field("caption", pa.string(), nullable=False),
            pa.field("caption_method", pa.string(), nullable=False),
            pa.field("artist_ids", pa.list_(pa.int64()), nullable=False),
            pa.field("licence", pa.string(), nullable=False),
        ],
        metadata={"n_mels": str(n_mels), "frames": str(frames)},
    )


# --- manifest ----------------------------------------------------------------


def manifest_path(root: str | Path) -> Path:
    return Path(root) / MANIFEST_NAME


def read_manifest(root: str | Path) -> dict[str, Any]:
    path = manifest_path(root)
    if not path.exists():
        raise FileNotFoundError(f"no feature manifest at {path}; run `fairchord featurize`")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") == MANIFEST_FORMAT and data.get("version") == 1:
        raise ValueError(
            f"feature set {Path(root)} was written by an older fairchord (manifest v1, mels "
            "stored flat); delete that folder and run `fairchord featurize` to rebuild it"
        )
    if data.get("format") != MANIFEST_FORMAT or data.get("version") != MANIFEST_VERSION:
        raise ValueError(
            f"{path} is format {data.get('format')!r} v{data.get('version')!r}; "
            f"expected {MANIFEST_FORMAT!r} v{MANIFEST_VERSION}"
        )
    return data


def verify_shards(root: str | Path) -> list[str]:
    """Problems found re-hashing every shard against the manifest (empty when all match)."""
    manifest = read_manifest(root)
    problems = []
    for shard in manifest["shards"]:
        path = Path(root) / shard["name"]
        if not path.exists():
            problems.append(f"{shard['name']}: missing")
        elif (digest := sha256_file(path)) != shard["sha256"]:
            problems.append(f"{shard['name']}: sha256 {digest} != manifest {shard['sha256']}")
    return problems


# --- reading ---------------------------------------------------------------


def open_shard(path: str | Path) -> pa.Table:
    """A shard as an Arrow table whose buffers point into a memory map (no copy, lazy pages)."""
    source = pa.memory_map(str(path), "r")
    return pa.ipc.open_stream(source).read_all()


def shard_paths(root: str | Path) -> list[Path]:
    return [Path(root) / s["name"] for s in read_manifest(root)["shards"]]


def open_feature_set(root: str | Path) -> list[pa.Table]:
    return [open_shard(p) for p in shard_paths(root)]


def open_datasets(root: str | Path) -> Any:
    """All shards as one Hugging Face ``datasets.Dataset`` (memory-mapped, offline)."""
    import datasets

    parts = [datasets.Dataset.from_file(str(p)) for p in shard_paths(root)]
    if not parts:
        raise ValueError(f"feature set {root} has no shards")
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def select_recordings(table: pa.Table, recording_ids: Iterable[int]) -> pa.Table:
    """Rows of ``recording_ids`` only: reads the id column, then takes just those rows' mels."""
    wanted = pa.array(sorted({int(r) for r in recording_ids}), pa.int64())
    mask = pc.is_in(table.column("recording_id"), value_set=wanted)
    indices = pc.indices_nonzero(mask)
    return table.take(indices)


def rows_for_recordings(root: str | Path, recording_ids: Iterable[int]) -> pa.Table:
    """Rows of the given recordings from every shard of a feature set, in shard order."""
    ids = {int(r) for r in recording_ids}
    manifest = read_manifest(root)
    parts = []
    for shard in manifest["shards"]:
        if ids.isdisjoint(shard["recording_ids"]):
            continue  # the manifest says this shard holds none of them: never opened
        parts.append(select_recordings(open_shard(Path(root) / shard["name"]), ids))
    if not parts:
        n_mels, frames = manifest["mel_shape"]
        return row_schema(n_mels, frames).empty_table()
    return pa.concat_tables(parts)


def mel_array(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """The ``mel`` column as float16 ``[rows, n_mels, frames]`` (a view when single-chunk)."""
    meta = table.schema.metadata or {}
    n_mels, frames = int(meta[b"n_mels"]), int(meta[b"frames"])
    column = table.column("mel")
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    arrays = []
    for chunk in chunks:
        # Each flatten respects the chunk's offset; zero-copy for fixed-size lists.
        flat = chunk.flatten().flatten()
        arrays.append(flat.to_numpy(zero_copy_only=True).reshape(len(chunk), n_mels, frames))
    if not arrays:
        return np.zeros((0, n_mels, frames), dtype=np.float16)
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def batch_to_torch(table: pa.Table | pa.RecordBatch) -> dict[str, Any]:
    """A batch of rows as tensors (mel float16 ``[B, n_mels, frames]``, copied once) + lists."""
    return {
        "mel": torch.from_numpy(np.array(mel_array(table), copy=True)),
        "valid_frames": torch.from_numpy(table.column("valid_frames").to_numpy().astype(np.int64)),
        "recording_id": torch.from_numpy(table.column("recording_id").to_numpy().astype(np.int64)),
        "segment_index": torch.from_numpy(
            table.column("segment_index").to_numpy().astype(np.int64)
        ),
        "caption": table.column("caption").to_pylist(),
        "artist_ids": table.column("artist_ids").to_pylist(),
    }


class SegmentBatches(torch.utils.data.IterableDataset[dict[str, Any]]):
    """Streams batches of segment rows from memory-mapped shards for a ``DataLoader``.

    Use ``DataLoader(ds, batch_size=None, num_workers=N)``: each item is
    already a batch (see :func:`batch_to_torch`). Rows are split between
    DataLoader workers and, with ``rank``/``world_size``, between DDP ranks.
    ``recording_ids`` restricts the rows (a training snapshot); other rows'
    mels are never read. With ``shuffle`` the row order is a fresh
    permutation per epoch (call :meth:`set_epoch`), gathered batch by batch.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        batch_size: int = 16,
        recording_ids: Iterable[int] | None = None,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, world_size={world_size})")
        self.root = Path(root)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        manifest = read_manifest(self.root)
        ids = None if recording_ids is None else {int(r) for r in recording_ids}
        # (shard name, row indices) for every shard that holds wanted rows; only the
        # small recording_id column is read here.
        self._index: list[tuple[str, np.ndarray]] = []
        for shard in manifest["shards"]:
            if ids is not None and ids.isdisjoint(shard["recording_ids"]):
                continue
            table = open_shard(self.root / shard["name"])
            if ids is None:
                rows = np.arange(table.num_rows, dtype=np.int64)
            else:
                mask = pc.is_in(table.column("recording_id"), value_set=pa.array(sorted(ids)))
                rows = pc.indices_nonzero(mask).to_numpy().astype(np.int64)
            if len(rows):
                self._index.append((shard["name"], rows))

    def __len__(self) -> int:
        """Number of rows this rank sees (across its DataLoader workers)."""
        total = sum(len(r) for _, r in self._index)
        return len(range(self.rank, total, self.world_size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _global_rows(self) -> list[tuple[int, int]]:
        pairs = [(s, int(r)) for s, (_, rows) in enumerate(self._index) for r in rows]
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(pairs))
            pairs = [pairs[i] for i in order]
        return pairs

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        mine = self._global_rows()[self.rank :: self.world_size][worker::workers]
        tables: dict[int, pa.Table] = {}
        for start in range(0, len(mine), self.batch_size):
            chunk = mine[start : start + self.batch_size]
            if self.drop_last and len(chunk) < self.batch_size:
                break
            parts = []
            # Gather per shard, keeping contiguous runs as zero-copy slices.
            for shard_pos in sorted({s for s, _ in chunk}):
                if shard_pos not in tables:
                    tables[shard_pos] = open_shard(self.root / self._index[shard_pos][0])
                rows = [r for s, r in chunk if s == shard_pos]
                table = tables[shard_pos]
                if rows == list(range(rows[0], rows[0] + len(rows))):
                    parts.append(table.slice(rows[0], len(rows)))
                else:
                    parts.append(table.take(pa.array(rows, pa.int64())))
            yield batch_to_torch(pa.concat_tables(parts))
