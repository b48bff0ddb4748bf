"""Generation speed: 10 s of audio on 2 CPU cores, ours vs. a diffusers mel-image UNet.

Both models have **random weights** (speed does not depend on what a network
learned; no weights are downloaded), so this measures architecture and sampler
cost only, in one process, one after the other:

- **fairchord**: :class:`training.diffusion.MelUNet` with the ``small`` config's
  sizes (the demo model), 64 mel bins x 1001 frames (10 s at 100 frames/s,
  padded to 1008), DPM-Solver++(2M) with 25 steps and classifier-free guidance
  (cond + uncond in one batch of 2), then :class:`generation.vocoder.GriffinLimVocoder`
  (NNLS + 32 Griffin-Lim iterations) to 16 kHz. The CLAP text embedding of
  the prompt (one text-tower call) is not included.
- **audio-diffusion-256**: ``diffusers.UNet2DModel`` in the configuration of
  teticio/audio-diffusion-256 (``unet/config.json`` on the Hugging Face hub:
  block_out_channels 128,128,256,256,512,512, layers_per_block 2, attention at
  the fifth down / second up block, 1 channel, 256x256), with ``DDIMScheduler``
  and 50 steps (the audio-diffusion-ddim-256 default), unconditional. Its mel
  config (``mel/mel_config.json``) is 22 050 Hz, hop 512, n_fft 2048, 256 mels,
  so one image is 256 x 512 / 22 050 = 5.94 s and 10 s takes 2 images (one
  batch of 2). Its vocoder, librosa's mel inversion + 32 Griffin-Lim
  iterations, is reproduced with torchaudio (``InverseMelScale`` +
  ``GriffinLim``, power 2) on the two images.

Reported: wall time of sampling, of vocoding, and of both; the real-time factor
(wall time / seconds of audio; below 1 is faster than real time); network
evaluations and time per evaluation. The machine may be shared: the load
average is printed with the results, and on a busy machine run with
``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of spinning; with
other processes on the cores, spinning made a 2-thread forward 10-20x slower).
Run: ``OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/generation_speed.py [--json]``

Measured on the reference machine (2 cores shared with other work, load
average ~6, torch 2.14.1, OMP_WAIT_POLICY=PASSIVE, best of 3 / 1 runs):

==========================  ======  =====  ========  ========  =======
model                       params  evals  sample s  vocode s  RTF
==========================  ======  =====  ========  ========  =======
fairchord small, 25 steps   3.3M    25     63.9      0.94      6.48
audio-diffusion-256, DDIM   113.7M  50     1362.3    0.68      115.1
==========================  ======  =====  ========  ========  =======

fairchord was 21x faster end to end (2.56 s vs. 27.2 s per network
evaluation). The absolute times are inflated by the shared cores; the ratio
held in the same run.

(needs the ``bench`` extra: ``pip install --no-deps diffusers``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np
import torch

from generation.vocoder import GriffinLimVocoder
from training.checkpoint import build_denoiser
from training.diffusion.sampling import sample_mels
from training.diffusion.unet import MelUNet, count_parameters
from training.mel import mel_frames
from training.train_config import get_config

SECONDS = 10.0

# teticio/audio-diffusion-256: unet/config.json and mel/mel_config.json.
AUDIO_DIFFUSION_256_UNET: dict[str, Any] = {
    "sample_size": 256,
    "in_channels": 1,
    "out_channels": 1,
    "layers_per_block": 2,
    "block_out_channels": (128, 128, 256, 256, 512, 512),
    "down_block_types": (
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "AttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "AttnUpBlock2D",
        "UpBlock2D",
        "UpBlock2D",
        "UpBlock2D",
        "UpBlock2D",
    ),
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "act_fn": "silu",
}
AUDIO_DIFFUSION_256_MEL = {
    "sample_rate": 22050,
    "hop_length": 512,
    "n_fft": 2048,
    "n_mels": 256,
    "x_res": 256,
    "n_iter": 32,
    "top_db": 80,
}


def randomize_zero_inits(net: torch.nn.Module, *, seed: int = 0) -> None:
    """Our UNet starts its residual branches at zero; give them small random weights too."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in net.parameters():
            if param.dim() > 1 and not param.any():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)


def bench_fairchord(steps: int, repeats: int) -> dict[str, Any]:
    config = get_config("small").replace(mel_mean=-5.0, mel_std=2.5)
    net = MelUNet(config.unet).eval()
    randomize_zero_inits(net)
    denoiser = build_denoiser(config, net).eval()
    vocoder = GriffinLimVocoder()
    frames = mel_frames(SECONDS)
    cond = torch.nn.functional.normalize(torch.randn(1, config.unet.cond_dim), dim=-1)
    evals = {"n": 0}

    def count(_: dict[str, Any]) -> None:
        evals["n"] += 1

    sample_mels(denoiser, cond, frames=frames, steps=2, seed=0)  # warm-up
    runs = []
    for r in range(repeats):
        evals["n"] = 0
        start = time.perf_counter()
        mel = sample_mels(
            denoiser, cond, frames=frames, steps=steps, cfg_scale=3.0, seed=r, callback=count
        )
        sampled = time.perf_counter()
        wave = vocoder(mel[0])
        done = time.perf_counter()
        assert wave.shape == (int(SECONDS * 16000),)
        runs.append((sampled - start, done - sampled, done - start))
    sample_s, vocode_s, total_s = min(runs, key=lambda r: r[2])
    return {
        "model": "fairchord MelUNet (small config), DPM-Solver++(2M), CFG 3",
        "parameters": count_parameters(net),
        "input": f"2 x 1 x 64 x {mel_frames(SECONDS) + 7} (cond + uncond)",
        "steps": steps,
        "network_evals": evals["n"],
        "sample_s": round(sample_s, 2),
        "vocode_s": round(vocode_s, 2),
        "total_s": round(total_s, 2),
        "per_eval_s": round(sample_s / max(1, evals["n"]), 3),
        "rtf": round(total_s / SECONDS, 3),
        "audio_seconds": SECONDS,
    }


