"""The training data of one snapshot: member recordings' shard rows only, with text conditioning.

:func:`load_snapshot_segments` reads rows through
:func:`training.shards.rows_for_recordings` (F's recording-id filter: shards
that hold no member are never opened, and of the others only the member rows'
mels are taken), checks each row against the snapshot (recording id *and*
sha256), and records every ``(recording_id, segment_index)`` it materialises
in a :class:`MaterializationLedger` — so a test (or an auditor) can prove that
rows of ineligible recordings never reached the model.

Conditioning is the CLAP text embedding of each row's caption, computed once
per unique caption with any object that has ``embed_text(list[str]) ->
np.ndarray [n, 512]`` (:class:`training.clap_embedder.ClapEmbedder`, or a
stand-in in tests).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from training import shards
from training.distributed import ranks_from_env

logger = logging.getLogger(__name__)


class TextEmbedder(Protocol):
    def embed_text(self, texts: list[str]) -> np.ndarray: ...


@dataclass
class MaterializationLedger:
    """Every (recording_id, segment_index) row read into memory for training, in order."""

    rows: list[tuple[int, int]] = field(default_factory=list)

    def record(self, recording_ids: Iterable[int], segment_indices: Iterable[int]) -> None:
        self.rows.extend(
            (int(r), int(s)) for r, s in zip(recording_ids, segment_indices, strict=True)
        )

    def recording_ids(self) -> set[int]:
        return {r for r, _ in self.rows}


@dataclass
class SegmentData:
    """Segments in memory: log-mels (float16), valid frame counts, conditioning, ids."""

    mels: torch.Tensor  # float16 [N, n_mels, frames] (natural-log magnitude mel)
    valid_frames: torch.Tensor  # int64 [N]
    cond: torch.Tensor  # float32 [N, 512], L2-normalised CLAP text embeddings of the captions
    recording_ids: torch.Tensor  # int64 [N]
    segment_index: torch.Tensor  # int64 [N]
    captions: list[str]
    artist_ids: list[list[int]]

    def __post_init__(self) -> None:
        n = self.mels.shape[0]
        sizes = {
            "valid_frames": self.valid_frames.shape[0],
            "cond": self.cond.shape[0],
            "recording_ids": self.recording_ids.shape[0],
            "segment_index": self.segment_index.shape[0],
            "captions": len(self.captions),
            "artist_ids": len(self.artist_ids),
        }
        bad = {k: v for k, v in sizes.items() if v != n}
        if bad:
            raise ValueError(f"segment data has {n} mels but {bad}")

    def __len__(self) -> int:
        return int(self.mels.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray) -> SegmentData:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return SegmentData(
            mels=self.mels[idx],
            valid_frames=self.valid_frames[idx],
            cond=self.cond[idx],
            recording_ids=self.recording_ids[idx],
            segment_index=self.segment_index[idx],
            captions=[self.captions[i] for i in idx.tolist()],
            artist_ids=[self.artist_ids[i] for i in idx.tolist()],
        )

    def crop_batch(
        self,
        indices: Sequence[int] | np.ndarray,
        *,
        crop_frames: int,
        generator: torch.Generator | None = None,
        random: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mel [B, 1, n_mels, crop] float32, mask [B, 1, 1, crop], cond [B, 512])``.

        The crop start is uniform over positions that keep the crop inside the
        valid (real-audio) frames; short partial segments start at 0 and the
        mask marks the padding. ``random=False`` crops from frame 0.
        """
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        total = self.mels.shape[-1]
        valid = self.valid_frames[idx].clamp(max=total)
        room = (valid - crop_frames).clamp(min=0)
        if random:
            u = torch.rand(len(idx), generator=generator, dtype=torch.float64)
            starts = (u * (room + 1).double()).floor().long().clamp(max=room)
        else:
            starts = torch.zeros(len(idx), dtype=torch.long)
        pad = max(0, crop_frames - total)
        out = torch.empty((len(idx), 1, self.mels.shape[1], crop_frames), dtype=torch.float32)
        mask = torch.zeros((len(idx), 1, 1, crop_frames), dtype=torch.float32)
        for row, (i, s) in enumerate(zip(idx.tolist(), starts.tolist(), strict=True)):
            piece = self.mels[i, :, s : s + crop_frames].float()
            if pad:
                piece = torch.nn.functional.pad(
                    piece, (0, crop_frames - piece.shape[-1]), value=float(piece.min())
                )
            out[row, 0] = piece
            mask[row, 0, 0, : max(0, int(valid[row]) - s)] = 1.0
        return out, mask, self.cond[idx]


def split_by_recording(
    recording_ids: Iterable[int], *, val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """``(train_ids, val_ids)``: whole recordings held back, chosen by a seeded hash of the id.

    Deterministic for a given id set and seed (and independent of row order),
    so the validation set — and the eval's "real held-back audio" — is stable
    across runs and resumes. At least one recording is held back when
    ``val_fraction > 0`` and there are two or more recordings.
    """
    ids = sorted({int(r) for r in recording_ids})
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(len(ids) * val_fraction))
    if val_fraction > 0 and len(ids) >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, max(0, len(ids) - 1))

    def rank(rid: int) -> str:
        return hashlib.sha256(f"fairchord-val:{seed}:{rid}".encode()).hexdigest()

    val = sorted(sorted(ids, key=rank)[:n_val])
    held = set(val)
    return [r for r in ids if r not in held], val


