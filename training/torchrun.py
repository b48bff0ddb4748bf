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
config; every rank loads the same member rows (the train flow's loader, which logs
them in materialised.json), so FAIRCHORD_HOME must be on
shared storage (or an fsspec URI). Use the ``base`` config, scale ``lr``
with the global batch, and keep ``--resume`` for preemptible nodes.
Rank 0 records each checkpoint on the spec's training run in the configured
database (FAIRCHORD_DB_URL), as the flow does.
``--synthetic N`` trains on generated tones instead (a DDP smoke run).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.distributed import leave_process_group, ranks_from_env
from training.snapshot_data import SegmentData
from training.synthetic_data import synthetic_segments
from training.train_config import TrainConfig, get_config
from training.train_loop import RunInfo, SavedCheckpoint, train


def write_spec(path: str | Path, spec: dict[str, Any]) -> Path:
    """Write a run spec for ``python -m training.torchrun --spec`` (torchrun on a cluster).

    Keys: ``config`` (TrainConfig dict), ``out_dir``, ``feature_root``,
    ``members`` ({recording_id: sha256}), ``clap_path``, ``run_info`` (RunInfo fields).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2, sort_keys=True), encoding="utf-8")
    return path


def spec_run(spec_path: str | Path) -> tuple[TrainConfig, SegmentData, SegmentData, Path, RunInfo]:
    """The config, train / validation data, output folder and provenance a spec describes.

    The shards must have been made with the mel config the run was frozen
    with (the same check the train flow makes before it trains).
    """
    from training.clap_embedder import ClapEmbedder
    from training.snapshot_data import load_run_segments

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    config = TrainConfig.from_dict(spec["config"])
    info = RunInfo(**spec["run_info"])
    out_dir = Path(spec["out_dir"])
    train_data, val_data = load_run_segments(
        spec["feature_root"],
        {int(k): v for k, v in spec["members"].items()},
        embedder=ClapEmbedder.load(spec["clap_path"]),
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
        run = spec_run(args.spec)
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
