"""The on-disk fingerprint table: the same matches as the in-memory one, built in batches,
and named by a digest that loading and the gate hold it to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import Session

from generation.fingerprint import Candidates, FingerprintIndex, quads
from generation.fingerprint_store import (
    MANIFEST,
    FingerprintStore,
    FingerprintStoreError,
    partition_of,
    quad_rows,
    write_store,
)
from generation.index import GateUnavailable, load_index
from tests.common.audio import CLIP_SR as SR
from tests.common.audio import melody, pitch_shift
from tests.common.gate import StandInEmbedder, build_demo_index, make_run

ARTISTS = {1: [10], 2: [10], 3: [20], 4: [30], 5: [40], 6: [40]}


@pytest.fixture(scope="module")
def reference() -> FingerprintIndex:
    return FingerprintIndex.build({rec: melody(rec) for rec in ARTISTS}, ARTISTS)


def _rows(index: FingerprintIndex) -> np.ndarray:
    return quad_rows(index.hashes, index.recording, index.anchor_t, index.anchor_f, index.span)


def _write(index: FingerprintIndex, directory: Path, **kwargs: int) -> str:
    return write_store(directory, [_rows(index)], index.artists, **kwargs)


def _queries() -> dict[str, np.ndarray]:
    noise = np.random.default_rng(7).standard_normal(10 * SR).astype(np.float32)
    return {
        "crop": melody(3)[2 * SR : 12 * SR],
        "pitch_+2st": pitch_shift(melody(5)[: 10 * SR], 2),
        "noisy": melody(1)[5 * SR : 15 * SR] + 0.01 * noise,
        "other": melody(100)[: 10 * SR],
        "silence": np.zeros(10 * SR, np.float32),
    }


def _same(a: Candidates, b: Candidates) -> bool:
    fields = ("query", "recording", "anchor_t", "anchor_f", "span")
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in fields)


@pytest.mark.parametrize("bits", [0, 3, 8])
def test_matches_equal_the_in_memory_table(
    reference: FingerprintIndex, tmp_path: Path, bits: int
) -> None:
    store = FingerprintStore(
        tmp_path / "fp", _write(reference, tmp_path / "fp", partition_bits=bits)
    )
    assert len(store) == len(reference) and store.artists == reference.artists
    for name, wave in _queries().items():
        query = quads(wave, probe=True)
        assert _same(store.candidates(query.hashes), reference.candidates(query.hashes)), name
        assert store.match_quads(query) == reference.match_quads(query), name
        excluded = store.match_quads(query, exclude_recordings=[3, 5])
        assert excluded == reference.match_quads(query, exclude_recordings=[3, 5]), name
    assert store.match(_queries()["crop"]).recording_id == 3
    assert store.match(_queries()["pitch_+2st"]).recording_id == 5


def test_build_from_more_rows_than_one_spill_batch(
    reference: FingerprintIndex, tmp_path: Path
) -> None:
    """Rows arrive in many batches, each spilled in smaller chunks; the table is the same."""
    rows = _rows(reference)
    in_one = _write(reference, tmp_path / "one")
    batches = np.array_split(rows, 7)
    in_many = write_store(tmp_path / "many", batches, reference.artists, batch_rows=1000)
    assert len(rows) > 10 * 1000
    assert in_many == in_one  # the same files, so the same manifest and digest
    store = FingerprintStore(tmp_path / "many", in_many)
    manifest = json.loads((tmp_path / "many" / MANIFEST).read_text())
    assert sum(p["rows"] for p in manifest["partitions"]) == len(reference) == len(store)
    query = quads(_queries()["noisy"], probe=True)
    assert store.match_quads(query) == reference.match_quads(query)
    assert not list(tmp_path.glob("*.building-*"))  # the spill files are gone


def test_buckets_across_fence_blocks_are_found_whole(tmp_path: Path) -> None:
    """Buckets from 1 to 1 000 rows, crossing the fence's blocks: the same rows, the same
    drops over MAX_BUCKET, as a binary search of the whole column."""
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 1000, 300)
    hashes = np.repeat(rng.choice(1 << 24, sizes.size, replace=False), sizes).astype(np.uint32)
    n = hashes.size
    table = FingerprintIndex(
        hashes,
        rng.integers(1, 50, n),
        rng.integers(0, 5000, n).astype(np.int32),
        rng.integers(0, 80, n).astype(np.int16),
        rng.integers(6, 96, n).astype(np.int16),
        {r: [r] for r in range(1, 50)},
    )
    store = FingerprintStore(tmp_path / "fp", _write(table, tmp_path / "fp", partition_bits=2))
    wanted = np.concatenate([np.unique(hashes), rng.integers(0, 1 << 24, 500).astype(np.uint32)])
    wanted = np.concatenate([wanted, [0, np.iinfo(np.uint32).max]]).astype(np.uint32)
    assert _same(store.candidates(wanted), table.candidates(wanted))


def test_lookup_in_partition_order_holds_the_same_rows(tmp_path: Path) -> None:
    """Long partitions (fence windows, the last one shifted back to end at the column's
    end) and a short one (searched directly) give the in-memory table's rows, in
    (partition, hash) order for matching and in query order through ``candidates``."""
    rng = np.random.default_rng(5)
    distinct = rng.choice(1 << 24, 80, replace=False).astype(np.uint32)
    part = partition_of(distinct, 3)
    distinct = np.concatenate([distinct[part != 5], distinct[part == 5][:1]])
    sizes = rng.integers(1, 300, distinct.size)
    sizes[-1] = 3  # partition 5: three rows, fewer than one window
    hashes = np.repeat(distinct, sizes)
    n = hashes.size
    table = FingerprintIndex(
        hashes,
        rng.integers(1, 50, n),
        rng.integers(0, 5000, n).astype(np.int32),
        rng.integers(0, 80, n).astype(np.int16),
        rng.integers(6, 96, n).astype(np.int16),
        {r: [r] for r in range(1, 50)},
    )
    store = FingerprintStore(tmp_path / "fp", _write(table, tmp_path / "fp", partition_bits=3))
    rows = np.bincount(partition_of(hashes, 3), minlength=8)
    assert rows[5] == 3 and (rows[rows != 3] > 128).all()
    wanted = np.concatenate([distinct, distinct[::3], rng.integers(0, 1 << 24, 200)])
    wanted = rng.permutation(np.append(wanted, [0, np.iinfo(np.uint32).max]).astype(np.uint32))
    expected = table.candidates(wanted)
    by_partition = store.candidates_by_partition(wanted)
    keys = partition_of(wanted, 3)[by_partition.query] * (1 << 32) + wanted[by_partition.query]
    assert (np.diff(keys) >= 0).all()
    back = np.argsort(by_partition.query, kind="stable")
    fields = ("query", "recording", "anchor_t", "anchor_f", "span")
    assert all(np.array_equal(getattr(by_partition, f)[back], getattr(expected, f)) for f in fields)
    assert _same(store.candidates(wanted), expected)


def _first_partition(directory: Path) -> Path:
    return sorted(directory.glob("part-*.rows.npy"))[0]


def test_an_edited_partition_changes_the_digest_and_fails_closed(
    reference: FingerprintIndex, tmp_path: Path
) -> None:
    directory = tmp_path / "fp"
    sha = _write(reference, directory)
    # Editing a row yields another table: another digest.
    rows = _rows(reference)
    rows["recording"][len(rows) // 2] = 999
    assert write_store(tmp_path / "edited", [rows], reference.artists) != sha
    # A partition that grew or shrank is caught on opening, by its size.
    target = _first_partition(directory)
    original = target.read_bytes()
    target.write_bytes(original + b"\0" * 16)
    with pytest.raises(FingerprintStoreError, match="corrupt"):
        FingerprintStore(directory, sha)
    target.unlink()
    with pytest.raises(FingerprintStoreError, match="missing"):
        FingerprintStore(directory, sha)
    # Re-listing the edited file in the manifest changes the manifest's digest.
    target.write_bytes(original[:-16] + b"\xff" * 16)
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["files"][target.name]["sha256"] = "0" * 64
    (directory / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(FingerprintStoreError, match="corrupt: sha256"):
        FingerprintStore(directory, sha)


def test_the_gate_fails_closed_on_a_changed_partition(session: Session) -> None:
    embedder = StandInEmbedder()
    run = make_run(session)
    index = build_demo_index(session, embedder, run)
    assert index.path is not None and isinstance(index.fingerprints, FingerprintStore)
    target = _first_partition(index.path / "fingerprints")
    target.write_bytes(target.read_bytes()[:-2])
    with pytest.raises(GateUnavailable, match="fingerprints are unusable: .* corrupt"):
        load_index(session, run)


def test_indexes_calibrated_before_keep_their_npz(session: Session) -> None:
    from generation.index import _load_fingerprints
    from provenance.hashing import sha256_bytes
    from provenance.index_files import FINGERPRINTS_FILE

    embedder = StandInEmbedder()
    index = build_demo_index(session, embedder, make_run(session))
    assert index.path is not None
    old = FingerprintIndex.build({1: melody(1)}, {1: [10]})
    data = old.to_bytes()
    (index.path / FINGERPRINTS_FILE).write_bytes(data)
    loaded = _load_fingerprints(index.path, {"fingerprint": {"sha256": sha256_bytes(data)}})
    assert isinstance(loaded, FingerprintIndex) and len(loaded) == len(old)
    with pytest.raises(GateUnavailable, match="recalibrate"):
        _load_fingerprints(index.path, {"fingerprint": {"sha256": "0" * 64, "layout": "lmdb"}})
