"""The training loop on the debug config: it trains, checkpoints, plots and resumes bit-for-bit."""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from provenance.hashing import sha256_file
from training.checkpoint import (
    HEADER_KEY,
    load_checkpoint,
    read_header,
    read_meta,
)
from training.diffusion.sampling import sample_mels
from training.snapshot_data import SegmentData, split_by_recording
from training.synthetic_data import synthetic_segments
from training.train_config import TrainConfig, get_config
from training.train_loop import RunInfo, train
from training.train_state import DataOrder, lr_at

INFO = RunInfo(
    mel_config={"n_mels": 64},
    mel_config_hash="abcd1234abcd1234",
    clap_sha256="c" * 64,
    training_run_id=42,
    snapshot_digest="d" * 64,
    run_name="test",
)


def _data() -> tuple[SegmentData, SegmentData]:
    data = synthetic_segments(24, frames=128, recordings=4)
    rids = data.recording_ids.tolist()
    return (
        data.subset([i for i, r in enumerate(rids) if r != 1]),
        data.subset([i for i, r in enumerate(rids) if r == 1]),
    )


def test_debug_config_trains_checkpoints_and_plots(tmp_path: Path) -> None:
    train_data, val_data = _data()
    result = train(
        get_config("debug"),
        train_data=train_data,
        val_data=val_data,
        out_dir=tmp_path,
        run_info=INFO,
        progress=False,
    )
    config = result.config
    assert result.step == config.max_steps == 8
    assert config.resolved and config.mel_std is not None and config.mel_std > 0
    losses = [v for _, v in result.loss_history]
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])  # it learns something in 8 steps
    assert [s for s, _ in result.val_history] == [4, 8]
    assert result.val_history[-1][1] < result.val_history[0][1]
    assert result.segments_per_second > 0

    final = result.final_checkpoint
    assert final is not None and final.path.exists() and final.sha256 == sha256_file(final.path)
    meta = read_meta(final.path)
    assert meta.config == config  # the resolved config, mel stats included
    assert (meta.mel_config_hash, meta.clap_sha256, meta.training_run_id, meta.snapshot_digest) == (
        INFO.mel_config_hash,
        INFO.clap_sha256,
        42,
        INFO.snapshot_digest,
    )
    assert meta.step == 8

    # The checkpoint rebuilds the model from its header alone and samples.
    denoiser, loaded_meta = load_checkpoint(final.path)
    assert denoiser.mel_mean == config.mel_mean and denoiser.mel_std == config.mel_std
    mels = sample_mels(denoiser, val_data.cond[:2], frames=50, steps=3, seed=1)
    assert mels.shape == (2, 64, 50) and torch.isfinite(mels).all()
    raw, _ = load_checkpoint(final.path, weights="model")
    assert any(
        not torch.equal(a, b) for a, b in zip(raw.parameters(), denoiser.parameters(), strict=True)
    )

    names = sorted(p.name for p in result.plots)
    assert names == ["loss.png", "samples-step0000008.png"]
    assert all(p.stat().st_size > 1000 for p in result.plots)


def test_resume_is_bit_for_bit(tmp_path: Path) -> None:
    train_data, val_data = _data()
    config = get_config("debug")
    straight = train(
        config,
        train_data=train_data,
        val_data=val_data,
        out_dir=tmp_path / "straight",
        run_info=INFO,
        progress=False,
    )
    first = train(
        config,
        train_data=train_data,
        val_data=val_data,
        out_dir=tmp_path / "split",
        run_info=INFO,
        progress=False,
        stop_after=3,  # odd: mid-epoch, mid eval interval
    )
    assert first.step == 3 and first.final_checkpoint is None
    resumed = train(
        config,
        train_data=train_data,
        val_data=val_data,
        out_dir=tmp_path / "split",
        run_info=INFO,
        progress=False,
        resume_from=first.checkpoints[-1].path,
    )
    assert resumed.step == 8
    assert resumed.loss_history == straight.loss_history
    assert resumed.val_history == straight.val_history
    assert resumed.weights_sha256 == straight.weights_sha256
    a, b = straight.final_checkpoint, resumed.final_checkpoint
    assert a is not None and b is not None
    assert a.sha256 == b.sha256  # the very same bytes: weights, EMA, optimizer, RNG, history
    header = read_header(b.path)
    assert header["train_state"]["data_order"] == {"epoch": 1, "position": 32 - 18}


@contextmanager
def _global_rngs_drawn_meanwhile() -> Iterator[list[int]]:
    """A thread drawing from python's, numpy's and torch's process-wide RNGs all along.

    As Prefect's event client does with ``random`` (its websocket pings) once a
    flow has run in the process.
    """
    stop = threading.Event()
    draws = [0]

    def draw() -> None:
        while not stop.is_set():
            random.getrandbits(32)
            np.random.random()
            torch.rand(1)
            draws[0] += 1
            time.sleep(0.0005)

    thread = threading.Thread(target=draw, daemon=True)
    thread.start()
    try:
        yield draws
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_checkpoints_hold_the_same_bytes_whatever_else_draws_random_numbers(
    tmp_path: Path, dropout: float
) -> None:
    train_data, val_data = _data()
    debug = get_config("debug")
    config = debug.replace(unet=dataclasses.replace(debug.unet, dropout=dropout))
    runs = {}
    with _global_rngs_drawn_meanwhile() as draws:
        for name, kwargs in (("straight", {}), ("split", {"stop_after": 3})):
            runs[name] = train(
                config,
                train_data=train_data,
                val_data=val_data,
                out_dir=tmp_path / name,
                run_info=INFO,
                progress=False,
                **kwargs,
            )
        runs["resumed"] = train(
            config,
            train_data=train_data,
            val_data=val_data,
            out_dir=tmp_path / "split",
            run_info=INFO,
            progress=False,
            resume_from=runs["split"].checkpoints[-1].path,
        )
    assert draws[0] > 100  # the other thread really drew all along
    straight, resumed = runs["straight"], runs["resumed"]
    assert resumed.loss_history == straight.loss_history
    assert resumed.weights_sha256 == straight.weights_sha256
    a, b = straight.final_checkpoint, resumed.final_checkpoint
    assert a is not None and b is not None and a.sha256 == b.sha256
    # Nothing process-wide is saved, so there is nothing another thread could have moved.
    header = read_header(b.path)
    assert not {"python_rng", "numpy_rng"} & set(header["train_state"])
    assert [k for k in load_file(str(b.path)) if k.startswith("rng.")] == ["rng.noise.0"]


