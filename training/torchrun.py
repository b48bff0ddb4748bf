"""``python -m training.torchrun``: the entry point ``torchrun`` launches on each rank.

On one machine::

    torchrun --nproc-per-node 2 -m training.torchrun --spec runs/7/spec.json

On a GPU cluster (one process per GPU; NCCL picked automatically, each rank
uses ``cuda:LOCAL_RANK``), on every node::

    torchrun --nnodes 4 --nproc-per-node 8 --rdzv-backend c10d \\
        --rdzv-endpoint $HEAD_NODE:29400 --rdzv-id fairchord-7 \\
        -m training.torchrun --spec /shared/fairchord/runs/7/spec.json

The spec (written by ``flows/train.py``, see :func:`write_spec`) names the
feature set, the snapshot members (id → sha256), the CLAP checkpoint and the
config; every rank loads the same member rows (the train flow's loader; rank 0 logs
them in materialised.json), so FAIRCHORD_HOME must be on shared storage (or an
fsspec URI); only rank 0 needs the database. Use the ``base`` config, scale ``lr``
with the global batch, and keep ``--resume`` for preemptible nodes.

Before any rank reads a shard, a spec naming a training run is checked as the
flow checks a run it resumes (:func:`check_spec`): rank 0 reads the run in the
configured database (FAIRCHORD_DB_URL) and refuses, on every rank, a snapshot
that no longer verifies (leaf hashes and Merkle root recomputed from the member
rows), members (id → sha256), a members digest or an audit head other than the
run's, a mel config other than its feature set's, or ranks that read different
specs. Then every rank's loader checks the shards' mel config hash and each
row's recording and sha256 against the members, and the CLAP checkpoint is
checked against the spec's sha256 (a refusal makes ``main`` return 2). Rank 0
alone writes checkpoints, whose headers carry the run's digest, audit head and
mel config hash, and records each on the run as the flow does (step, sha256,
final or not, with an audit event).
``--synthetic N`` trains on generated tones instead (a DDP smoke run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from training.distributed import (
    default_device,
    gather_from_ranks,
    join_process_group,
    leave_process_group,
    ranks_from_env,
)
from training.snapshot_data import SegmentData
from training.synthetic_data import synthetic_segments
from training.train_config import TrainConfig, get_config
from training.train_loop import RunInfo, SavedCheckpoint, train

logger = logging.getLogger(__name__)


def write_spec(path: str | Path, spec: dict[str, Any]) -> Path:
    """Write a run spec for ``python -m training.torchrun --spec`` (torchrun on a cluster).

    Keys: ``config`` (TrainConfig dict), ``out_dir``, ``feature_root``,
    ``members`` ({recording_id: sha256}), ``clap_path``, ``run_info`` (RunInfo fields).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2, sort_keys=True), encoding="utf-8")
    return path


class SpecRefused(ValueError):
    """The spec does not describe its training run as the database records it (nothing trained)."""


def spec_sha256(spec: dict[str, Any]) -> str:
    """sha256 of the spec's canonical JSON (the ranks compare it)."""
    body = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def database_disagreements(spec: dict[str, Any]) -> list[str]:
    """What ``spec`` says about its training run that the configured database does not."""
    from sqlalchemy.exc import SQLAlchemyError

    from provenance.db import make_engine, session_factory
    from provenance.snapshot import snapshot_disagreements

    info = spec["run_info"]
    engine = make_engine()
    try:
        with session_factory(engine)() as session:
            return snapshot_disagreements(
                session,
                int(info["training_run_id"]),
                members={int(k): v for k, v in spec["members"].items()},
                members_digest=info.get("snapshot_digest", ""),
                audit_head=info.get("audit_head", ""),
                mel_config_hash=info.get("mel_config_hash", ""),
                mel_config=info.get("mel_config", {}),
            )
    except SQLAlchemyError as exc:  # told to every rank, rather than leaving them waiting
        return [f"cannot read the database: {exc}"]
    finally:
        engine.dispose()


def check_spec(spec: dict[str, Any], *, source: str | Path = "spec") -> None:
    """Raise :class:`SpecRefused` unless the database agrees with a spec that names a training
    run, and every rank read the same spec.

    Collective when distributed: rank 0 asks the database, every rank hears its answer, so
    all ranks stop with the same message. A spec of no recorded run is not checked.
    """
    run_id = spec["run_info"].get("training_run_id")
    if run_id is None:
        return
    ranks = ranks_from_env()
    join_process_group(ranks, torch.device(default_device(ranks)))
    mine = spec_sha256(spec)
    answers = gather_from_ranks(
        (mine, database_disagreements(spec) if ranks.is_main else []), ranks
    )
    problems = list(answers[0][1])
    others = [rank for rank, (digest, _) in enumerate(answers) if digest != answers[0][0]]
    if others:
        problems.append(f"ranks {others} read another spec than rank 0")
    if problems:
        raise SpecRefused(
            f"{source} does not describe training run {run_id} as the database records it: "
            + "; ".join(problems)
        )


