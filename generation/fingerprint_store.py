"""The fingerprint table on disk: hash-partitioned, sorted, memory-mapped, digest-named.

At catalogue scale (10⁹ quads, ~20 GB) the reference quads cannot live in RAM. This
layout keeps them in a directory the gate maps instead of reads:

- ``part-PPPP.hashes.npy`` the partition's quad hashes, sorted (uint32);
- ``part-PPPP.rows.npy``   the rows in the same order, one record each: recording (int64),
                           anchor frame (int32), anchor bin and span (int16);
- ``part-PPPP.fence.npy``  every ``FENCE_STRIDE``-th hash, read into RAM on opening
                           (keyed by partition: 8 bytes per 128 quads, 62 MB at 10⁹);
- ``manifest.json``        format version, partition rule and count, row counts, every
                           file's size and sha256, the artists of every recording.

A quad goes to partition ``(hash × 0x9E3779B1 mod 2³²) >> (32 − bits)``: the top bits of
a multiplicative (Fibonacci) mix of the hash. The packed hash uses only 24 of its 32
bits, unevenly, so its own top bits would leave partitions empty; the mix spreads them.
A bucket (all rows of one hash) lies in one partition, sorted in the order the rows were
given. A lookup sorts the query hashes by (partition, hash), finds each bucket's bounds
by one binary search of all fences in RAM (for every query hash at once), then copies the
one block of ``FENCE_STRIDE`` hashes each bound lies in (512 bytes: one page read when
cold, where a binary search of the mapped column would fault on a page per level) and
counts inside it; the bounds are exact, and the rows go through the in-memory table's
rule (``fingerprint.bucket_pairs``). Rows are copied straight from the mappings, one
partition at a time, and scored in that order (the best group does not depend on it),
so ``match_quads`` returns the same ``Match`` as ``FingerprintIndex`` on the same rows;
``candidates`` puts them back in query order.

The table's digest is the sha256 of ``manifest.json``; the manifest holds every file's
sha256. Opening checks the manifest against the digest the caller recorded and every
file's presence and size (cheap); ``fairchord audit verify`` re-hashes every file.

Building never holds the table in RAM: rows are bucketed by partition into spill files
in batches of ``batch_rows``, then each partition is sorted alone (one partition of a
10⁹-quad table at 256 partitions is ~4 M rows, ~80 MB).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from generation.fingerprint import (
    Candidates,
    Match,
    Quads,
    QuadTable,
    best_group,
    bucket_pairs,
)
from provenance.index_files import FINGERPRINTS_MANIFEST as MANIFEST

FORMAT = "fairchord-fingerprints"
VERSION = 2  # 1 was the single in-memory ``fingerprints.npz``
PARTITION_RULE = "fibonacci-top-bits"
DEFAULT_PARTITION_BITS = 8
DEFAULT_BATCH_ROWS = 1 << 22
FENCE_STRIDE = 128
_MIX = np.uint32(0x9E3779B1)

# One stored row beside its hash; the spill files hold both.
ROW_DTYPE = np.dtype(
    [("recording", "<i8"), ("anchor_t", "<i4"), ("anchor_f", "<i2"), ("span", "<i2")]
)
SPILL_DTYPE = np.dtype(
    [
        ("hash", "<u4"),
        ("recording", "<i8"),
        ("anchor_t", "<i4"),
        ("anchor_f", "<i2"),
        ("span", "<i2"),
    ]
)


class FingerprintStoreError(ValueError):
    """The on-disk table is missing, altered, or not in a format this code reads."""


def partition_of(hashes: np.ndarray, bits: int) -> np.ndarray:
    """The partition (0 .. 2**bits - 1) of each quad hash."""
    mixed = np.asarray(hashes, dtype=np.uint32) * _MIX
    return (mixed >> np.uint32(32 - bits)).astype(np.int64) if bits else np.zeros_like(mixed)


def quad_rows(
    hashes: np.ndarray,
    recording: np.ndarray,
    anchor_t: np.ndarray,
    anchor_f: np.ndarray,
    span: np.ndarray,
) -> np.ndarray:
    """Columns of quads as one ``SPILL_DTYPE`` array, the unit :func:`write_store` takes."""
    rows = np.empty(np.asarray(hashes).size, dtype=SPILL_DTYPE)
    rows["hash"], rows["recording"], rows["anchor_t"] = hashes, recording, anchor_t
    rows["anchor_f"], rows["span"] = anchor_f, span
    return rows


def _part_names(p: int) -> tuple[str, str, str]:
    return f"part-{p:04d}.hashes.npy", f"part-{p:04d}.rows.npy", f"part-{p:04d}.fence.npy"


class _HashingWriter:
    """A file that hashes what is written to it (so no file is read back to hash it)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.digest.update(view)
        self.size += view.nbytes
        return self.handle.write(view)