def embed_captions(embedder: TextEmbedder, captions: Sequence[str]) -> torch.Tensor:
    """``[len(captions), D]`` float32: one ``embed_text`` call over the unique captions."""
    unique = sorted(set(captions))
    if not unique:
        return torch.zeros((0, 512), dtype=torch.float32)
    vectors = np.asarray(embedder.embed_text(list(unique)), dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(unique):
        raise ValueError(
            f"embed_text returned shape {vectors.shape} for {len(unique)} captions; "
            "expected [n, dim]"
        )
    position = {c: i for i, c in enumerate(unique)}
    return torch.from_numpy(vectors[[position[c] for c in captions]].copy())


def load_snapshot_segments(
    feature_root: str | Path,
    members: Mapping[int, str],
    *,
    embedder: TextEmbedder,
    ledger: MaterializationLedger | None = None,
    expected_mel_config_hash: str | None = None,
) -> SegmentData:
    """The shard rows of snapshot ``members`` (recording id → sha256), with caption embeddings.

    Raises if the feature set was made with another mel config, if a row's
    recording is not a member, or if its sha256 differs from the snapshot's
    (the shards would describe other audio than the snapshot froze).
    """
    manifest = shards.read_manifest(feature_root)
    if expected_mel_config_hash and manifest["mel_config_hash"] != expected_mel_config_hash:
        raise ValueError(
            f"feature set {feature_root} has mel config {manifest['mel_config_hash']}, "
            f"expected {expected_mel_config_hash}"
        )
    member_ids = {int(r) for r in members}
    covered = {int(r) for r in manifest["recordings"]}
    missing = sorted(member_ids - covered)
    if missing:
        logger.warning(
            "%d snapshot members have no featurized segments (ids %s…); they add no rows",
            len(missing),
            missing[:10],
        )
    table = shards.rows_for_recordings(feature_root, member_ids)
    rids = table.column("recording_id").to_numpy()
    segs = table.column("segment_index").to_numpy()
    shas = table.column("recording_sha256").to_pylist()
    # Defence in depth: the filter must only have returned members, with the frozen content.
    for rid, sha in zip(rids.tolist(), shas, strict=True):
        if rid not in member_ids:
            raise RuntimeError(f"shard reader returned recording {rid}, not a snapshot member")
        if sha != members[rid]:
            raise ValueError(
                f"recording {rid}: shard sha256 {sha} differs from the snapshot's {members[rid]}"
            )
    mels = torch.from_numpy(np.array(shards.mel_array(table), dtype=np.float16, copy=True))
    if ledger is not None:
        ledger.record(rids.tolist(), segs.tolist())
    captions = table.column("caption").to_pylist()
    data = SegmentData(
        mels=mels,
        valid_frames=torch.from_numpy(table.column("valid_frames").to_numpy().astype(np.int64)),
        cond=embed_captions(embedder, captions),
        recording_ids=torch.from_numpy(rids.astype(np.int64)),
        segment_index=torch.from_numpy(segs.astype(np.int64)),
        captions=captions,
        artist_ids=table.column("artist_ids").to_pylist(),
    )
    logger.info(
        "loaded %d segments of %d member recordings (%d unique captions)",
        len(data),
        len(set(rids.tolist())),
        len(set(captions)),
    )
    return data


def split_segments(
    data: SegmentData, *, val_fraction: float, seed: int
) -> tuple[SegmentData, SegmentData]:
    """Split loaded segments into (train, validation) by whole recordings."""
    train_ids, val_ids = split_by_recording(
        data.recording_ids.tolist(), val_fraction=val_fraction, seed=seed
    )
    held = set(val_ids)
    rids = data.recording_ids.tolist()
    train_rows = [i for i, r in enumerate(rids) if r not in held]
    val_rows = [i for i, r in enumerate(rids) if r in held]
    return data.subset(train_rows), data.subset(val_rows)


def load_run_segments(
    feature_root: str | Path,
    members: Mapping[int, str],
    *,
    embedder: TextEmbedder,
    mel_config_hash: str,
    out_dir: Path,
    training_run_id: int | None,
    members_digest: str,
    val_fraction: float,
    seed: int,
) -> tuple[SegmentData, SegmentData]:
    """The (train, validation) segments of a training run: the one loader of the train flow
    and of ``python -m training.torchrun --spec``.

    Every row read is logged in ``out_dir/materialised.json`` (by rank 0 under torchrun:
    every rank reads the same rows); a row of a non-member stops the run before it trains.
    """
    ledger = MaterializationLedger()
    data = load_snapshot_segments(
        feature_root,
        members,
        embedder=embedder,
        ledger=ledger,
        expected_mel_config_hash=mel_config_hash,
    )
    outside = sorted(ledger.recording_ids() - {int(r) for r in members})
    if outside:  # cannot happen through the filtered reader; checked anyway, loudly
        raise RuntimeError(f"rows of non-members {outside} were materialised; refusing to train")
    out_dir.mkdir(parents=True, exist_ok=True)
    if ranks_from_env().is_main:
        write_ledger(out_dir / "materialised.json", ledger, training_run_id, members_digest)
    return split_segments(data, val_fraction=val_fraction, seed=seed)


def write_ledger(
    path: Path, ledger: MaterializationLedger, training_run_id: int | None, members_digest: str
) -> None:
    """The run's ``materialised.json``: every row read, and the recordings they came from."""
    path.write_text(
        json.dumps(
            {
                "training_run_id": training_run_id,
                "members_digest": members_digest,
                "rows": ledger.rows,
                "recordings": sorted(ledger.recording_ids()),
            }
        ),
        encoding="utf-8",
    )
