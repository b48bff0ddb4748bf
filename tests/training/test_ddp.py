"""DDP: `torchrun --nproc-per-node 2` on the debug config; the ranks agree on the weights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from training.checkpoint import load_resume_state
from training.diffusion.unet import MelUNet
from training.train_config import get_config
from training.train_loop import weights_digest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_ranks_agree_on_weights_after_training_steps(tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            str(torchrun),
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(_free_port()),
            "-m",
            "training.torchrun",
            "--synthetic",
            "24",
            "--config",
            "debug",
            "--out",
            str(tmp_path),
            "--stop-after",
            "2",
            "--result-json",
            str(tmp_path / "rank-{rank}.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["step"] == ranks[1]["step"] == 2
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert ranks[0]["loss_history"] == ranks[1]["loss_history"]  # all-reduced mean loss

    # The weights moved away from the (seeded) initialisation...
    torch.manual_seed(get_config("debug").seed)
    assert weights_digest(MelUNet(get_config("debug").unet)) != ranks[0]["weights_sha256"]
    # ...and only rank 0 wrote the checkpoint, holding exactly those weights and both
    # ranks' noise-generator states (so a 2-rank run resumes exactly).
    assert ranks[1]["checkpoints"] == [] and len(ranks[0]["checkpoints"]) == 1
    state = load_resume_state(ranks[0]["checkpoints"][0])
    net = MelUNet(state.meta.config.unet)
    net.load_state_dict(state.model_state)
    assert weights_digest(net) == ranks[0]["weights_sha256"]
    assert state.train_state["world_size"] == 2
    assert {"noise.0", "noise.1"} <= set(state.rng_tensors)
    assert not torch.equal(state.rng_tensors["noise.0"], state.rng_tensors["noise.1"])
