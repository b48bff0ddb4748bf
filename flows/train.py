"""The `train` flow: snapshot → train → record checkpoints → gate index → finish.

1. **snapshot**: freeze the recordings eligible under the policy *now*
   (:func:`provenance.snapshot.freeze_snapshot`), members with licence and
   consent in force and a Merkle digest; or, with ``resume``, reopen the newest
   unfinished run of the same policy and config (same members, same digest).
2. **train**: load the member rows only (:mod:`training.snapshot_data`, with a
   materialisation ledger written to ``runs/<id>/materialised.json``), embed
   captions with the CLAP text tower, run :func:`training.train_loop.train`;
   each checkpoint is recorded (``checkpoints`` row with its sha256 + audit
   event) as soon as it is written.
3. **gate index**: the snapshot's segment CLAP embeddings (the feature set's
   ``embeddings-<clap sha>.arrow``) go into the gate's FAISS index via
   :func:`generation.index.build_index_for_run`. Thresholds come later from
   ``fairchord gate calibrate``; until then, and without an index, the gate
   fails closed.
4. **finish**: the run is marked ``finished`` (or ``failed``/``interrupted``).

Tasks pass ids, paths and plain dicts; each opens its own short session.
``runs/<id>/spec.json`` describes the run for ``torchrun -m
training.torchrun --spec`` (multi-GPU; see :mod:`training.torchrun`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from prefect import flow

from flows.local_runs import run_logger, step
from flows.sessions import transaction
from provenance.object_store import location_path
from provenance.settings import fairchord_home

logger = logging.getLogger(__name__)


def run_dir(training_run_id: int) -> Path:
    return fairchord_home() / "runs" / str(training_run_id)


def uri_to_path(uri: str) -> Path:
    """The local path of a recorded location (``home://``, ``file://`` or a plain path)."""
    try:
        return location_path(uri)
    except ValueError:
        raise ValueError(
            f"feature set at {uri}: only local paths / file:// URIs can be trained on"
        ) from None


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest resumable checkpoint (``step-*.safetensors``) in a run directory."""
    steps = sorted(directory.glob("step-*.safetensors"))
    return steps[-1] if steps else None


# --- plain step functions (callable and testable without Prefect) -----------------------------


def snapshot_step(
    db_url: str | None,
    *,
    policy_name: str,
    config_name: str,
    config: dict[str, Any],
    resume: bool,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Freeze a new snapshot (or reopen the run to resume); return what training needs."""
    from provenance.checkpoints import latest_resumable_run
    from provenance.features import feature_set_files, feature_set_for_hash
    from provenance.models import FeatureSet
    from provenance.policies import load_policy
    from provenance.snapshot import freeze_snapshot, member_sha256s, verify_snapshot
    from training.mel import MelConfig
    from training.shard_publish import local_feature_root

    with transaction(db_url) as session:
        if resume:
            run = latest_resumable_run(session, policy_name=policy_name, config_name=config_name)
            if run is None:
                raise ValueError(
                    f"nothing to resume: no unfinished run with policy {policy_name!r} and "
                    f"config {config_name!r}"
                )
            problems = verify_snapshot(session, run.id)
            if problems:
                raise ValueError(f"run {run.id}'s snapshot no longer verifies: {problems}")
            checkpoint = latest_checkpoint(run_dir(run.id))
            if run.config != config:
                raise ValueError(
                    f"run {run.id} was started with another config; resume with the same "
                    "--config and --max-steps"
                )
            fs = session.get(FeatureSet, run.feature_set_id) if run.feature_set_id else None
        else:
            policy = load_policy(policy_name)
            mel_config = MelConfig()
            fs = feature_set_for_hash(session, mel_config.hash())
            if fs is None:
                raise ValueError(
                    f"no feature set for mel config {mel_config.hash()}: run "
                    "`fairchord featurize` first"
                )
            run = freeze_snapshot(
                session,
                policy=policy,
                config_name=config_name,
                config=config,
                feature_set_id=fs.id,
            )
            checkpoint = None
        if fs is None:
            raise ValueError(f"training run {run.id} has no feature set")
        if flow_run_id:
            run.prefect_flow_run_id = flow_run_id
        return {
            "training_run_id": run.id,
            "members_digest": run.members_digest,
            "audit_head": run.audit_head or "",
            "member_count": run.member_count,
            "members": {str(k): v for k, v in member_sha256s(session, run.id).items()},
            # A verified local copy when the feature set is in an S3 store.
            "feature_root": str(local_feature_root(feature_set_files(session, fs))),
            "mel_config": fs.mel_config,
            "mel_config_hash": fs.mel_config_hash,
            "resume_from": str(checkpoint) if checkpoint else None,
            "policy": {"name": run.policy_name, "version": run.policy_version},
        }


def set_status_step(
    db_url: str | None, training_run_id: int, status: str, payload: dict[str, Any] | None = None
) -> None:
    from provenance.models import TrainingRun
    from provenance.snapshot import set_run_status

    with transaction(db_url) as session:
        run = session.get(TrainingRun, training_run_id)
        assert run is not None
        set_run_status(session, run, status, payload=payload)


def record_checkpoint_step(
    db_url: str | None, training_run_id: int, *, path: str, sha256: str, step: int, is_final: bool
) -> int:
    """A ``checkpoints`` row for a written file (idempotent by sha256) + an audit event."""
    from provenance.checkpoints import record_checkpoint

    with transaction(db_url) as session:
        return record_checkpoint(
            session, training_run_id, path=path, sha256=sha256, step=step, is_final=is_final
        )


def train_step(
    db_url: str | None,
    snapshot: dict[str, Any],
    *,
    config: dict[str, Any],
    clap_path: str | None,
    progress: bool = True,
    embedder: Any = None,
) -> dict[str, Any]:
    """Load the snapshot's member rows, train, record each checkpoint as it is written."""
    from training.snapshot_data import load_run_segments
    from training.torchrun import write_spec
    from training.train_config import TrainConfig
    from training.train_loop import RunInfo, SavedCheckpoint, train

    run_id = int(snapshot["training_run_id"])
    out = run_dir(run_id)
    out.mkdir(parents=True, exist_ok=True)
    if embedder is None:
        from training.clap_embedder import ClapEmbedder, default_clap_path

        embedder = ClapEmbedder.load(clap_path or default_clap_path())
    clap_sha = str(getattr(embedder, "sha256", ""))
    members = {int(k): v for k, v in snapshot["members"].items()}
    write_spec(
        out / "spec.json",
        {
            "config": config,
            "out_dir": str(out),
            "feature_root": snapshot["feature_root"],
            "members": snapshot["members"],
            "clap_path": str(clap_path) if clap_path else None,
            "run_info": {
                "mel_config": snapshot["mel_config"],
                "mel_config_hash": snapshot["mel_config_hash"],
                "clap_sha256": clap_sha,
                "training_run_id": run_id,
                "snapshot_digest": snapshot["members_digest"],
                "run_name": f"run-{run_id}",
                "audit_head": snapshot.get("audit_head", ""),
            },
        },
    )

    train_config = TrainConfig.from_dict(config)
    train_data, val_data = load_run_segments(
        snapshot["feature_root"],
        members,
        embedder=embedder,
        mel_config_hash=snapshot["mel_config_hash"],
        out_dir=out,
        training_run_id=run_id,
        members_digest=snapshot["members_digest"],
        val_fraction=train_config.val_fraction,
        seed=train_config.seed,
    )

    def on_checkpoint(saved: SavedCheckpoint) -> None:
        record_checkpoint_step(
            db_url,
            run_id,
            path=str(saved.path),
            sha256=saved.sha256,
            step=saved.step,
            is_final=saved.is_final,
        )

    started = time.perf_counter()
    result = train(
        train_config,
        train_data=train_data,
        val_data=val_data,
        out_dir=out,
        run_info=RunInfo(
            mel_config=snapshot["mel_config"],
            mel_config_hash=snapshot["mel_config_hash"],
            clap_sha256=clap_sha,
            training_run_id=run_id,
            snapshot_digest=snapshot["members_digest"],
            run_name=f"run-{run_id}",
            audit_head=snapshot.get("audit_head", ""),
        ),
        resume_from=snapshot.get("resume_from"),
        progress=progress,
        on_checkpoint=on_checkpoint,
    )
    final = result.final_checkpoint
    return {
        "training_run_id": run_id,
        "step": result.step,
        "parameters": result.parameters,
        "segments": {"train": len(train_data), "validation": len(val_data)},
        "validation_recordings": sorted(set(val_data.recording_ids.tolist())),
        "segments_per_second": round(result.segments_per_second, 2),
        "seconds": round(time.perf_counter() - started, 1),
        "final_loss": result.loss_history[-1][1] if result.loss_history else None,
        "val_loss": result.val_history[-1][1] if result.val_history else None,
        "checkpoints": [
            {"path": str(c.path), "sha256": c.sha256, "step": c.step, "is_final": c.is_final}
            for c in result.checkpoints
        ],
        "final_checkpoint": str(final.path) if final else None,
        "final_sha256": final.sha256 if final else None,
        "plots": [str(p) for p in result.plots],
        "clap_sha256": clap_sha,
        "mel_normalisation": {"mean": result.config.mel_mean, "std": result.config.mel_std},
    }


def index_step(db_url: str | None, snapshot: dict[str, Any], clap_sha256: str) -> dict[str, Any]:
    """Build the gate index from the snapshot's segment embeddings, or say why it could not."""
    from generation.index import build_index_for_run
    from provenance.features import artist_ids
    from training.segment_embeddings import embedding_matrix, read_embeddings

    run_id = int(snapshot["training_run_id"])
    members = [int(k) for k in snapshot["members"]]
    if not clap_sha256:
        return {"built": False, "reason": "no CLAP checkpoint sha256: cannot pick the embeddings"}
    try:
        table = read_embeddings(snapshot["feature_root"], clap_sha256, recording_ids=members)
    except FileNotFoundError as exc:
        return {"built": False, "reason": f"{exc} (featurize with CLAP embeddings first)"}
    if table.num_rows == 0:
        return {"built": False, "reason": "the snapshot's recordings have no segment embeddings"}
    rids = table.column("recording_id").to_pylist()
    with transaction(db_url) as session:
        artists = {rid: artist_ids(session, rid) for rid in set(rids)}
        row = build_index_for_run(
            session,
            run_id,
            embeddings=embedding_matrix(table),
            recording_ids=rids,
            segment_index=table.column("segment_index").to_pylist(),
            artist_ids=[artists[r] for r in rids],
            embedder_sha256=clap_sha256,
            snapshot_digest=snapshot["members_digest"],
        )
        return {
            "built": True,
            "embedding_index_id": row.id,
            "sha256": row.sha256,
            "vectors": row.vectors,
            "uri": row.uri,
        }


# --- Prefect ------------------------------------------------------------------------------


@step
def snapshot_task(
    db_url: str | None,
    policy_name: str,
    config_name: str,
    config: dict[str, Any],
    resume: bool,
    flow_run_id: str | None,
) -> dict[str, Any]:
    return snapshot_step(
        db_url,
        policy_name=policy_name,
        config_name=config_name,
        config=config,
        resume=resume,
        flow_run_id=flow_run_id,
    )


@step
def train_task(
    db_url: str | None,
    snapshot: dict[str, Any],
    config: dict[str, Any],
    clap_path: str | None,
    progress: bool,
) -> dict[str, Any]:
    return train_step(db_url, snapshot, config=config, clap_path=clap_path, progress=progress)


@step
def index_task(db_url: str | None, snapshot: dict[str, Any], clap_sha256: str) -> dict[str, Any]:
    return index_step(db_url, snapshot, clap_sha256)


@step
def status_task(
    db_url: str | None, training_run_id: int, status: str, payload: dict[str, Any] | None
) -> None:
    set_status_step(db_url, training_run_id, status, payload)


@flow(name="train")
def train_flow(
    policy: str = "commercial",
    config_name: str = "demo",
    max_steps: int | None = None,
    resume: bool = False,
    clap_path: str | None = None,
    db_url: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the diffusion model on the snapshot of recordings eligible under ``policy``."""
    from prefect.runtime import flow_run

    from training.train_config import get_config

    log = run_logger("train")
    overrides: dict[str, Any] = {} if max_steps is None else {"max_steps": max_steps}
    if max_steps is not None:
        base = get_config(config_name)
        overrides["warmup_steps"] = min(base.warmup_steps, max_steps)
    config = get_config(config_name, **overrides).to_dict()
    snapshot = snapshot_task(
        db_url, policy, config_name, config, resume, str(flow_run.get_id() or "") or None
    )
    run_id = int(snapshot["training_run_id"])
    log.info(
        "training run %d: %d member recordings, digest %s%s",
        run_id,
        snapshot["member_count"],
        snapshot["members_digest"],
        f", resuming from {snapshot['resume_from']}" if snapshot.get("resume_from") else "",
    )
    status_task(db_url, run_id, "training", {"resume_from": snapshot.get("resume_from")})
    try:
        trained = train_task(db_url, snapshot, config, clap_path, progress)
    except KeyboardInterrupt:
        status_task(db_url, run_id, "interrupted", None)
        raise
    except Exception as exc:
        status_task(db_url, run_id, "failed", {"error": f"{type(exc).__name__}: {exc}"})
        raise
    log.info(
        "trained %d steps (%.1f segments/s); final checkpoint %s",
        trained["step"],
        trained["segments_per_second"],
        trained["final_checkpoint"],
    )
    index = index_task(db_url, snapshot, trained["clap_sha256"])
    if index["built"]:
        log.info("gate index %s: %d vectors", index["sha256"][:12], index["vectors"])
    else:
        # The CLAP track index is optional (`fairchord clap embed` feeds it); the gate's own
        # MSD-musicnn index comes from `fairchord gate calibrate`, and until that has run
        # generation with this checkpoint fails closed.
        log.info(
            "no CLAP track index for run %d: %s. The gate's index is built by "
            "`fairchord gate calibrate`; generation fails closed until it has run.",
            run_id,
            index["reason"],
        )
    status_task(
        db_url,
        run_id,
        "finished",
        {"final_sha256": trained["final_sha256"], "gate_index": index.get("sha256")},
    )
    return {
        "training_run_id": run_id,
        "policy": snapshot["policy"],
        "config": config_name,
        "members_digest": snapshot["members_digest"],
        "member_count": snapshot["member_count"],
        "members": sorted(int(k) for k in snapshot["members"]),
        "run_dir": str(run_dir(run_id)),
        "train": trained,
        "gate_index": index,
    }
