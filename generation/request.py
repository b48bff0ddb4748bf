"""What a generation asks for (:class:`GenerationRequest`) and what came of it, per clip."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generation.gate import GateResult
from generation.prompt_screen import ScreenResult
from generation.variation import variation_sigmas
from training.diffusion.sampling import PRECISIONS, SAMPLERS

FORMATS = ("wav", "flac")
MAX_SECONDS = 120.0
MAX_CLIPS = 64


@dataclass(frozen=True)
class SamplingSettings:
    """How a clip is sampled and vocoded: what the generation-speed and -quality
    benchmarks compare, and what :class:`GenerationRequest` defaults to."""

    steps: int
    sampler: str
    cfg: float
    # Guidance only at lo < sigma <= hi (None: at every step); see CFGDenoiser.
    cfg_interval: tuple[float, float] | None
    precision: str  # auto | fp32 | bf16 (training.diffusion.sampling.resolve_precision)
    griffin_lim_iters: int

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "sampler": self.sampler,
            "cfg": self.cfg,
            "cfg_interval": list(self.cfg_interval) if self.cfg_interval else None,
            "precision": self.precision,
            "griffin_lim_iters": self.griffin_lim_iters,
        }


# generate's settings until the generation-speed work: kept as the benchmarks' reference.
BASELINE_SAMPLING = SamplingSettings(
    steps=25,
    sampler="dpmpp_2m",
    cfg=3.0,
    cfg_interval=None,
    precision="fp32",
    griffin_lim_iters=32,
)
# What benchmarks/generation_speed.py and generation_quality.py justify (see their docstrings):
# the cheapest candidate within 5 % of the baseline's FD_musicnn on the tune split, and
# within it on the report split (RTF 0.27 against the baseline's 3.19 in the same run).
DEFAULT_SAMPLING = SamplingSettings(
    steps=6,
    sampler="dpmpp_2m",
    cfg=3.0,
    cfg_interval=(0.28, 5.42),  # guides one step of six (sigma 0.97); EDM2's interval
    precision="auto",
    griffin_lim_iters=32,
)


@dataclass
class GenerationRequest:
    """What to generate. ``init_audio`` (16 kHz mono) turns it into audio-to-audio variation."""

    prompt: str
    seconds: float = 10.0
    seed: int = 0
    steps: int = DEFAULT_SAMPLING.steps
    cfg: float = DEFAULT_SAMPLING.cfg
    sampler: str = DEFAULT_SAMPLING.sampler
    cfg_interval: tuple[float, float] | None = DEFAULT_SAMPLING.cfg_interval
    precision: str = DEFAULT_SAMPLING.precision
    n: int = 4
    out_dir: Path = field(default_factory=lambda: Path("generations"))
    format: str = "wav"
    init_audio: np.ndarray | None = None
    init_audio_sha256: str | None = None
    strength: float = 0.6
    allow_tainted: bool = False
    # Put the prompt itself in the Content Credential (its sha256 is always there).
    credential_prompt: bool = False

    def __post_init__(self) -> None:
        self.sampler = self.sampler.replace("-", "_")
        self.out_dir = Path(self.out_dir)
        problems = []
        if not isinstance(self.prompt, str):
            problems.append(f"prompt must be text, got {type(self.prompt).__name__}")
        if not (math.isfinite(self.seconds) and 0 < self.seconds <= MAX_SECONDS):
            problems.append(f"seconds={self.seconds} must be in (0, {MAX_SECONDS:g}]")
        if not 1 <= self.steps <= 1000:
            problems.append(f"steps={self.steps} must be in [1, 1000]")
        if not (math.isfinite(self.cfg) and 0 <= self.cfg <= 30):
            problems.append(f"cfg={self.cfg} must be in [0, 30]")
        if self.sampler not in SAMPLERS:
            allowed = ", ".join(s.replace("_", "-") for s in sorted(SAMPLERS))
            problems.append(f"sampler {self.sampler!r} unknown; expected one of {allowed}")
        if self.cfg_interval is not None:
            lo, hi = self.cfg_interval
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
                problems.append(f"cfg interval {self.cfg_interval} must be (lo, hi), 0 <= lo < hi")
        if self.precision not in PRECISIONS:
            problems.append(
                f"precision {self.precision!r} unknown; expected one of {', '.join(PRECISIONS)}"
            )
        if not 1 <= self.n <= MAX_CLIPS:
            problems.append(f"n={self.n} must be in [1, {MAX_CLIPS}]")
        if self.format not in FORMATS:
            problems.append(f"format {self.format!r} unknown; expected one of {FORMATS}")
        if not 0 <= self.seed < 2**63 - MAX_CLIPS:
            problems.append(f"seed={self.seed} must be a non-negative 63-bit integer")
        if self.init_audio is not None:
            if not 0 < self.strength <= 1:
                problems.append(f"strength={self.strength} must be in (0, 1]")
            wave = np.asarray(self.init_audio)
            if wave.ndim != 1 or wave.size == 0 or not np.all(np.isfinite(wave)):
                problems.append("init audio must be non-empty, finite, mono 16 kHz samples")
        if problems:
            raise ValueError("; ".join(problems))

    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.n)]

    def sampling_used(self) -> dict[str, Any]:
        """The guidance interval and precision the clips are actually sampled with, for the
        record: a variation (``init_audio``) guides every step in float32; otherwise
        ``auto`` precision is resolved on this CPU."""
        if self.init_audio is not None:
            return {"cfg_interval": None, "precision": "fp32"}
        from training.diffusion.sampling import resolve_precision

        interval = list(self.cfg_interval) if self.cfg_interval is not None else None
        return {"cfg_interval": interval, "precision": resolve_precision(self.precision)}

    def sampler_steps(self) -> int:
        """Sampler steps per clip (a variation runs only the tail of the schedule)."""
        if self.init_audio is None:
            return self.steps
        return len(variation_sigmas(self.steps, self.strength)) - 1


@dataclass
class ClipOutcome:
    index: int
    seed: int
    generation_id: int
    verdict: str  # allow | block
    reasons: list[str]
    gate: dict[str, Any]
    audio_path: Path | None = None
    sidecar_path: Path | None = None
    png_path: Path | None = None
    output_sha256: str | None = None
    # The sidecar's content_credentials entry: status signed | unsigned, label, signer.
    credential: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "seed": self.seed,
            "generation_id": self.generation_id,
            "verdict": self.verdict,
            "reasons": self.reasons,
            "track_similarity": self.gate.get("track_similarity"),
            "nearest": self.gate.get("nearest"),
            "audio": str(self.audio_path) if self.audio_path else None,
            "sidecar": str(self.sidecar_path) if self.sidecar_path else None,
            "png": str(self.png_path) if self.png_path else None,
            "output_sha256": self.output_sha256,
            "content_credentials": self.credential,
        }


@dataclass
class GenerationOutcome:
    """What happened: the screen's verdict and, unless the prompt was blocked, every clip."""

    status: str  # allowed | blocked_prompt | blocked_gate (at least one clip blocked)
    prompt: str
    checkpoint_id: int
    screen: ScreenResult
    clips: list[ClipOutcome] = field(default_factory=list)
    generation_ids: list[int] = field(default_factory=list)
    tainted_override: bool = False

    @property
    def allowed(self) -> list[ClipOutcome]:
        return [c for c in self.clips if c.verdict == "allow"]

    @property
    def blocked(self) -> list[ClipOutcome]:
        return [c for c in self.clips if c.verdict == "block"]

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "prompt": self.prompt,
            "checkpoint_id": self.checkpoint_id,
            "prompt_screen": self.screen.to_json(),
            "generation_ids": self.generation_ids,
            "tainted_override": self.tainted_override,
            "clips": [c.to_json() for c in self.clips],
        }


@dataclass
class SampledClip:
    """One sampled, vocoded clip and (once gated) the gate's decision, before it is recorded."""

    index: int
    seed: int
    mel: torch.Tensor  # [n_mels, frames], log units
    wave: np.ndarray  # what the gate hears and what is written
    gain: float
    seconds_taken: float
    gate: GateResult | None = None
