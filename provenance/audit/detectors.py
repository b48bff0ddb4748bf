"""What the similarity gate itself learned from: the detector(s) behind a checkpoint's gate.

The gate blocks generated audio that replays or imitates a training artist. It judges with a
pretrained music embedder (``Embedder`` row, e.g. MSD-musicnn) calibrated on the run's gate
index (``EmbeddingIndex.thresholds``) against a cohort of outside music. An auditor asks what
that detector was trained on, under which licence, and which outside music calibrated it;
this module reads the answer from the rows ``fairchord gate calibrate`` wrote.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit.members import UnknownCheckpoint
from provenance.models import Checkpoint, Embedder, EmbeddingIndex

SECTION_TITLE = "What the gate itself learned from"
NOT_CALIBRATED = "the gate of this checkpoint is not calibrated: no detector recorded"

# The project's own CLAP conditions the diffusion model on text; its index of the snapshot's
# segments is not the gate's detector.
CONDITIONING_KINDS = frozenset({"laion_clap"})

# What the embedder's recorded config says about where its weights came from.
PROVENANCE_KEYS = (
    "name",
    "task",
    "training_data",
    "licence",
    "authors",
    "reference",
    "source_package",
    "source_files",
    "weights_sha256",
)


def gate_detectors(session: Session, checkpoint_id: int) -> list[dict[str, Any]]:
    """The detector(s) of a checkpoint's similarity gate, with what each learned from.

    For every gate embedder (any recorded kind but the conditioning CLAP) the run's newest
    index is the one the gate loads; it counts when it is calibrated (its thresholds are
    stored). Each entry holds the embedder's provenance (training data, licence, source
    package, weights sha256), its settings, the calibrated index (artist model and
    fingerprint summaries) and the outside-music cohort it was calibrated against: the one
    stored with the index's artist model, else the one recorded with the embedder. An empty
    list means the gate is not calibrated (see :data:`NOT_CALIBRATED`). Newest index first.
    """
    checkpoint = session.get(Checkpoint, checkpoint_id)
    if checkpoint is None:
        raise UnknownCheckpoint(f"no checkpoint with id {checkpoint_id}")
    rows = session.execute(
        select(EmbeddingIndex, Embedder)
        .join(Embedder, Embedder.sha256 == EmbeddingIndex.embedder_sha256)
        .where(
            EmbeddingIndex.training_run_id == checkpoint.training_run_id,
            Embedder.kind.not_in(CONDITIONING_KINDS),
        )
        .order_by(EmbeddingIndex.id.desc())
    ).all()
    newest: dict[str, tuple[EmbeddingIndex, Embedder]] = {}
    for index, embedder in rows:
        newest.setdefault(embedder.sha256, (index, embedder))
    return [_describe(index, embedder) for index, embedder in newest.values() if index.thresholds]


def _describe(index: EmbeddingIndex, embedder: Embedder) -> dict[str, Any]:
    config = dict(embedder.config or {})
    thresholds = dict(index.thresholds or {})
    artist_model = thresholds.get("artist_model") or {}
    fingerprint = thresholds.get("fingerprint") or {}
    cohort = artist_model.get("cohort") or config.get("cohort")
    settings = {k: v for k, v in config.items() if k not in {*PROVENANCE_KEYS, "kind", "cohort"}}
    return {
        "embedder_sha256": embedder.sha256,
        "kind": embedder.kind,
        **{key: config.get(key) for key in PROVENANCE_KEYS},
        "settings": settings,
        "uri": embedder.uri,
        "recorded_at": embedder.created_at,
        "gate_index": {
            "id": index.id,
            "sha256": index.sha256,
            "created_at": index.created_at,
            "artist_model": {
                key: artist_model.get(key) for key in ("method", "threshold", "sha256")
            }
            if artist_model
            else None,
            "fingerprint_sha256": fingerprint.get("sha256") if fingerprint else None,
        },
        "cohort": cohort,
    }


def gate_summary(detectors: list[dict[str, Any]]) -> str:
    """One sentence: which detector(s) the gate uses, or that it is not calibrated."""
    if not detectors:
        return NOT_CALIBRATED
    parts = []
    for d in detectors:
        text = f"{d['name'] or d['kind']} (sha256 {d['embedder_sha256'][:12]})"
        if d["training_data"]:
            text += f", trained on {d['training_data']}"
        cohort = d["cohort"] or {}
        tracks = sum((cohort.get("tracks") or {}).values())
        if tracks:
            text += f"; calibrated against {tracks} outside tracks"
        parts.append(text)
    return "the gate embeds with " + "; and ".join(parts)


# One row per detector (or one "not calibrated" row per checkpoint) for CSV output.
CSV_COLUMNS = [
    "checkpoint_id",
    "status",
    "embedder_sha256",
    "kind",
    *PROVENANCE_KEYS,
    "gate_index_sha256",
    "artist_model_method",
    "artist_model_threshold",
    "cohort_sha256",
    "cohort_tracks",
    "cohort_artists",
    "cohort_seconds",
    "cohort_licences",
    "cohort_packages",
]


def csv_rows(checkpoint_id: int, detectors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The detectors flattened for a CSV (lists and mappings joined with ``; ``)."""
    if not detectors:
        return [{"checkpoint_id": checkpoint_id, "status": NOT_CALIBRATED}]
    rows = []
    for d in detectors:
        cohort = d["cohort"] or {}
        artist_model = d["gate_index"]["artist_model"] or {}
        rows.append(
            {
                "checkpoint_id": checkpoint_id,
                "status": "calibrated",
                "embedder_sha256": d["embedder_sha256"],
                "kind": d["kind"],
                **{k: joined(d[k]) for k in PROVENANCE_KEYS},
                "gate_index_sha256": d["gate_index"]["sha256"],
                "artist_model_method": artist_model.get("method") or "",
                "artist_model_threshold": joined(artist_model.get("threshold")),
                "cohort_sha256": cohort.get("sha256") or "",
                "cohort_tracks": joined(cohort.get("tracks")),
                "cohort_artists": joined(cohort.get("artists")),
                "cohort_seconds": joined(cohort.get("seconds")),
                "cohort_licences": joined(cohort.get("licences")),
                "cohort_packages": joined(cohort.get("packages")),
            }
        )
    return rows


def joined(value: Any) -> str:
    """A list as ``a; b``, a mapping as ``k=v; k=v``, ``None`` as empty text."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return "; ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "; ".join(str(v) for v in value)
    return str(value)
