"""Read a TensorFlow checkpoint (a "tensor bundle") without TensorFlow.

A bundle is two files: ``<prefix>.index``, a LevelDB-format sorted table that maps each
variable name to a ``BundleEntryProto`` (dtype, shape, shard, offset, size, crc32c), and
``<prefix>.data-00000-of-00001``, the raw little-endian tensor bytes. Both formats are
small and stable, so reading them directly keeps TensorFlow (and its numpy pin) out of
the project entirely: the weights are read once, in process, from the installed wheel.

Only what the MSD-musicnn checkpoint uses is supported: uncompressed table blocks, one
data shard, float32/int64 tensors. Anything else is a :class:`BundleFormatError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BundleEntry", "BundleFormatError", "read_bundle", "read_index"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER = 5  # compression type byte + crc32
# tensorflow/core/framework/types.proto
_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("<i4"),
    9: np.dtype("<i8"),
}


class BundleFormatError(ValueError):
    """The files are not a tensor bundle this reader understands."""


@dataclass(frozen=True)
class BundleEntry:
    name: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise BundleFormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise BundleFormatError("varint too long")


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message: varints as int, others as bytes."""
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            fields.append((number, value))
        elif wire == 2:
            length, pos = _varint(buf, pos)
            fields.append((number, buf[pos : pos + length]))
            pos += length
        elif wire == 5:
            fields.append((number, buf[pos : pos + 4]))
            pos += 4
        elif wire == 1:
            fields.append((number, buf[pos : pos + 8]))
            pos += 8
        else:
            raise BundleFormatError(f"unsupported protobuf wire type {wire}")
    if pos != len(buf):
        raise BundleFormatError("protobuf message overruns its buffer")
    return fields


def _shape(buf: bytes) -> tuple[int, ...]:
    dims: list[int] = []
    for number, value in _proto_fields(buf):
        if number == 2 and isinstance(value, bytes):  # TensorShapeProto.dim
            size = [v for n, v in _proto_fields(value) if n == 1]
            dims.append(int(size[0]) if size else 0)
    return tuple(dims)


def _entry(name: str, buf: bytes) -> BundleEntry:
    values: dict[int, int | bytes] = {}
    for number, value in _proto_fields(buf):
        if number == 7:
            raise BundleFormatError(f"{name}: sliced tensors are not supported")
        values[number] = value

    def varint(field: int) -> int:
        value = values.get(field, 0)
        if not isinstance(value, int):
            raise BundleFormatError(f"{name}: field {field} is not a varint")
        return value

    shape_buf = values.get(2, b"")
    return BundleEntry(
        name=name,
        dtype=varint(1),
        shape=_shape(shape_buf if isinstance(shape_buf, bytes) else b""),
        shard=varint(3),
        offset=varint(4),
        size=varint(5),
    )


def _block(data: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of one uncompressed table block."""
    if offset + size + _BLOCK_TRAILER > len(data):
        raise BundleFormatError("block handle points past the end of the index file")
    if data[offset + size] != 0:
        raise BundleFormatError("compressed table blocks are not supported")
    block = data[offset : offset + size]
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * restarts
    entries: list[tuple[bytes, bytes]] = []
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def read_index(index_path: str | Path) -> list[BundleEntry]:
    """Every tensor entry of a bundle's ``.index`` file, in key order (header excluded)."""
    data = Path(index_path).read_bytes()
    if len(data) < _FOOTER_SIZE:
        raise BundleFormatError(f"{index_path} is too short to be a tensor bundle index")
    footer = data[-_FOOTER_SIZE:]
    (magic,) = struct.unpack("<Q", footer[-8:])
    if magic != _TABLE_MAGIC:
        raise BundleFormatError(f"{index_path} is not a LevelDB table (bad magic)")
    _, pos = _varint(footer, 0)  # metaindex offset
    _, pos = _varint(footer, pos)  # metaindex size
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    entries: list[BundleEntry] = []
    for _, handle in _block(data, index_offset, index_size):
        offset, hpos = _varint(handle, 0)
        size, _ = _varint(handle, hpos)
        for key, value in _block(data, offset, size):
            if key:  # the empty key holds the BundleHeaderProto
                entries.append(_entry(key.decode("utf-8"), value))
    return entries


def read_bundle(prefix: str | Path) -> dict[str, np.ndarray]:
    """All tensors of the bundle at ``prefix`` (``prefix + ".index"`` and its data shard)."""
    prefix = str(prefix)
    entries = read_index(prefix + ".index")
    shards = {e.shard for e in entries}
    if shards - {0}:
        raise BundleFormatError(f"multi-shard bundles are not supported (shards {shards})")
    data = Path(prefix + ".data-00000-of-00001").read_bytes()
    tensors: dict[str, np.ndarray] = {}
    for entry in entries:
        dtype = _DTYPES.get(entry.dtype)
        if dtype is None:
            raise BundleFormatError(f"{entry.name}: unsupported dtype code {entry.dtype}")
        count = int(np.prod(entry.shape)) if entry.shape else 1
        if count * dtype.itemsize != entry.size or entry.offset + entry.size > len(data):
            raise BundleFormatError(
                f"{entry.name}: shape {entry.shape} does not fit {entry.size} bytes at "
                f"offset {entry.offset}"
            )
        raw = np.frombuffer(data, dtype=dtype, count=count, offset=entry.offset)
        tensors[entry.name] = raw.reshape(entry.shape).copy()
    return tensors