def _save(path: Path, array: np.ndarray) -> dict[str, Any]:
    with path.open("wb") as handle:
        writer = _HashingWriter(handle)
        np.lib.format.write_array(writer, np.ascontiguousarray(array), allow_pickle=False)
    return {"bytes": writer.size, "sha256": writer.digest.hexdigest()}


def _spill(batches: Iterable[np.ndarray], spill_dir: Path, bits: int, batch_rows: int) -> list[int]:
    """Append each batch's rows to their partition's spill file; rows per partition."""
    n_parts = 1 << bits
    counts = [0] * n_parts
    handles = [(spill_dir / f"{p:04d}.spill").open("ab") for p in range(n_parts)]
    try:
        for batch in batches:
            batch = np.asarray(batch)
            if batch.dtype != SPILL_DTYPE:
                raise FingerprintStoreError(f"rows must be {SPILL_DTYPE}, got {batch.dtype}")
            for start in range(0, batch.size, batch_rows):
                chunk = batch[start : start + batch_rows]
                part = partition_of(chunk["hash"], bits)
                order = np.argsort(part, kind="stable")
                bounds = np.searchsorted(part[order], np.arange(n_parts + 1))
                chunk = chunk[order]
                for p in np.flatnonzero(np.diff(bounds)):
                    lo, hi = int(bounds[p]), int(bounds[p + 1])
                    chunk[lo:hi].tofile(handles[p])
                    counts[p] += hi - lo
    finally:
        for handle in handles:
            handle.close()
    return counts