def test_training_leaves_the_global_rngs_alone(tmp_path: Path) -> None:
    train_data, val_data = _data()
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    train(
        get_config("debug"),
        train_data=train_data,
        val_data=val_data,
        out_dir=tmp_path,
        run_info=INFO,
        progress=False,
    )
    assert random.getstate() == before[0]
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2])


def test_resumes_older_checkpoints_that_carry_process_rng_states(tmp_path: Path) -> None:
    """Checkpoints once saved python/numpy/torch global RNG states; they still resume exactly."""
    train_data, val_data = _data()
    config = get_config("debug")
    straight = train(
        config,
        train_data=train_data,
        val_data=val_data,
        out_dir=tmp_path / "straight",
        run_info=INFO,
        progress=False,
    )
    first = train(
        config,
        train_data=train_data,
        val_data=val_data,
        out_dir=tmp_path / "split",
        run_info=INFO,
        progress=False,
        stop_after=3,
    )
    path = first.checkpoints[-1].path
    header = read_header(path)
    tensors = load_file(str(path))
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    header["train_state"]["python_rng"] = [version, list(internal), gauss]
    header["train_state"]["numpy_rng"] = [kind, keys.tolist(), pos, has_gauss, cached]
    tensors["rng.torch"] = torch.get_rng_state()
    old = tmp_path / "old-format.safetensors"
    save_file(tensors, str(old), metadata={HEADER_KEY: json.dumps(header)})

    resumed = train(
        config,
        train_data=train_data,
        val_data=val_data,
        out_dir=tmp_path / "split",
        run_info=INFO,
        progress=False,
        resume_from=old,
    )
    assert resumed.weights_sha256 == straight.weights_sha256
    assert resumed.loss_history == straight.loss_history
    a, b = straight.final_checkpoint, resumed.final_checkpoint
    assert a is not None and b is not None and a.sha256 == b.sha256


def test_resume_refuses_other_config_or_snapshot(tmp_path: Path) -> None:
    train_data, val_data = _data()
    config = get_config("debug")
    first = train(
        config,
        train_data=train_data,
        val_data=val_data,
        out_dir=tmp_path,
        run_info=INFO,
        progress=False,
        stop_after=2,
    )
    ckpt = first.checkpoints[-1].path
    with pytest.raises(ValueError, match=r"config differs in \['lr'\]"):
        train(
            config.replace(lr=0.5),
            train_data=train_data,
            val_data=val_data,
            out_dir=tmp_path,
            run_info=INFO,
            resume_from=ckpt,
            progress=False,
        )
    other = RunInfo(**{**vars(INFO), "snapshot_digest": "e" * 64})
    with pytest.raises(ValueError, match="trained on snapshot"):
        train(
            config,
            train_data=train_data,
            val_data=val_data,
            out_dir=tmp_path,
            run_info=other,
            resume_from=ckpt,
            progress=False,
        )


def test_data_order_is_seeded_and_resumable() -> None:
    a = DataOrder(10, seed=3)
    seq = np.concatenate([a.take(4) for _ in range(6)])
    # Every epoch is a permutation of all rows.
    assert sorted(seq[:10].tolist()) == list(range(10)) and sorted(seq[10:20].tolist()) == list(
        range(10)
    )
    b = DataOrder(10, seed=3)
    b.take(4), b.take(4), b.take(4)
    c = DataOrder(10, seed=3, **b.state())
    assert np.array_equal(np.concatenate([c.take(4) for _ in range(3)]), seq[12:])
    assert not np.array_equal(DataOrder(10, seed=4).take(10), seq[:10])


def test_lr_schedule_warmup_then_cosine() -> None:
    config = TrainConfig(max_steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    lrs = [lr_at(s, config) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(x >= y for x, y in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[100] == pytest.approx(0.1)


def test_split_by_recording_is_deterministic_and_whole() -> None:
    ids = list(range(1, 21))
    train_ids, val_ids = split_by_recording(ids, val_fraction=0.2, seed=0)
    assert len(val_ids) == 4 and sorted(train_ids + val_ids) == ids
    assert split_by_recording(reversed(ids), val_fraction=0.2, seed=0) == (train_ids, val_ids)
    assert split_by_recording(ids, val_fraction=0.2, seed=1)[1] != val_ids
    assert split_by_recording([5, 6], val_fraction=0.1, seed=0)[1] in ([5], [6])


def test_config_validation_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match="crop_frames=63 must be divisible"):
        get_config("debug", crop_frames=63)
    with pytest.raises(ValueError, match="unknown training config 'huge'"):
        get_config("huge")
    config = get_config("small")
    assert TrainConfig.from_dict(config.to_dict()) == config
