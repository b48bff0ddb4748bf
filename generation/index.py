"""The similarity gate's index over one training run's snapshot segment embeddings.

Layout under ``fairchord_home()/runs/<run_id>/gate-index/<sha256[:12]>/``:

- ``vectors.faiss``  exact ``IndexFlatIP`` over L2-normalised segment embeddings;
- ``ids.json``       row → (recording id, segment index, artist party ids), plus the
                     training run id and embedder sha256 the vectors belong to;
- ``meta.json``      embedder sha256, run id, snapshot digest, file digests, thresholds;
- ``fingerprints/``  the snapshot's landmark fingerprints, hash-partitioned and
                     memory-mapped (``generation.fingerprint_store``), written by
                     calibration; its manifest's sha256 is kept in the thresholds
                     (indexes calibrated earlier keep one ``fingerprints.npz``);
- ``artist_model.npz`` and ``melody.npz``, the calibrated artist model and the
                     snapshot's chroma melody index (``generation.melody``), likewise.

``EmbeddingIndex.sha256`` covers the vectors and the id map only (sha256 over
``"vectors.faiss:<sha>\\nids.json:<sha>\\n"``), never the thresholds: calibration
rewrites thresholds in ``meta.json`` and in ``EmbeddingIndex.thresholds`` without
changing the index identity. Loading re-hashes both files and refuses any mismatch, and
checks the fingerprints' manifest against the sha256 the calibrated thresholds record
(with every partition file's size; ``audit verify`` re-hashes the partitions).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from generation.artist_model import ArtistModel
from generation.fingerprint import FingerprintIndex, QuadTable
from generation.fingerprint_store import (
    FingerprintStore,
    FingerprintStoreError,
    quad_rows,
    write_store,
)
from generation.index_store import index_location, publish_changes, working_dir
from generation.melody import MelodyIndex
from provenance.chain_facts import thresholds_problem
from provenance.gate_indexes import (
    gate_index_by_sha256,
    gate_index_embedders,
    newest_gate_index,
    record_gate_index,
    record_thresholds,
)
from provenance.hashing import sha256_bytes, sha256_file
from provenance.index_files import (
    ARTIST_MODEL_FILE,
    FINGERPRINTS_DIR,
    FINGERPRINTS_FILE,
    FINGERPRINTS_LAYOUT,
    IDS_FILE,
    MELODY_FILE,
    META_FILE,
    VECTORS_FILE,
    combined_sha256,
)
from provenance.models import Checkpoint, EmbeddingIndex, TrainingRun
from provenance.settings import fairchord_home
from provenance.training_runs import checkpoint_by_id, run_by_id, run_of_checkpoint

log = logging.getLogger(__name__)

# The command that builds a run's gate index for the gate's embedder and calibrates it (the
# CLI always calibrates with the outside-music cohort, which builds the index first).
BUILD_INDEX_COMMAND = "fairchord gate calibrate"


class GateUnavailable(RuntimeError):
    """The gate cannot decide (no/corrupt/mismatched index, embedder error, bad scores).

    Callers must treat this as "do not release the audio": the gate fails closed.
    """


@dataclass
class GateIndex:
    """A loaded, verified gate index."""

    index: Any  # faiss.Index
    recording_ids: np.ndarray  # [n] int64
    segment_index: np.ndarray  # [n] int64
    artist_ids: list[list[int]]  # per row, the recording's artist party ids
    embedder_sha256: str
    training_run_id: int
    snapshot_digest: str | None
    sha256: str
    thresholds: dict[str, Any] = field(default_factory=dict)
    row_id: int | None = None
    path: Path | None = None
    fingerprints: QuadTable | None = None
    artist_model: ArtistModel | None = None
    melody: MelodyIndex | None = None

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def vectors(self) -> np.ndarray:
        """All stored vectors [n, D] (exact; reconstructed from the flat index)."""
        return np.asarray(self.index.reconstruct_n(0, self.ntotal), dtype=np.float32)


def gate_index_root(training_run_id: int) -> Path:
    return fairchord_home() / "runs" / str(training_run_id) / "gate-index"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise ValueError(
            "embeddings contain zero, NaN or infinite vectors; expected finite, non-zero"
        )
    return np.ascontiguousarray(array / norms)


def build_index_for_run(
    session: Session,
    training_run_id: int,
    *,
    embeddings: np.ndarray,
    recording_ids: Sequence[int] | np.ndarray,
    segment_index: Sequence[int] | np.ndarray,
    artist_ids: Sequence[Sequence[int]],
    embedder_sha256: str,
    snapshot_digest: str | None,
    thresholds: dict[str, Any] | None = None,
) -> EmbeddingIndex:
    """Build and save the exact gate index for a run from the caller's segment embeddings.

    Rows are one per (recording, segment); ``artist_ids[i]`` are the artist party ids of
    row i's recording. Writes the files, an ``EmbeddingIndex`` row and an audit event.
    Rebuilding identical content for the same run returns the existing row.
    """
    import faiss

    run = run_by_id(session, training_run_id)
    if run is None:
        raise ValueError(f"training run {training_run_id} does not exist")
    emb = np.asarray(embeddings)
    n = emb.shape[0] if emb.ndim == 2 else -1
    if emb.ndim != 2 or n == 0:
        raise ValueError(f"embeddings must be a non-empty [n, D] array, got shape {emb.shape}")
    if not (len(recording_ids) == len(segment_index) == len(artist_ids) == n):
        raise ValueError(
            f"recording_ids ({len(recording_ids)}), segment_index ({len(segment_index)}) and "
            f"artist_ids ({len(artist_ids)}) must each have one entry per embedding ({n})"
        )
    if run.members_digest is not None and snapshot_digest != run.members_digest:
        raise ValueError(
            f"snapshot digest {snapshot_digest!r} does not match run {training_run_id}'s "
            f"members_digest {run.members_digest!r}"
        )
    vectors = l2_normalise(emb)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)

    ids_doc = {
        "training_run_id": training_run_id,
        "embedder_sha256": embedder_sha256,
        "dim": int(vectors.shape[1]),
        "recording_id": [int(r) for r in recording_ids],
        "segment_index": [int(s) for s in segment_index],
        "artist_ids": [sorted(int(a) for a in ids) for ids in artist_ids],
    }
    ids_bytes = json.dumps(ids_doc, sort_keys=True, separators=(",", ":")).encode()
    vec_bytes = faiss.serialize_index(index).tobytes()
    vec_sha = sha256_bytes(vec_bytes)
    ids_sha = sha256_bytes(ids_bytes)
    sha = combined_sha256(vec_sha, ids_sha)

    existing = gate_index_by_sha256(session, sha)
    if existing is not None:
        return existing

    directory = gate_index_root(training_run_id) / sha[:12]
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(directory / VECTORS_FILE, vec_bytes)
    _write_atomic(directory / IDS_FILE, ids_bytes)
    meta = {
        "training_run_id": training_run_id,
        "embedder_sha256": embedder_sha256,
        "snapshot_digest": snapshot_digest,
        "index_type": "IndexFlatIP",
        "vectors": n,
        "files": {VECTORS_FILE: vec_sha, IDS_FILE: ids_sha},
        "sha256": sha,
        "thresholds": thresholds or {},
    }
    _write_atomic(directory / META_FILE, json.dumps(meta, indent=2, sort_keys=True).encode())

    row = record_gate_index(
        session,
        training_run_id=training_run_id,
        embedder_sha256=embedder_sha256,
        sha256=sha,
        uri=index_location(directory, training_run_id),
        vectors=n,
        snapshot_digest=snapshot_digest,
        thresholds=thresholds,
    )
    log.info("gate index %s for run %d: %d vectors", sha[:12], training_run_id, n)
    return row


def store_thresholds(session: Session, row: EmbeddingIndex, thresholds: dict[str, Any]) -> None:
    """Record calibrated thresholds in meta.json and on the row (index sha256 unchanged)."""
    directory = working_dir(row.uri)
    meta_path = directory / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["thresholds"] = dict(thresholds)
    _write_atomic(meta_path, json.dumps(meta, indent=2, sort_keys=True).encode())
    publish_changes(row.uri, directory, [meta_path])
    record_thresholds(session, row, thresholds)


def store_fingerprints(row: EmbeddingIndex, fingerprints: FingerprintIndex) -> str:
    """Write the snapshot's fingerprints beside the vectors as a partitioned table; returns
    its digest (the sha256 of its manifest).

    The caller records the digest in the thresholds (``thresholds["fingerprint"]["sha256"]``,
    with ``"layout": FINGERPRINTS_LAYOUT``), which is what loading verifies the table
    against.
    """
    rows = quad_rows(
        fingerprints.hashes,
        fingerprints.recording,
        fingerprints.anchor_t,
        fingerprints.anchor_f,
        fingerprints.span,
    )
    directory = working_dir(row.uri)
    digest = write_store(directory / FINGERPRINTS_DIR, [rows], fingerprints.artists)
    publish_changes(row.uri, directory, [directory / FINGERPRINTS_DIR])
    return digest


def store_artist_model(row: EmbeddingIndex, model: ArtistModel) -> str:
    """Write the calibrated artist model beside the vectors; returns its sha256 (the caller
    records it in ``thresholds["artist_model"]["sha256"]``)."""
    data = model.to_bytes()
    directory = working_dir(row.uri)
    _write_atomic(directory / ARTIST_MODEL_FILE, data)
    publish_changes(row.uri, directory, [directory / ARTIST_MODEL_FILE])
    return sha256_bytes(data)


def store_melody(row: EmbeddingIndex, data: bytes) -> str:
    """Write the snapshot's serialised melody index beside the vectors; returns its sha256
    (the caller records it in ``thresholds["melody"]["sha256"]``)."""
    directory = working_dir(row.uri)
    _write_atomic(directory / MELODY_FILE, data)
    publish_changes(row.uri, directory, [directory / MELODY_FILE])
    return sha256_bytes(data)


def _verified_bytes(directory: Path, name: str, entry: Any, what: str) -> bytes | None:
    """The bytes of a calibration file whose sha256 the thresholds record, or None when the
    thresholds have no such entry."""
    if entry is None:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise GateUnavailable(f"{what} thresholds are malformed: {entry!r}")
    path = directory / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GateUnavailable(f"{what} at {path} is unreadable: {exc}") from exc
    actual = sha256_bytes(data)
    if actual != entry["sha256"]:
        raise GateUnavailable(
            f"{what} at {path} is corrupt: sha256 {actual[:12]}, calibration recorded "
            f"{entry['sha256'][:12]}"
        )
    return data


def _load_artist_model(directory: Path, thresholds: dict[str, Any]) -> ArtistModel | None:
    data = _verified_bytes(
        directory, ARTIST_MODEL_FILE, thresholds.get("artist_model"), "the artist model"
    )
    if data is None:
        return None
    try:
        return ArtistModel.from_bytes(data)
    except Exception as exc:
        raise GateUnavailable(f"the artist model in {directory} cannot be read: {exc}") from exc


def _load_melody(directory: Path, thresholds: dict[str, Any]) -> MelodyIndex | None:
    data = _verified_bytes(directory, MELODY_FILE, thresholds.get("melody"), "the melody index")
    if data is None:
        return None
    try:
        return MelodyIndex.from_bytes(data)
    except Exception as exc:
        raise GateUnavailable(f"the melody index in {directory} cannot be read: {exc}") from exc


def _load_fingerprints(directory: Path, thresholds: dict[str, Any]) -> QuadTable | None:
    """The calibrated fingerprint table, memory-mapped once its manifest's digest matches
    the thresholds (or, for indexes calibrated before the partitioned layout, the
    ``fingerprints.npz`` read whole and re-hashed)."""
    entry = thresholds.get("fingerprint")
    if isinstance(entry, dict) and entry.get("layout") is not None:
        if entry["layout"] != FINGERPRINTS_LAYOUT or not isinstance(entry.get("sha256"), str):
            raise GateUnavailable(
                f"the fingerprints thresholds name layout {entry['layout']!r}, which this "
                f"version does not read; recalibrate (`{BUILD_INDEX_COMMAND}`)"
            )
        try:
            return FingerprintStore(directory / FINGERPRINTS_DIR, entry["sha256"])
        except (FingerprintStoreError, OSError, ValueError) as exc:
            raise GateUnavailable(f"the fingerprints are unusable: {exc}") from exc
    data = _verified_bytes(directory, FINGERPRINTS_FILE, entry, "the fingerprints")
    if data is None:
        return None
    try:
        return FingerprintIndex.from_bytes(data)
    except Exception as exc:
        raise GateUnavailable(f"the fingerprints in {directory} cannot be read: {exc}") from exc


def resolve_run(session: Session, checkpoint_or_run: Checkpoint | TrainingRun | int) -> TrainingRun:
    if isinstance(checkpoint_or_run, TrainingRun):
        return checkpoint_or_run
    if isinstance(checkpoint_or_run, Checkpoint):
        run = run_of_checkpoint(session, checkpoint_or_run)
    else:
        ckpt = checkpoint_by_id(session, int(checkpoint_or_run))
        if ckpt is None:
            raise GateUnavailable(f"checkpoint {checkpoint_or_run} does not exist")
        run = run_of_checkpoint(session, ckpt)
    if run is None:
        raise GateUnavailable(f"training run for {checkpoint_or_run!r} does not exist")
    return run


def load_index(
    session: Session,
    checkpoint_or_run: Checkpoint | TrainingRun | int,
    *,
    embedder_sha256: str | None = None,
) -> GateIndex:
    """Load and verify the newest gate index of a checkpoint's (or run's) snapshot.

    An int is a checkpoint id. Raises ``GateUnavailable`` when there is no index, a file is
    missing or corrupt (sha256 differs from the DB row), the index belongs to another run,
    its embedder differs from ``embedder_sha256`` (when given), or the snapshot digest
    differs from the run's ``members_digest``.
    """
    import faiss

    run = resolve_run(session, checkpoint_or_run)
    # A run can have an index per embedder (e.g. the CLAP segments and the gate's).
    row = newest_gate_index(session, run.id, embedder_sha256=embedder_sha256)
    if row is None:
        others = gate_index_embedders(session, run.id)
        if embedder_sha256 is not None and others:
            raise GateUnavailable(
                f"embedder {embedder_sha256[:12]} does not match the embedder of any gate "
                f"index of run {run.id} ({', '.join(sorted({o[:12] for o in others}))}): "
                f"`{BUILD_INDEX_COMMAND}` builds one for it"
            )
        raise GateUnavailable(
            f"training run {run.id} has no gate index: `{BUILD_INDEX_COMMAND}` builds it"
        )
    directory = working_dir(row.uri)  # a mirror of an index in the store, checked below
    try:
        vec_sha = sha256_file(directory / VECTORS_FILE)
        ids_sha = sha256_file(directory / IDS_FILE)
        meta = json.loads((directory / META_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise GateUnavailable(
            f"gate index {row.sha256[:12]} at {directory} is unreadable: {exc}"
        ) from exc
    actual = combined_sha256(vec_sha, ids_sha)
    if actual != row.sha256:
        raise GateUnavailable(
            f"gate index at {directory} is corrupt: files hash to {actual}, database row "
            f"{row.id} says {row.sha256}"
        )
    try:
        ids_doc = json.loads((directory / IDS_FILE).read_text())
        index = faiss.deserialize_index(np.fromfile(directory / VECTORS_FILE, dtype=np.uint8))
    except Exception as exc:  # faiss raises RuntimeError subclasses on bad bytes
        raise GateUnavailable(f"gate index at {directory} cannot be read: {exc}") from exc
    if ids_doc.get("training_run_id") != run.id:
        raise GateUnavailable(
            f"gate index {row.sha256[:12]} was built for run {ids_doc.get('training_run_id')}, "
            f"not run {run.id}"
        )
    if ids_doc.get("embedder_sha256") != row.embedder_sha256:
        raise GateUnavailable(
            f"gate index {row.sha256[:12]} embedder differs from its database row"
        )
    if embedder_sha256 is not None and embedder_sha256 != row.embedder_sha256:
        raise GateUnavailable(
            f"embedder {embedder_sha256[:12]} does not match the index's embedder "
            f"{row.embedder_sha256[:12]} for run {run.id}"
        )
    snapshot_digest = meta.get("snapshot_digest")
    if run.members_digest is not None and snapshot_digest != run.members_digest:
        raise GateUnavailable(
            f"gate index {row.sha256[:12]} snapshot digest {snapshot_digest} does not match "
            f"run {run.id}'s members_digest {run.members_digest}"
        )
    n = int(index.ntotal)
    if n != len(ids_doc["recording_id"]) or n != row.vectors:
        raise GateUnavailable(f"gate index {row.sha256[:12]} has {n} vectors, id map/row disagree")
    # Fail closed on thresholds the calibration did not record: one UPDATE must not be
    # able to switch the gate off.
    problem = thresholds_problem(session, row)
    if problem:
        raise GateUnavailable(f"{problem}; recalibrate (`{BUILD_INDEX_COMMAND}`)")
    thresholds = dict(row.thresholds or {})
    fingerprints = _load_fingerprints(directory, thresholds)
    artist_model = _load_artist_model(directory, thresholds)
    return GateIndex(
        index=index,
        recording_ids=np.asarray(ids_doc["recording_id"], dtype=np.int64),
        segment_index=np.asarray(ids_doc["segment_index"], dtype=np.int64),
        artist_ids=[list(a) for a in ids_doc["artist_ids"]],
        embedder_sha256=row.embedder_sha256,
        training_run_id=run.id,
        snapshot_digest=snapshot_digest,
        sha256=row.sha256,
        thresholds=thresholds,
        row_id=row.id,
        path=directory,
        fingerprints=fingerprints,
        artist_model=artist_model,
        melody=_load_melody(directory, thresholds),
    )
