"""Sample quality of a checkpoint on its run's held-back segments, in CLAP and musicnn space.

Four sets of audio, each made from the same held-back segments (whole
recordings kept out of training by :func:`training.snapshot_data.split_segments`),
cropped to the same length and embedded with the run's own CLAP and, when given,
with MSD-musicnn (:mod:`training.musicnn.embedder`):

- ``real``: the original audio of each segment, decoded from the object store;
- ``vocoded_real``: the segment's stored log-mel through the vocoder — the
  ceiling, since generated mels pass through the same vocoder;
- ``trained``: sampled by the checkpoint (EMA weights) for the segment's caption;
- ``untrained``: sampled by the same architecture at its seeded initialisation.

Figures per set: ``fd_clap``, the Fréchet distance between its CLAP audio
embeddings and those of ``real`` (Gaussian fit, as FID/FAD), and
``clap_score``, the mean cosine between each clip's audio embedding and its
caption's text embedding. ``gap_closed`` is the share of the FD_clap gap
between ``untrained`` and ``vocoded_real`` that training closed:
``(fd_untrained - fd_trained) / (fd_untrained - fd_vocoded_real)``.

The run's CLAP was trained on the same corpus as the diffusion model, so it is
not an outside judge: it may have learned to overlook exactly what the
generator gets wrong. ``fd_musicnn`` is the same Fréchet distance in the space
of a pretrained music tagger the project did not train (MSD-musicnn), with its
own ``gap_closed_musicnn``; the CLAP figures stay for the text–audio score,
which needs a text encoder. musicnn describes 3 s patches; a clip is the mean of
its patches' vectors, and a clip shorter than 3 s is repeat-padded to one patch
(only whole patches count, so a 5.12 s clip is described by its first 3 s).

With fewer clips than embedding dimensions the covariance estimates are
rank-deficient and FD is biased upwards; every set uses the same clips, so the
figures compare with each other, not with FAD values published elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from scipy import linalg

from training.diffusion.denoiser import Denoiser
from training.diffusion.sampling import sample_mels
from training.diffusion.unet import MelUNet
from training.mel import DEFAULT_MEL_CONFIG

SETS = ("real", "vocoded_real", "trained", "untrained")


# musicnn's layer before the tags: 200 dimensions rather than the 1506 of the pooled
# mid-end (mean and max, 2 x 753), so that the covariance estimated from a few dozen
# clips is less rank-deficient and the Fréchet distance less dominated by its bias.
MUSICNN_FEATURE = "penultimate"


class ClapLike(Protocol):
    def embed_audio_clip(self, wave_16k: np.ndarray) -> np.ndarray: ...

    def embed_text(self, texts: list[str]) -> np.ndarray: ...


class MusicnnLike(Protocol):
    """What :class:`training.musicnn.embedder.MusicnnEmbedder` offers: named outputs,
    one row per 3 s patch of 16 kHz mono audio."""

    def patch_outputs(self, wave_16k: np.ndarray) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class HeldBackClip:
    """One held-back segment: its real audio, stored log-mel and caption."""

    recording_id: int
    segment_index: int
    caption: str
    wave_16k: np.ndarray  # float32, already cropped to the evaluated length
    mel_log: torch.Tensor  # [n_mels, frames], natural-log mel, same length


@dataclass
class EvalReport:
    checkpoint_sha256: str
    clips: int
    seconds: float
    steps: int
    sampler: str
    cfg: float
    seed: int
    fd_clap: dict[str, float]
    clap_score: dict[str, float]
    gap_closed: float | None
    # None when no musicnn embedder was given (the CLAP figures are still valid).
    fd_musicnn: dict[str, float] | None
    gap_closed_musicnn: float | None
    recordings: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``a`` and ``b``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two [n, d] arrays of one d, got {a.shape} and {b.shape}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("need at least 2 embeddings per set to fit a covariance")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    if not np.all(np.isfinite(covmean)):
        eps = np.eye(a.shape[1]) * 1e-6
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = np.real(covmean)
    value = float(
        np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean)
    )
    return max(value, 0.0)


def initial_denoiser(trained: Denoiser, seed: int) -> Denoiser:
    """The trained denoiser's architecture and normalisation at a seeded initialisation."""
    inner = getattr(trained.inner_model, "module", trained.inner_model)
    if not isinstance(inner, MelUNet):
        raise TypeError(f"expected a MelUNet inside the denoiser, got {type(inner).__name__}")
    torch.manual_seed(seed)
    fresh = Denoiser(
        MelUNet(inner.config),
        sigma_data=trained.sigma_data,
        p_mean=trained.p_mean,
        p_std=trained.p_std,
        mel_mean=trained.mel_mean,
        mel_std=trained.mel_std,
    )
    return fresh.eval()