def spec_run(spec_path: str | Path) -> tuple[TrainConfig, SegmentData, SegmentData, Path, RunInfo]:
    """The config, train / validation data, output folder and provenance a spec describes.

    A spec naming a training run must agree with the database (:func:`check_spec`); the
    shards must have been made with the run's mel config and hold the members' sha256s, and
    the CLAP checkpoint must be the one the spec names (the checks the train flow makes).
    """
    from training.clap_embedder import ClapEmbedder
    from training.snapshot_data import load_run_segments

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    check_spec(spec, source=spec_path)
    config = TrainConfig.from_dict(spec["config"])
    info = RunInfo(**spec["run_info"])
    out_dir = Path(spec["out_dir"])
    embedder = ClapEmbedder.load(spec["clap_path"])
    loaded = str(getattr(embedder, "sha256", ""))
    if info.clap_sha256 and loaded and loaded != info.clap_sha256:
        raise SpecRefused(
            f"{spec_path}: the CLAP checkpoint {spec['clap_path']} has sha256 {loaded}, "
            f"the spec's is {info.clap_sha256}"
        )
    info.clap_sha256 = info.clap_sha256 or loaded  # as the flow does: the embedder's sha256
    train_data, val_data = load_run_segments(
        spec["feature_root"],
        {int(k): v for k, v in spec["members"].items()},
        embedder=embedder,
        mel_config_hash=info.mel_config_hash,
        out_dir=out_dir,
        training_run_id=info.training_run_id,
        members_digest=info.snapshot_digest,
        val_fraction=config.val_fraction,
        seed=config.seed,
    )
    return config, train_data, val_data, out_dir, info


def record_checkpoints_of(info: RunInfo) -> Callable[[SavedCheckpoint], None] | None:
    """For a recorded training run, a callback that records each checkpoint as it is written
    (in the configured database, FAIRCHORD_DB_URL), as the train flow does; else None."""
    if info.training_run_id is None:
        return None
    run_id = info.training_run_id

    def record(saved: SavedCheckpoint) -> None:
        from provenance.checkpoints import record_checkpoint
        from provenance.db import make_engine, session_factory

        engine = make_engine()
        try:
            with session_factory(engine).begin() as session:
                record_checkpoint(
                    session,
                    run_id,
                    path=saved.path,
                    sha256=saved.sha256,
                    step=saved.step,
                    is_final=saved.is_final,
                )
        finally:
            engine.dispose()

    return record


def synthetic_run(
    segments: int, *, config_name: str, out: str | None
) -> tuple[TrainConfig, SegmentData, SegmentData, Path, RunInfo]:
    """``segments`` synthetic tones; recording 1 is held back for validation."""
    config = get_config(config_name)
    data = synthetic_segments(segments, frames=max(128, config.crop_frames))
    train_rows = [i for i in range(len(data)) if int(data.recording_ids[i]) != 1]
    val_rows = [i for i in range(len(data)) if int(data.recording_ids[i]) == 1]
    return (
        config,
        data.subset(train_rows),
        data.subset(val_rows),
        Path(out or "synthetic-run"),
        RunInfo(run_name="synthetic"),
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m training.torchrun`` — the entry point ``torchrun`` launches on each rank."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--spec", help="run spec JSON written by flows/train.py (write_spec)")
    parser.add_argument("--synthetic", type=int, default=0, help="train on N synthetic segments")
    parser.add_argument("--config", default="debug", help="named config for --synthetic")
    parser.add_argument("--out", help="output directory for --synthetic")
    parser.add_argument("--stop-after", type=int, default=None)
    parser.add_argument("--resume", default=None, help="checkpoint to resume from")
    parser.add_argument("--result-json", default=None, help="write a per-rank result summary here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.synthetic:
        run = synthetic_run(args.synthetic, config_name=args.config, out=args.out)
    elif args.spec:
        try:
            run = spec_run(args.spec)
        except SpecRefused as exc:  # every rank says so and stops, before reading a shard
            logger.error("refusing to train: %s", exc)
            leave_process_group()
            return 2
    else:
        parser.error("give --spec or --synthetic N")
        return 2
    config, train_data, val_data, out_dir, info = run

    result = train(
        config,
        train_data=train_data,
        val_data=val_data,
        out_dir=out_dir,
        run_info=info,
        resume_from=args.resume,
        stop_after=args.stop_after,
        progress=False,
        on_checkpoint=record_checkpoints_of(info),
    )
    rank = ranks_from_env().rank
    if args.result_json:
        Path(args.result_json.replace("{rank}", str(rank))).write_text(
            json.dumps(
                {
                    "rank": rank,
                    "step": result.step,
                    "weights_sha256": result.weights_sha256,
                    "loss_history": result.loss_history,
                    "checkpoints": [str(c.path) for c in result.checkpoints],
                }
            ),
            encoding="utf-8",
        )
    leave_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
