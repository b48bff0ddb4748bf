"""Writing a feature set: one recording's rows, shards of about a target size, the manifest."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from provenance.hashing import sha256_bytes, sha256_file
from training.mel import MelConfig
from training.shards import MANIFEST_FORMAT, MANIFEST_VERSION, manifest_path, row_schema

logger = logging.getLogger(__name__)

DEFAULT_TARGET_BYTES = 128 * 1024 * 1024


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
    rows = pa.FixedSizeListArray.from_arrays(pa.array(mels.reshape(-1)), frames)
    mel = pa.FixedSizeListArray.from_arrays(rows, n_mels)
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


def replace_atomically(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, then rename it to ``final`` (readers see the old file or the new one)."""
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
        replace_atomically(self._tmp, final)
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


# --- manifest ----------------------------------------------------------------


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
    replace_atomically(tmp, path)
    return sha256_bytes(body)
