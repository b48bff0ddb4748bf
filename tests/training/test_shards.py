"""Arrow shards: sizes, manifest, offline `datasets`, DataLoader streaming, lazy filters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from training.mel import MelConfig
from training.segment_embeddings import embedding_matrix, read_embeddings, write_embeddings
from training.shard_writer import (
    ShardWriter,
    add_shards_to_manifest,
    new_manifest,
    segment_rows,
    write_manifest,
)
from training.shards import (
    SegmentBatches,
    mel_array,
    open_datasets,
    open_shard,
    read_manifest,
    rows_for_recordings,
    shard_paths,
    verify_shards,
)

N_MELS, FRAMES = 64, 1024
ROW_BYTES = N_MELS * FRAMES * 2


def recording_batch(rid: int, segments: int) -> pa.RecordBatch:
    mels = np.full((segments, N_MELS, FRAMES), rid, dtype=np.float16)
    mels[:, :, 0] = np.arange(segments)[:, None]  # segment index in frame 0
    mels[:, 3, 5] = -1.5
    return segment_rows(
        recording_id=rid,
        recording_sha256=f"{rid:064x}",
        mels=mels,
        start_s=[i * 10.24 for i in range(segments)],
        is_partial=[i == segments - 1 for i in range(segments)],
        valid_frames=[FRAMES] * (segments - 1) + [300],
        captions=[f"caption {rid}/{i}" for i in range(segments)],
        caption_methods=["descriptors"] * segments,
        artist_ids=[rid * 10],
        licence="CC-BY-4.0",
    )


@pytest.fixture
def feature_root(tmp_path: Path) -> Path:
    root = tmp_path / "features" / MelConfig().hash()
    counts = {1: 3, 2: 4, 3: 2, 4: 5, 5: 1, 6: 3}
    with ShardWriter(
        root, n_mels=N_MELS, frames=FRAMES, target_bytes=int(7.5 * ROW_BYTES)
    ) as writer:
        for rid, n in counts.items():
            writer.add_recording(recording_batch(rid, n))
    manifest = new_manifest(MelConfig(), frames=FRAMES, segment_config={"hop_s": 10.24})
    recordings = {rid: {"segments": n} for rid, n in counts.items()}
    write_manifest(root, add_shards_to_manifest(manifest, writer.written, recordings))
    return root


def test_shards_roughly_equal_recordings_whole_manifest_hashes(feature_root: Path) -> None:
    manifest = read_manifest(feature_root)
    shards = manifest["shards"]
    assert [s["recording_ids"] for s in shards] == [[1, 2], [3, 4], [5, 6]]
    assert [s["rows"] for s in shards] == [7, 7, 4]
    assert manifest["total_rows"] == 18 and manifest["mel_config_hash"] == MelConfig().hash()
    assert manifest["mel_shape"] == [64, 1024]
    assert not list(feature_root.glob("*.tmp"))
    assert verify_shards(feature_root) == []
    path = feature_root / shards[0]["name"]
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    assert verify_shards(feature_root) and "sha256" in verify_shards(feature_root)[0]


def test_datasets_opens_every_shard_offline(
    feature_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    total = 0
    for path in shard_paths(feature_root):
        ds = datasets.Dataset.from_file(str(path))
        total += len(ds)
        numpy = ds.with_format("numpy", dtype=np.float16)
        row = numpy[0]
        mel = np.asarray(row["mel"])  # 2-D as stored: no reshape needed
        assert mel.shape == (64, int(row["frames"]))
        assert mel.dtype == np.float16 and mel[3, 5] == np.float16(-1.5)
        assert isinstance(row["caption"], str)
        assert np.asarray(numpy["mel"]).shape == (len(ds), 64, FRAMES)
    assert total == 18
    combined = open_datasets(feature_root)
    assert len(combined) == 18
    assert not [p for p in feature_root.iterdir() if p.name.startswith("cache-")]


def test_a_feature_set_with_flat_mels_is_refused_naming_the_fix(feature_root: Path) -> None:
    path = feature_root / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "version": 1}))
    with pytest.raises(ValueError, match="older fairchord.*run `fairchord featurize`"):
        read_manifest(feature_root)


def test_filter_reads_only_the_selected_rows(feature_root: Path) -> None:
    # Touching a shard maps it; only the rows taken are copied.
    before = pa.total_allocated_bytes()
    table = rows_for_recordings(feature_root, [2, 5])
    allocated = pa.total_allocated_bytes() - before
    assert table.num_rows == 5
    assert sorted(set(table.column("recording_id").to_pylist())) == [2, 5]
    assert allocated < 6 * ROW_BYTES  # 5 rows' mels (+ small columns), not 18 rows'
    mels = mel_array(table)
    assert mels.shape == (5, 64, 1024)
    assert mels[0, 0, 0] == 0 and mels[0, 0, 1] == 2
    # The shard with neither recording is not opened at all.
    assert rows_for_recordings(feature_root, [99]).num_rows == 0


def test_memory_mapped_open_is_zero_copy(feature_root: Path) -> None:
    before = pa.total_allocated_bytes()
    table = open_shard(shard_paths(feature_root)[0])
    view = mel_array(table.slice(0, 3))  # one record batch (recording 1): a view into the map
    assert pa.total_allocated_bytes() - before < ROW_BYTES
    assert view.shape == (3, 64, 1024) and not view.flags.writeable and not view.flags.owndata
    assert mel_array(table).shape == (7, 64, 1024)  # two batches: concatenated (a copy)


def test_dataloader_streams_batches_across_workers(feature_root: Path) -> None:
    ds = SegmentBatches(feature_root, batch_size=4)
    assert len(ds) == 18
    seen = []
    # spawn, not fork: the suite's Prefect harness runs threads that a fork would copy mid-flight.
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=2, multiprocessing_context="spawn"
    )
    for batch in loader:
        assert batch["mel"].dtype == torch.float16 and batch["mel"].shape[1:] == (64, 1024)
        assert batch["mel"].shape[0] <= 4
        for rid, seg, mel in zip(
            batch["recording_id"].tolist(),
            batch["segment_index"].tolist(),
            batch["mel"],
            strict=True,
        ):
            assert mel[0, 0].item() == seg and mel[1, 1].item() == rid
            seen.append((rid, seg))
    assert len(seen) == 18 and len(set(seen)) == 18


def test_snapshot_subset_shuffle_and_ranks(feature_root: Path) -> None:
    ids = [1, 4, 6]
    rank_rows = []
    for rank in range(2):
        ds = SegmentBatches(
            feature_root, batch_size=3, recording_ids=ids, shuffle=True, rank=rank, world_size=2
        )
        rows = [
            (r, s)
            for b in ds
            for r, s in zip(b["recording_id"].tolist(), b["segment_index"].tolist(), strict=True)
        ]
        assert {r for r, _ in rows} <= set(ids)
        rank_rows.append(rows)
    assert sorted(rank_rows[0] + rank_rows[1]) == sorted(
        [(1, i) for i in range(3)] + [(4, i) for i in range(5)] + [(6, i) for i in range(3)]
    )
    ds = SegmentBatches(feature_root, batch_size=3, recording_ids=ids, shuffle=True, seed=1)
    first = [b["segment_index"].tolist() for b in ds]
    ds.set_epoch(1)
    assert first != [b["segment_index"].tolist() for b in ds]


def test_embeddings_sibling_file(feature_root: Path) -> None:
    sha = "ab" * 32
    emb = np.eye(3, 512, dtype=np.float32)
    path = write_embeddings(
        feature_root,
        embedder_sha256=sha,
        recording_ids=[1, 1, 2],
        segment_indices=[0, 1, 0],
        embeddings=emb,
    )
    assert path.name == f"embeddings-{sha[:12]}.arrow"
    write_embeddings(
        feature_root,
        embedder_sha256=sha,
        recording_ids=[2, 3],
        segment_indices=[0, 0],
        embeddings=np.ones((2, 512), np.float32),
    )
    table = read_embeddings(feature_root, sha)
    keys = zip(table["recording_id"].to_pylist(), table["segment_index"].to_pylist(), strict=True)
    assert list(keys) == [
        (1, 0),
        (1, 1),
        (2, 0),
        (3, 0),
    ]
    matrix = embedding_matrix(read_embeddings(feature_root, sha, recording_ids=[2]))
    assert matrix.shape == (1, 512) and np.all(matrix == 1)
    import datasets

    assert len(datasets.Dataset.from_file(str(path))) == 4
    with pytest.raises(ValueError, match="512"):
        write_embeddings(
            feature_root,
            embedder_sha256=sha,
            recording_ids=[1],
            segment_indices=[0],
            embeddings=np.ones((1, 3)),
        )
    assert json.loads((feature_root / "manifest.json").read_text())["total_rows"] == 18
