"""Generation speed: 10 s of audio on 2 CPU cores, ours vs. a diffusers mel-image UNet.

Both models have **random weights** (speed does not depend on what a network
learned; no weights are downloaded), so this measures architecture and sampler
cost only, in one process, one after the other:

- **fairchord**: :class:`training.diffusion.MelUNet` with the ``small`` config's
  sizes (the demo model), 64 mel bins x 1001 frames (10 s at 100 frames/s,
  padded to 1008), then :class:`generation.vocoder.GriffinLimVocoder` (NNLS +
  Griffin-Lim) to 16 kHz, once per sampler setting: the 25-step baseline
  (DPM-Solver++(2M), classifier-free guidance 3 at every step, float32: what
  ``generate`` used before), the candidates of :data:`CANDIDATES`, and the
  default (:data:`generation.request.DEFAULT_SAMPLING`, marked ``*``). The CLAP
  text embedding of the prompt (one text-tower call) is not included.
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

Reported: wall time of sampling, of vocoding (and the NNLS share of it), and of
both; the real-time factor (wall time / seconds of audio; below 1 is faster
than real time); network evaluations, counted as rows through the UNet (a
guided step is 2: conditional and unconditional); and, when
``benchmarks/generation_quality.py`` has written its report (``--quality``,
default ``docs/listening/quality.json``), each setting's Fréchet distance in
MSD-musicnn space and CLAP score beside its speed. The machine may be shared:
the load average is printed with the results, and on a busy machine run with
``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of spinning; with
other processes on the cores, spinning made a 2-thread forward 10-20x slower).

Run: ``OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/generation_speed.py [--json]``;
``--profile`` prints instead where one forward's time goes, per UNet part and
level, in float32 and in the default precision, and the sampler's own share.

Where the time went before (``--profile``, float32, 2 threads, shared machine
at load ~9): one batch-1 forward over 64 x 1008 took 721 ms, of which the
full-resolution level (32 channels x 64 x 1008: the first down block, the
decoder's last two blocks and the upsampling conv into that level) was 45 %,
the next level 25 %, the two lowest 9 % each and self-attention (lowest level,
1008 positions) 6 %; the sampler's own arithmetic 0.4 %. The baseline makes 50
such evaluations per clip (25 steps x 2 for guidance) and the vocoder took
0.37 s idle (NNLS ~70 ms, 32 Griffin-Lim iterations the rest). So the levers
are fewer evaluations (fewer steps, guidance only where it matters) and
cheaper ones (channels-last, bfloat16 on this CPU's AVX-512 BF16: 2-3x per
evaluation at batch 1 and 2), measured below.

Measured (2 threads, torch 2.14.1, OMP_WAIT_POLICY=PASSIVE, AVX-512 BF16, shared
machine, load average 3.6 at the start and 1.9 at the end, best of 2 runs, 1 for
the baseline and the peer; quality from ``docs/listening/quality.json``, the
demo checkpoint's report split: 6 held-back segments of 10 s, seeds 0-5):

======================================  =====  ========  ========  =====  ==========  ======
setting                                 evals  sample s  vocode s  RTF    FD_musicnn  CLAP
======================================  =====  ========  ========  =====  ==========  ======
baseline: 2M, 25 steps, full CFG, fp32  50     28.11     0.58      2.87   170.6       0.0758
2M, 10 steps, CFG interval, bf16        13     3.62      0.60      0.42   165.9       0.0753
2M, 8 steps, interval, bf16, GL 16      10     1.67      0.25      0.19   159.2       0.0754
**default**: 2M, 6 steps, interval,     7      1.18      0.59      0.18   166.1       0.0748
bf16, Griffin-Lim 32
2M, 10 steps, interval, fp32            13     4.64      0.53      0.52
2M, 10 steps, CFG at every step, bf16   20     3.69      0.45      0.41
audio-diffusion-256, DDIM 50            50     476.39    0.53      40.27
======================================  =====  ========  ========  =====  ==========  ======

The default was 16.2x faster than the baseline and 270x faster than the peer
end to end in that run (the load fell during it, so the rows run later gained;
in an earlier run at load 6.8-4.0 the default's RTF was 0.27, the baseline's
3.19, the peer's 52.1). Its Fréchet distance is 2.6 % below the baseline's and
its CLAP score 0.001 lower (the run's CLAP barely separates captions: real audio
scores 0.0756). Per evaluation, bfloat16 with channels-last halved the time in
the earlier run (0.55 s against 0.28 s at 13 evaluations); guidance on an
interval and fewer steps did the rest. Griffin-Lim's 32 iterations are
0.3-0.5 s of the vocoding (NNLS 0.13-0.26 s); 16 iterations saved 0.2-0.3 s and
measured no worse, but the vocoder default stays 32 (it is also what
``fairchord eval`` and the gate benchmarks hear).

(needs the ``bench`` extra: ``pip install --no-deps diffusers``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generation.request import BASELINE_SAMPLING, DEFAULT_SAMPLING, SamplingSettings
from generation.vocoder import GriffinLimVocoder
from training.checkpoint import build_denoiser
from training.diffusion.sampling import (
    cpu_computes_bf16,
    inference_setup,
    resolve_precision,
    sample_mels,
)
from training.diffusion.unet import MelUNet, count_parameters
from training.mel import mel_frames
from training.train_config import get_config

SECONDS = 10.0
QUALITY_JSON = Path(__file__).resolve().parents[1] / "docs" / "listening" / "quality.json"

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


GUIDANCE_INTERVAL = (0.28, 5.42)  # EDM2's interval (Kynkäänniemi et al. 2024, table 1)

# The settings compared with the 25-step baseline, here for speed and in
# generation_quality.py for quality ("auto": bfloat16 where the CPU computes it).
CANDIDATES: dict[str, SamplingSettings] = {
    "2m-10-interval": SamplingSettings(10, "dpmpp_2m", 3.0, GUIDANCE_INTERVAL, "auto", 32),
    "2m-10-full": SamplingSettings(10, "dpmpp_2m", 3.0, None, "auto", 32),
    "3m-10-interval": SamplingSettings(10, "dpmpp_3m", 3.0, GUIDANCE_INTERVAL, "auto", 32),
    "2m-8-interval": SamplingSettings(8, "dpmpp_2m", 3.0, GUIDANCE_INTERVAL, "auto", 32),
    "2m-8-interval-gl16": SamplingSettings(8, "dpmpp_2m", 3.0, GUIDANCE_INTERVAL, "auto", 16),
    "2m-6-interval": SamplingSettings(6, "dpmpp_2m", 3.0, GUIDANCE_INTERVAL, "auto", 32),
    "2m-10-interval-gl16": SamplingSettings(10, "dpmpp_2m", 3.0, GUIDANCE_INTERVAL, "auto", 16),
    "2m-12-interval": SamplingSettings(12, "dpmpp_2m", 3.0, GUIDANCE_INTERVAL, "auto", 32),
    "2m-10-interval-fp32": SamplingSettings(10, "dpmpp_2m", 3.0, GUIDANCE_INTERVAL, "fp32", 32),
}


def randomize_zero_inits(net: torch.nn.Module, *, seed: int = 0) -> None:
    """Our UNet starts its residual branches at zero; give them small random weights too."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in net.parameters():
            if param.dim() > 1 and not param.any():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)