def bench_audio_diffusion(steps: int, repeats: int) -> dict[str, Any]:
    try:
        from diffusers import DDIMScheduler, UNet2DModel
    except ImportError as exc:  # pragma: no cover - optional extra
        raise SystemExit(
            "diffusers is not installed: pip install --no-deps diffusers==0.42.1 "
            "(pinned in requirements/lock.txt)"
        ) from exc
    import torchaudio

    mel = AUDIO_DIFFUSION_256_MEL
    image_seconds = mel["x_res"] * mel["hop_length"] / mel["sample_rate"]
    images = int(np.ceil(SECONDS / image_seconds))
    torch.manual_seed(0)
    unet = UNet2DModel(**AUDIO_DIFFUSION_256_UNET).eval()
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    inverse_mel = torchaudio.transforms.InverseMelScale(
        n_stft=mel["n_fft"] // 2 + 1,
        n_mels=mel["n_mels"],
        sample_rate=mel["sample_rate"],
        norm="slaney",
        mel_scale="slaney",
    )
    griffin_lim = torchaudio.transforms.GriffinLim(
        n_fft=mel["n_fft"], hop_length=mel["hop_length"], n_iter=mel["n_iter"], power=2.0
    )

    def vocode(x: torch.Tensor) -> np.ndarray:
        # teticio's Mel.image_to_audio: 8-bit image -> dB in [-top_db, 0] -> power mel -> audio.
        image = ((x.clamp(-1, 1) + 1) * 127.5).round()
        db = image / 255 * mel["top_db"] - mel["top_db"]
        power_mel = torch.pow(10.0, db / 10)[:, 0]
        audio = griffin_lim(inverse_mel(power_mel))
        return audio.reshape(-1).numpy()

    with torch.no_grad():
        unet(torch.randn(images, 1, 256, 256), torch.tensor([999]))  # warm-up
        runs = []
        for r in range(repeats):
            scheduler.set_timesteps(steps)
            generator = torch.Generator().manual_seed(r)
            start = time.perf_counter()
            x = torch.randn(images, 1, 256, 256, generator=generator)
            for t in scheduler.timesteps:
                eps = unet(x, t).sample
                x = scheduler.step(eps, t, x, generator=generator).prev_sample
            sampled = time.perf_counter()
            audio = vocode(x)
            done = time.perf_counter()
            runs.append((sampled - start, done - sampled, done - start))
    sample_s, vocode_s, total_s = min(runs, key=lambda r: r[2])
    seconds = audio.size / mel["sample_rate"]
    return {
        "model": "diffusers UNet2DModel (teticio/audio-diffusion-256 config), DDIM",
        "parameters": count_parameters(unet),
        "input": f"{images} x 1 x 256 x 256 ({images} images of {image_seconds:.2f} s)",
        "steps": steps,
        "network_evals": steps,
        "sample_s": round(sample_s, 2),
        "vocode_s": round(vocode_s, 2),
        "total_s": round(total_s, 2),
        "per_eval_s": round(sample_s / steps, 3),
        "rtf": round(total_s / seconds, 3),
        "audio_seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (cores)")
    parser.add_argument("--steps", type=int, default=25, help="our sampler steps")
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs of ours")
    parser.add_argument("--ddim-repeats", type=int, default=1, help="best of N runs of theirs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [
        bench_fairchord(args.steps, args.repeats),
        bench_audio_diffusion(args.ddim_steps, args.ddim_repeats),
    ]
    report = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "weights": "random (architecture and sampler cost only)",
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default: active)"),
        "results": results,
        "speedup_total": round(results[1]["total_s"] / results[0]["total_s"], 1),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{report['threads']} threads, torch {report['torch']}, random weights, "
        f"OMP_WAIT_POLICY {report['omp_wait_policy']}, load average {report['load_average']}"
    )
    header = f"{'model':66} {'params':>8} {'evals':>5} {'sample s':>9} {'vocode s':>9} {'RTF':>7}"
    print(header)
    for r in results:
        print(
            f"{r['model']:66} {r['parameters'] / 1e6:7.1f}M {r['network_evals']:5d} "
            f"{r['sample_s']:9.2f} {r['vocode_s']:9.2f} {r['rtf']:7.3f}"
        )
    print(f"fairchord is {report['speedup_total']}x faster end to end for {SECONDS:g} s of audio")


if __name__ == "__main__":
    main()
