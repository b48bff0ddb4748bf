"""Arrow shards of featurized segments: writer, manifest, memory-mapped reader, torch datasets.

Layout of one feature set (``features/<mel_config_hash>/``)::

    shard-00000.arrow ...            Arrow IPC *stream* files (datasets.Dataset.from_file opens
                                     them memory-mapped), one row per segment, ROW_SCHEMA
    manifest.json                    shard names, sha256, rows, bytes, recordings, mel config
    embeddings-<sha[:12]>.arrow      CLAP audio embeddings keyed by (recording_id,
                                     segment_index), EMBEDDING_SCHEMA, one file per embedder

A recording's rows always sit in one shard. Shards are immutable once
renamed from their ``.tmp`` name; an incremental run adds new shards and
rewrites the manifest (also tmp + rename).

Reading for training::

    ds = SegmentBatches(root, recording_ids=snapshot_ids, batch_size=16, shuffle=True, seed=0)
    for batch in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2):
        batch["mel"]  # float16 [B, 64, 1024]; batch["valid_frames"], ["caption"], ...
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from training.mel import MelConfig

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "fairchord-features"
MANIFEST_VERSION = 1
DEFAULT_TARGET_BYTES = 128 * 1024 * 1024
EMBEDDING_DIM = 512


def row_schema(n_mels: int, frames: int) -> pa.Schema:
    """One segment per row; ``mel`` is float16 ``[n_mels, frames]`` flattened row-major."""
    return pa.schema(
        [
            pa.field("recording_id", pa.int64(), nullable=False),
            pa.field("recording_sha256", pa.string(), nullable=False),
            pa.field("segment_index", pa.int32(), nullable=False),
            pa.field("start_s", pa.float32(), nullable=False),
            pa.field("is_partial", pa.bool_(), nullable=False),
            pa.field("frames", pa.int32(), nullable=False),  # frames in `mel` (the full window)
            pa.field("valid_frames", pa.int32(), nullable=False),  # frames holding real audio
            pa.field("mel", pa.list_(pa.float16(), n_mels * frames), nullable=False),
            pa.field("caption", pa.string(), nullable=False),
            pa.field("caption_method", pa.string(), nullable=False),
            pa.field("artist_ids", pa.list_(pa.int64()), nullable=False),
            pa.field("licence", pa.string(), nullable=False),
        ],
        metadata={"n_mels": str(n_mels), "frames": str(frames)},
    )


EMBEDDING_SCHEMA = pa.schema(
    [
        pa.field("recording_id", pa.int64(), nullable=False),
        pa.field("segment_index", pa.int32(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32(), EMBEDDING_DIM), nullable=False),
        pa.field("embedder_sha256", pa.string(), nullable=False),
    ]
)


def segment_rows(
    *,
    recording_id: int,
    recording_sha256: str,
    mels: np.ndarray,
    start_s: Sequence[float],
    is_partial: Sequence[bool],
    valid_frames: Sequence[int],
    captions: Sequence[str],
    caption_methods: Sequence[str],
    artist_ids: Sequence[int],
    licence: str,
) -> pa.RecordBatch:
    """The rows of one recording as a record batch; ``mels`` is ``[segments, n_mels, frames]``."""
    mels = np.ascontiguousarray(mels, dtype=np.float16)
    if mels.ndim != 3:
        raise ValueError(f"mels must be [segments, n_mels, frames], got shape {mels.shape}")
    n, n_mels, frames = mels.shape
    for name, seq in (
        ("start_s", start_s),
        ("is_partial", is_partial),
        ("valid_frames", valid_frames),
        ("captions", captions),
        ("caption_methods", caption_methods),
    ):
        if len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries for {n} segments")
    mel = pa.FixedSizeListArray.from_arrays(pa.array(mels.reshape(-1)), n_mels * frames)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(np.full(n, recording_id, dtype=np.int64)),
            pa.array([recording_sha256] * n, pa.string()),
            pa.array(np.arange(n, dtype=np.int32)),
            pa.array(np.asarray(start_s, dtype=np.float32)),
            pa.array(np.asarray(is_partial, dtype=bool)),
            pa.array(np.full(n, frames, dtype=np.int32)),
            pa.array(np.asarray(valid_frames, dtype=np.int32)),
            mel,
            pa.array(list(captions), pa.string()),
            pa.array(list(caption_methods), pa.string()),
            pa.array([list(artist_ids)] * n, pa.list_(pa.int64())),
            pa.array([licence] * n, pa.string()),
        ],
        schema=row_schema(n_mels, frames),
    )


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _replace_atomically(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


@dataclass
class ShardInfo:
    name: str
    sha256: str
    rows: int
    bytes: int
    recording_ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "rows": self.rows,
            "bytes": self.bytes,
            "recording_ids": self.recording_ids,
        }


class ShardWriter:
    """Appends recordings' record batches to shards of about ``target_bytes`` each.

    Use as a context manager; :attr:`written` lists the finished shards. A
    recording is never split across shards; a new shard starts when the next
    recording would push the current one past ``target_bytes``.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        n_mels: int,
        frames: int,
        target_bytes: int = DEFAULT_TARGET_BYTES,
        first_index: int = 0,
    ) -> None:
        if target_bytes <= 0:
            raise ValueError(f"target_bytes must be positive, got {target_bytes}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.schema = row_schema(n_mels, frames)
        self.target_bytes = target_bytes
        self.next_index = first_index
        self.written: list[ShardInfo] = []
        self._sink: pa.OSFile | None = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._tmp: Path | None = None
        self._name = ""
        self._rows = 0
        self._bytes = 0
        self._recordings: list[int] = []

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def add_recording(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if batch.schema != self.schema:
            raise ValueError(
                f"batch schema does not match the shard schema:\n{batch.schema}\nvs\n{self.schema}"
            )
        ids = pc.unique(batch.column("recording_id")).to_pylist()
        if len(ids) != 1:
            raise ValueError(f"a batch must hold one recording, got ids {ids}")
        size = batch.nbytes
        if self._writer is not None and self._rows and self._bytes + size > self.target_bytes:
            self._finish()
        if self._writer is None:
            self._open()
        assert self._writer is not None
        self._writer.write_batch(batch)
        self._rows += batch.num_rows
        self._bytes += size
        self._recordings.append(int(ids[0]))

    def _open(self) -> None:
        self._name = f"shard-{self.next_index:05d}.arrow"
        self.next_index += 1
        final = self.root / self._name
        if final.exists():
            raise FileExistsError(f"{final} already exists; shards are never overwritten")
        self._tmp = self.root / (self._name + ".tmp")
        self._sink = pa.OSFile(str(self._tmp), "wb")
        self._writer = pa.ipc.new_stream(self._sink, self.schema)
        self._rows = 0
        self._bytes = 0
        self._recordings = []

    def _finish(self) -> None:
        assert self._writer is not None and self._sink is not None and self._tmp is not None
        self._writer.close()
        self._sink.close()
        final = self.root / self._name
        _replace_atomically(self._tmp, final)
        info = ShardInfo(
            name=self._name,
            sha256=sha256_file(final),
            rows=self._rows,
            bytes=final.stat().st_size,
            recording_ids=list(self._recordings),
        )
        self.written.append(info)
        logger.info("wrote %s: %d rows, %d bytes", final, info.rows, info.bytes)
        self._writer = self._sink = self._tmp = None

    def close(self) -> list[ShardInfo]:
        if self._writer is not None:
            self._finish()
        return self.written

    def abort(self) -> None:
        """Drop the unfinished shard (its tmp file); finished shards stay."""
        if self._writer is not None:
            try:
                self._writer.close()
                assert self._sink is not None
                self._sink.close()
            finally:
                if self._tmp is not None:
                    self._tmp.unlink(missing_ok=True)
                self._writer = self._sink = self._tmp = None


# --- manifest --------------------------------------------------------------


def manifest_path(root: str | Path) -> Path:
    return Path(root) / MANIFEST_NAME


def new_manifest(
    mel_config: MelConfig, *, frames: int, segment_config: dict[str, Any]
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "mel_config": mel_config.to_dict(),
        "mel_config_hash": mel_config.hash(),
        "mel_config_sha256": mel_config.full_hash(),
        "segment_config": segment_config,
        "mel_shape": [mel_config.n_mels, frames],
        "shards": [],
        "recordings": {},
        "total_rows": 0,
        "updated_at": None,
    }


def read_manifest(root: str | Path) -> dict[str, Any]:
    path = manifest_path(root)
    if not path.exists():
        raise FileNotFoundError(f"no feature manifest at {path}; run `fairchord featurize`")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != MANIFEST_FORMAT or data.get("version") != MANIFEST_VERSION:
        raise ValueError(
            f"{path} is format {data.get('format')!r} v{data.get('version')!r}; "
            f"expected {MANIFEST_FORMAT!r} v{MANIFEST_VERSION}"
        )
    return data


def add_shards_to_manifest(
    manifest: dict[str, Any], shards: Iterable[ShardInfo], recordings: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """A new manifest with ``shards`` and ``recordings`` (id → sha256, segments, shard) added."""
    out = dict(manifest)
    out["shards"] = [*manifest["shards"], *(s.to_dict() for s in shards)]
    merged = dict(manifest["recordings"])
    for rid, info in recordings.items():
        if str(rid) in merged:
            raise ValueError(f"recording {rid} is already in this feature set")
        merged[str(rid)] = info
    out["recordings"] = dict(sorted(merged.items(), key=lambda kv: int(kv[0])))
    out["total_rows"] = sum(s["rows"] for s in out["shards"])
    out["updated_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return out


def write_manifest(root: str | Path, manifest: dict[str, Any]) -> str:
    """Write manifest.json (tmp + rename); return its sha256."""
    path = manifest_path(root)
    body = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(body)
    _replace_atomically(tmp, path)
    return hashlib.sha256(body).hexdigest()


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
        flat = chunk.flatten()  # respects the chunk's offset; zero-copy for fixed-size lists
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


# --- CLAP embeddings (sibling file, written by the CLAP step) ----------------


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
    _replace_atomically(tmp, path)
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