def count_rows(net: torch.nn.Module) -> dict[str, int]:
    """Count network evaluations as rows through the UNet (a batched cond+uncond pair is 2)."""
    evals = {"n": 0}

    def hook(_: torch.nn.Module, args: tuple[Any, ...]) -> None:
        evals["n"] += int(args[0].shape[0])

    net.register_forward_pre_hook(hook)
    return evals


def bench_fairchord(settings: SamplingSettings, label: str, repeats: int) -> dict[str, Any]:
    config = get_config("small").replace(mel_mean=-5.0, mel_std=2.5)
    net = MelUNet(config.unet).eval()
    randomize_zero_inits(net)
    denoiser = build_denoiser(config, net).eval()
    vocoder = GriffinLimVocoder(n_iter=settings.griffin_lim_iters)
    frames = mel_frames(SECONDS)
    cond = torch.nn.functional.normalize(torch.randn(1, config.unet.cond_dim), dim=-1)
    evals = count_rows(net)
    options: dict[str, Any] = {
        "steps": settings.steps,
        "sampler": settings.sampler,
        "cfg_scale": settings.cfg,
        "cfg_interval": settings.cfg_interval,
        "precision": settings.precision,
    }
    sample_mels(denoiser, cond, frames=frames, **{**options, "steps": 2})  # warm-up
    runs = []
    for r in range(repeats):
        evals["n"] = 0
        start = time.perf_counter()
        mel = sample_mels(denoiser, cond, frames=frames, seed=r, **options)
        sampled = time.perf_counter()
        linear = vocoder.mel_to_linear(mel[0].exp())  # timed alone: the NNLS share
        inverted = time.perf_counter()
        wave = vocoder(mel[0])
        done = time.perf_counter()
        assert wave.shape == (int(SECONDS * 16000),) and linear.shape[1] == mel.shape[-1]
        vocode_s = done - inverted
        runs.append((sampled - start, vocode_s, inverted - sampled, sampled - start + vocode_s))
    sample_s, vocode_s, nnls_s, total_s = min(runs, key=lambda r: r[3])
    return {
        "model": f"fairchord small, {label}",
        "settings_requested": settings.to_json(),
        "settings": {**settings.to_json(), "precision_used": resolve_precision(settings.precision)},
        "parameters": count_parameters(net),
        "input": f"1 x 1 x 64 x {mel_frames(SECONDS) + 7} (cond; + uncond where guided)",
        "steps": settings.steps,
        "network_evals": evals["n"],
        "sample_s": round(sample_s, 2),
        "vocode_s": round(vocode_s, 2),
        "nnls_s": round(nnls_s, 3),
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


def profile_forward(precision: str, repeats: int = 3) -> dict[str, Any]:
    """Where one 10 s clip's seconds go: ms per UNet part for one batch-1 forward (best of
    ``repeats``), and the sampler's own share of a 10-step run."""
    config = get_config("small").replace(mel_mean=-5.0, mel_std=2.5)
    net = MelUNet(config.unet).eval()
    randomize_zero_inits(net)
    denoiser = build_denoiser(config, net).eval()
    parts: dict[str, torch.nn.Module] = {"conv_in": net.conv_in, "conv_out": net.conv_out}
    levels = len(config.unet.channel_mult)
    for name, module in net.named_modules():
        if (
            name.startswith(("down.", "up."))
            and name.count(".") == 3
            or (name.startswith("mid.") and name.count(".") == 2)
        ):
            stage, index = name.split(".")[0], name.split(".")[1]
            if stage == "down":
                level = int(index)
            elif stage == "mid":
                level = levels - 1
            else:  # the decoder runs its levels from the lowest resolution up
                level = levels - 1 - int(index)
            kind = "attention" if ".attn." in name else "res block"
            parts[f"{name} ({kind}, level {level})"] = module
    for i, module in enumerate(net.downsamplers):
        parts[f"downsampler {i} (level {i})"] = module
    for i, module in enumerate(net.upsamplers):
        parts[f"upsampler {i} (conv at level {levels - 2 - i})"] = module
    spent: dict[str, float] = dict.fromkeys(parts, 0.0)
    started: dict[str, float] = {}
    for name, module in parts.items():
        module.register_forward_pre_hook(
            lambda _m, _a, name=name: started.__setitem__(name, time.perf_counter())
        )
        module.register_forward_hook(
            lambda _m, _a, _o, name=name: spent.__setitem__(
                name, spent[name] + time.perf_counter() - started[name]
            )
        )
    frames = mel_frames(SECONDS) + 7
    x, sigma = torch.randn(1, 1, config.unet.n_mels, frames), torch.ones(1)
    cond = torch.nn.functional.normalize(torch.randn(1, config.unet.cond_dim), dim=-1)
    mode = resolve_precision(precision)
    best: tuple[float, dict[str, float]] = (float("inf"), {})
    with inference_setup(denoiser, precision=mode, device=torch.device("cpu")), torch.no_grad():
        denoiser(x, sigma, cond)
        for _ in range(repeats):
            spent.update(dict.fromkeys(spent, 0.0))
            start = time.perf_counter()
            denoiser(x, sigma, cond)
            total = time.perf_counter() - start
            if total < best[0]:
                best = (total, dict(spent))
    total, by_part = best
    by_level: dict[str, float] = {}
    for name, seconds in by_part.items():
        level = name.rsplit("level ", 1)[-1].rstrip(")") if "level" in name else "0"
        key = "attention" if "attention" in name else f"level {level}"
        by_level[key] = by_level.get(key, 0.0) + seconds
    # The sampler's own arithmetic: a 10-step run minus the time inside the network.
    inside = {"s": 0.0}
    net.register_forward_pre_hook(lambda _m, _a: started.__setitem__("net", time.perf_counter()))
    net.register_forward_hook(
        lambda _m, _a, _o: inside.__setitem__(
            "s", inside["s"] + time.perf_counter() - started["net"]
        )
    )
    start = time.perf_counter()
    sample_mels(denoiser, cond, frames=frames, steps=10, precision=precision)
    run = time.perf_counter() - start
    return {
        "precision": mode,
        "forward_ms": round(total * 1e3, 1),
        "by_part_ms": {k: round(v * 1e3, 1) for k, v in by_part.items()},
        "by_level_share": {k: round(v / total, 3) for k, v in sorted(by_level.items())},
        "sampler_overhead_share": round(1 - inside["s"] / run, 3),
    }


def quality_rows(path: Path) -> dict[str, dict[str, Any]]:
    """The report split's figures from benchmarks/generation_quality.py's JSON, keyed by the
    settings' JSON (the tune split's for settings the report split did not run)."""
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text(encoding="utf-8"))
    rows: dict[str, dict[str, Any]] = {}
    for split in ("tune", "report"):  # the report split's figures win
        for row in doc.get(split, []):
            rows[json.dumps(row["settings"], sort_keys=True)] = {**row, "split": split}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (cores)")
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs of each setting")
    parser.add_argument(
        "--baseline-repeats", type=int, default=1, help="best of N runs of the 25-step baseline"
    )
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--ddim-repeats", type=int, default=1, help="best of N runs of theirs")
    parser.add_argument(
        "--quality",
        type=Path,
        default=QUALITY_JSON,
        help="generation_quality.py's report, printed beside the speed (if it exists)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="only print where a forward's time goes"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.profile:
        load = [round(v, 2) for v in os.getloadavg()]
        profiles = [profile_forward("fp32"), profile_forward("auto")]
        print(json.dumps({"load_average": load, "profiles": profiles}, indent=2))
        return
    load_before = [round(v, 2) for v in os.getloadavg()]
    ours = {"baseline": BASELINE_SAMPLING, **CANDIDATES}
    if DEFAULT_SAMPLING not in ours.values():
        ours["default"] = DEFAULT_SAMPLING
    results = []
    for name, settings in ours.items():
        repeats = args.baseline_repeats if name == "baseline" else args.repeats
        row = bench_fairchord(settings, name, repeats)
        row["default"] = settings == DEFAULT_SAMPLING
        results.append(row)
    peer = bench_audio_diffusion(args.ddim_steps, args.ddim_repeats)
    quality = quality_rows(args.quality)
    for row in results:
        key = json.dumps(row["settings_requested"], sort_keys=True)
        if key in quality:
            row["quality"] = {
                k: quality[key][k] for k in ("fd_musicnn", "clap_score", "clips", "split")
            }
    default = next(r for r in results if r["default"])
    baseline = results[0]
    report = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_bf16": cpu_computes_bf16(),
        "weights": "random (architecture and sampler cost only)",
        "load_average_before": load_before,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default: active)"),
        "results": [*results, peer],
        "quality_report": str(args.quality) if quality else None,
        "speedup_total": round(peer["total_s"] / default["total_s"], 1),
        "speedup_over_baseline": round(baseline["total_s"] / default["total_s"], 1),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{report['threads']} threads, torch {report['torch']}, random weights, "
        f"OMP_WAIT_POLICY {report['omp_wait_policy']}, CPU bfloat16 {report['cpu_bf16']}, "
        f"load average {report['load_average_before']} before, {report['load_average']} after"
    )
    header = (
        f"{'model':40} {'params':>7} {'evals':>5} {'sample s':>8} {'vocode s':>8} "
        f"{'RTF':>7} {'FD_musicnn':>10} {'CLAP':>6}"
    )
    print(header)
    for r in report["results"]:
        q = r.get("quality", {})
        fd = f"{q['fd_musicnn']:10.2f}" if q else f"{'':>10}"
        clap = f"{q['clap_score']:6.3f} {q['split']}" if q else f"{'':>6}"
        label = ("* " if r.get("default") else "") + r["model"][:38]
        print(
            f"{label:40} {r['parameters'] / 1e6:6.1f}M {r['network_evals']:5d} "
            f"{r['sample_s']:8.2f} {r['vocode_s']:8.2f} {r['rtf']:7.3f} {fd} {clap}"
        )
    d = default["settings"]
    print(
        f"default: {d['sampler']} {d['steps']} steps, cfg {d['cfg']} on sigma interval "
        f"{d['cfg_interval']}, {d['precision_used']}, Griffin-Lim {d['griffin_lim_iters']} "
        f"iterations (NNLS {default['nnls_s']} s of the vocoding)"
    )
    if quality:
        print(f"quality: {args.quality} (report split; see generation_quality.py)")
    print(
        f"fairchord's default is {report['speedup_total']}x faster end to end than "
        f"audio-diffusion-256 and {report['speedup_over_baseline']}x faster than the 25-step "
        f"baseline for {SECONDS:g} s of audio"
    )


if __name__ == "__main__":
    main()