def sample_waves(
    denoiser: Denoiser,
    text_embeddings: np.ndarray,
    vocoder: Callable[[torch.Tensor], np.ndarray],
    *,
    frames: int,
    steps: int,
    cfg: float,
    sampler: str,
    seed: int,
    progress: Callable[[], None] | None = None,
) -> list[np.ndarray]:
    """One vocoded sample per text embedding, seeds ``seed, seed + 1, …``."""
    waves = []
    for i, emb in enumerate(text_embeddings):
        mel = sample_mels(
            denoiser,
            emb[None, :],
            frames=frames,
            steps=steps,
            cfg_scale=cfg,
            sampler=sampler,
            seed=seed + i,
        )[0]
        waves.append(vocoder(mel))
        if progress is not None:
            progress()
    return waves


def embed_clips(embedder: ClapLike, waves: Sequence[np.ndarray]) -> np.ndarray:
    return np.stack([np.asarray(embedder.embed_audio_clip(w), np.float32) for w in waves])


def musicnn_clip_vectors(embedder: MusicnnLike, waves: Sequence[np.ndarray]) -> np.ndarray:
    """``[clips, 200]``: per clip, the mean of its patches' :data:`MUSICNN_FEATURE` rows."""
    return np.stack(
        [
            np.asarray(embedder.patch_outputs(np.asarray(w, np.float32))[MUSICNN_FEATURE])
            .astype(np.float64)
            .mean(axis=0)
            for w in waves
        ]
    )


def frechet_to_real(embeddings: dict[str, np.ndarray]) -> dict[str, float]:
    """Each set's Fréchet distance to the ``real`` set."""
    return {name: frechet_distance(embeddings[name], embeddings["real"]) for name in SETS}


def gap_closed(fd: dict[str, float]) -> float | None:
    """The share of the untrained-to-ceiling gap that training closed (None without a gap)."""
    gap = fd["untrained"] - fd["vocoded_real"]
    return (fd["untrained"] - fd["trained"]) / gap if gap > 0 else None


def evaluate(
    denoiser: Denoiser,
    clips: Sequence[HeldBackClip],
    *,
    embedder: ClapLike,
    vocoder: Callable[[torch.Tensor], np.ndarray],
    checkpoint_sha256: str,
    musicnn: MusicnnLike | None = None,
    steps: int = 25,
    cfg: float = 3.0,
    sampler: str = "dpmpp_2m",
    seed: int = 0,
    progress: Callable[[], None] | None = None,
) -> EvalReport:
    """FD_clap and CLAP score of the four sets, and FD_musicnn when ``musicnn`` is given
    (see the module docstring)."""
    if len(clips) < 2:
        raise ValueError(f"need at least 2 held-back clips, got {len(clips)}")
    frames = int(clips[0].mel_log.shape[-1])
    if any(int(c.mel_log.shape[-1]) != frames for c in clips):
        raise ValueError("every held-back clip must have the same number of frames")
    text = np.asarray(embedder.embed_text([c.caption for c in clips]), np.float32)
    waves: dict[str, list[np.ndarray]] = {
        "real": [c.wave_16k for c in clips],
        "vocoded_real": [vocoder(c.mel_log) for c in clips],
    }
    for name, model in (("trained", denoiser), ("untrained", initial_denoiser(denoiser, seed))):
        waves[name] = sample_waves(
            model,
            text,
            vocoder,
            frames=frames,
            steps=steps,
            cfg=cfg,
            sampler=sampler,
            seed=seed,
            progress=progress,
        )
    audio = {name: embed_clips(embedder, waves[name]) for name in SETS}
    fd = frechet_to_real(audio)
    score = {name: float(np.mean(np.sum(audio[name] * text, axis=1))) for name in SETS}
    fd_musicnn = None
    if musicnn is not None:
        fd_musicnn = frechet_to_real(
            {name: musicnn_clip_vectors(musicnn, waves[name]) for name in SETS}
        )
    return EvalReport(
        checkpoint_sha256=checkpoint_sha256,
        clips=len(clips),
        seconds=frames * DEFAULT_MEL_CONFIG.hop_length / DEFAULT_MEL_CONFIG.sample_rate,
        steps=steps,
        sampler=sampler,
        cfg=cfg,
        seed=seed,
        fd_clap=fd,
        clap_score=score,
        gap_closed=gap_closed(fd),
        fd_musicnn=fd_musicnn,
        gap_closed_musicnn=gap_closed(fd_musicnn) if fd_musicnn is not None else None,
        recordings=sorted({c.recording_id for c in clips}),
    )