def write_store(
    directory: Path,
    batches: Iterable[np.ndarray],
    artists: Mapping[int, Iterable[int]],
    *,
    partition_bits: int = DEFAULT_PARTITION_BITS,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> str:
    """Write quads (``SPILL_DTYPE`` batches, see :func:`quad_rows`) as a table in
    ``directory``; returns the table's digest (the manifest's sha256).

    The table is built beside ``directory`` and moved into place when complete; an
    existing table there is replaced.
    """
    if not 0 <= partition_bits <= 12:
        raise ValueError(f"partition_bits must be 0..12, got {partition_bits}")
    directory = Path(directory)
    building = directory.with_name(directory.name + f".building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    spill_dir = building / "spill"
    spill_dir.mkdir(parents=True)
    counts = _spill(batches, spill_dir, partition_bits, batch_rows)
    files: dict[str, dict[str, Any]] = {}
    partitions = []
    for p, count in enumerate(counts):
        spill_path = spill_dir / f"{p:04d}.spill"
        rows = np.fromfile(spill_path, dtype=SPILL_DTYPE) if count else None
        spill_path.unlink()
        if rows is None:
            partitions.append({"rows": 0, "files": []})
            continue
        rows = rows[np.argsort(rows["hash"], kind="stable")]
        stored = np.empty(rows.size, dtype=ROW_DTYPE)
        for name in ROW_DTYPE.names or ():
            stored[name] = rows[name]
        hashes_name, rows_name, fence_name = _part_names(p)
        files[hashes_name] = {"rows": count, **_save(building / hashes_name, rows["hash"])}
        fence = rows["hash"][::FENCE_STRIDE]
        files[fence_name] = {"rows": fence.size, **_save(building / fence_name, fence)}
        del rows
        files[rows_name] = {"rows": count, **_save(building / rows_name, stored)}
        partitions.append({"rows": count, "files": [hashes_name, rows_name, fence_name]})
    spill_dir.rmdir()
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "partition_rule": PARTITION_RULE,
        "partition_bits": partition_bits,
        "fence_stride": FENCE_STRIDE,
        "rows": int(sum(counts)),
        "row_dtype": ROW_DTYPE.descr,
        "partitions": partitions,
        "files": files,
        "artists": {
            str(int(r)): sorted(int(a) for a in ids)
            for r, ids in sorted(artists.items(), key=lambda kv: int(kv[0]))
        },
    }
    data = json.dumps(manifest, indent=1, sort_keys=True).encode()
    (building / MANIFEST).write_bytes(data)
    _replace_dir(building, directory)
    return hashlib.sha256(data).hexdigest()


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``, removing a table already there."""
    old = target.with_name(target.name + f".old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def read_manifest(directory: Path, expected_sha256: str) -> dict[str, Any]:
    """The manifest, once its sha256 equals ``expected_sha256`` and its format is known."""
    path = Path(directory) / MANIFEST
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FingerprintStoreError(f"{path} is unreadable: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise FingerprintStoreError(
            f"{path} is corrupt: sha256 {actual[:12]}, calibration recorded {expected_sha256[:12]}"
        )
    manifest = json.loads(data)
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise FingerprintStoreError(
            f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r}, "
            f"this code reads {FORMAT!r} version {VERSION}"
        )
    if manifest.get("partition_rule") != PARTITION_RULE:
        raise FingerprintStoreError(f"{path}: unknown rule {manifest.get('partition_rule')!r}")
    return dict(manifest)


class FingerprintStore(QuadTable):
    """A table written by :func:`write_store`, its partitions memory-mapped read-only."""

    def __init__(self, directory: Path, expected_sha256: str) -> None:
        """Open the table whose manifest hashes to ``expected_sha256``.

        Checks the manifest's digest and that every file it lists is there with its size
        and row count (re-hashing the files is ``audit verify``'s work); raises
        ``FingerprintStoreError`` otherwise.
        """
        self.directory = Path(directory)
        manifest = read_manifest(self.directory, expected_sha256)
        self.sha256 = expected_sha256
        self.partition_bits = int(manifest["partition_bits"])
        self.rows = int(manifest["rows"])
        self.artists = {int(r): [int(a) for a in ids] for r, ids in manifest["artists"].items()}
        files = manifest["files"]
        if manifest.get("fence_stride") != FENCE_STRIDE:
            raise FingerprintStoreError(f"{self.directory}: fence stride is not {FENCE_STRIDE}")
        self._hashes: list[np.ndarray | None] = []
        self._rows16: list[np.ndarray | None] = []
        # Every FENCE_STRIDE-long run of a partition's hashes, as rows of a view (no copy).
        self._windows: list[np.ndarray | None] = []
        fences = []
        for p, entry in enumerate(manifest["partitions"]):
            rows = int(entry["rows"])
            if not rows:
                self._hashes.append(None)
                self._rows16.append(None)
                self._windows.append(None)
                fences.append(np.zeros(0, np.uint64))
                continue
            hashes_name, rows_name, fence_name = _part_names(p)
            # Plain views of the mappings: indexing them skips np.memmap's per-call cost.
            hashes = self._open(hashes_name, files, np.dtype("<u4"), rows)
            self._hashes.append(hashes)
            self._rows16.append(self._open(rows_name, files, ROW_DTYPE, rows).view(np.complex128))
            self._windows.append(
                np.lib.stride_tricks.sliding_window_view(hashes, FENCE_STRIDE)
                if rows >= FENCE_STRIDE
                else None
            )
            fence = self._open(fence_name, files, np.dtype("<u4"), -(-rows // FENCE_STRIDE))
            fences.append((np.uint64(p) << np.uint64(32)) | fence.astype(np.uint64))
        if len(self._hashes) != 1 << self.partition_bits:
            raise FingerprintStoreError(f"{self.directory}: partition count disagrees")
        # Every partition's fence in RAM, keyed (partition, hash) so one search serves all.
        self._fence_keys = np.concatenate(fences)
        self._fence_start = np.concatenate([[0], np.cumsum([f.size for f in fences])])
        self._part_rows = np.array([int(e["rows"]) for e in manifest["partitions"]], np.int64)

    def _open(
        self, name: str, files: Mapping[str, Any], dtype: np.dtype[Any], rows: int
    ) -> np.ndarray:
        path = self.directory / name
        entry = files.get(name)
        if entry is None:
            raise FingerprintStoreError(f"{self.directory}: the manifest does not list {name}")
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise FingerprintStoreError(f"{path} is missing: {exc}") from exc
        if size != entry["bytes"]:
            raise FingerprintStoreError(
                f"{path} is corrupt: {size} bytes, the manifest lists {entry['bytes']}"
            )
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        if array.dtype != dtype or array.shape != (rows,):
            raise FingerprintStoreError(f"{path}: {array.dtype} {array.shape}, expected {rows}")
        return array.view(np.ndarray)

    def __len__(self) -> int:
        return self.rows

    def match_quads(self, query: Quads, *, exclude_recordings: Iterable[int] = ()) -> Match:
        if len(query) == 0 or len(self) == 0:
            return Match(0, None, 0, 1.0)
        found = self.candidates_by_partition(query.hashes)
        return best_group(query, found, exclude_recordings)

    def candidates(self, hashes: np.ndarray) -> Candidates:
        found = self.candidates_by_partition(hashes)
        # Query order, stored order within a bucket: the order the in-memory table gives.
        back = np.argsort(found.query, kind="stable")
        return Candidates(
            found.query[back],
            found.recording[back],
            found.anchor_t[back],
            found.anchor_f[back],
            found.span[back],
        )

    def candidates_by_partition(self, hashes: np.ndarray) -> Candidates:
        """The rows :meth:`candidates` gives, in (partition, hash) order rather than query
        order: what matching needs, as the best group does not depend on the order."""
        hashes = np.asarray(hashes, dtype=np.uint32)
        part = partition_of(hashes, self.partition_bits)
        keys = (part.astype(np.uint64) << np.uint64(32)) | hashes.astype(np.uint64)
        order = np.argsort(keys)
        keys, part, wanted = keys[order], part[order], hashes[order]
        spans = np.searchsorted(part, np.arange((1 << self.partition_bits) + 1))
        touched = [p for p in np.flatnonzero(np.diff(spans)) if self._hashes[p] is not None]
        lo, hi = self._bucket_bounds(keys, part, wanted, spans, touched)
        q_local, r_idx = bucket_pairs(lo, hi)
        # Rows gathered as 16-byte scalars (one copy each), straight from the mappings.
        found = np.empty(r_idx.size, np.complex128)
        spans = np.searchsorted(part[q_local], np.arange(spans.size))
        for p in touched:
            start, stop = spans[p], spans[p + 1]
            if stop > start:
                np.take(self._rows16[p], r_idx[start:stop], out=found[start:stop])
        rows = found.view(ROW_DTYPE)
        return Candidates(
            order[q_local], rows["recording"], rows["anchor_t"], rows["anchor_f"], rows["span"]
        )

    def _bucket_bounds(
        self,
        keys: np.ndarray,
        part: np.ndarray,
        wanted: np.ndarray,
        spans: np.ndarray,
        touched: list[int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each sorted query hash's bucket ``[lo, hi)`` in its partition's hash column.

        The fences in RAM give, for either bound, the block of ``FENCE_STRIDE`` hashes it
        falls in; one window of that many hashes is copied per bound (shifted back to
        end at the column's end where the block is the last, short one) and the bound
        is the window's start plus the hashes in it below (or at) the wanted one.
        """
        # Left and right bound of each query side by side: a partition's are contiguous.
        block = np.stack(
            [
                np.searchsorted(self._fence_keys, keys, side="left"),
                np.searchsorted(self._fence_keys, keys, side="right"),
            ],
            axis=1,
        )
        block = np.maximum(block - 1 - self._fence_start[part][:, None], 0)
        last = np.maximum(self._part_rows[part] - FENCE_STRIDE, 0)[:, None]
        start = np.minimum(block * FENCE_STRIDE, last)
        window = np.empty((keys.size, 2, FENCE_STRIDE), np.uint32)
        bounds = np.empty((keys.size, 2), np.int64)
        short = []
        for p in touched:
            a, b = spans[p], spans[p + 1]
            windows = self._windows[p]
            if windows is None:  # fewer rows than one window: search the column itself
                stored = self._hashes[p]
                assert stored is not None
                bounds[a:b, 0] = np.searchsorted(stored, wanted[a:b], side="left")
                bounds[a:b, 1] = np.searchsorted(stored, wanted[a:b], side="right")
                short.append((a, b))
                continue
            window[a:b] = windows[start[a:b]]
        lo = start[:, 0] + (window[:, 0] < wanted[:, None]).sum(axis=1)
        hi = start[:, 1] + (window[:, 1] <= wanted[:, None]).sum(axis=1)
        for a, b in short:
            lo[a:b], hi[a:b] = bounds[a:b, 0], bounds[a:b, 1]
        return lo, hi
