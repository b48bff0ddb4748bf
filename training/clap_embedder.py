"""The CLAP embedder: LAION-CLAP audio and text towers, loaded from a local checkpoint only.

One signal path: every clip reaches the embedder as 16 kHz mono (the model's
band), and is brought to CLAP's 48 kHz here, in 10 s windows with 5 s overlap.
Training segments, calibration clips, generated audio and audio handed to
``fairchord gate check`` are therefore embedded identically.

Checkpoints:

* our own, written by ``fairchord clap train`` (``$FAIRCHORD_HOME/clap/clap.pt``):
  ``{"state_dict": ..., "config": {"amodel": ..., "tmodel": "transformer"}}``;
* a public LAION-CLAP checkpoint for the same towers, placed by hand, e.g.
  ``630k-audioset-best.pt`` (HTSAT-tiny) in ``$FAIRCHORD_HOME/clap/`` and passed
  with ``--clap PATH``. Only the ``transformer`` text tower builds offline; a
  public checkpoint's RoBERTa text weights do not load here (its audio tower does).

Nothing is ever downloaded: a missing file is a :class:`ClapCheckpointMissing`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from provenance.hashing import sha256_file
from provenance.settings import fairchord_home

log = logging.getLogger(__name__)

MODEL_RATE = 16_000
CLAP_RATE = 48_000
WINDOW_S = 10.0
HOP_S = 5.0
DEFAULT_AMODEL = "HTSAT-tiny"
DEFAULT_TMODEL = "transformer"
EMBED_BATCH = 8  # windows per forward pass: ~50 MB of activations each on the CPU


class ClapCheckpointMissing(FileNotFoundError):
    """No CLAP checkpoint where one was expected."""


def default_clap_path() -> Path:
    return fairchord_home() / "clap" / "clap.pt"


def _laion_clap() -> Any:
    # laion-clap asks the hub for tokenizers at import time; offline, that import
    # takes seconds instead of minutes of retries.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import laion_clap
    except ImportError as exc:  # pragma: no cover - the stack pins it
        raise ImportError("laion-clap is required: pip install laion-clap") from exc
    return laion_clap


def build_clap_module(*, amodel: str = DEFAULT_AMODEL, tmodel: str = DEFAULT_TMODEL) -> Any:
    """A freshly initialised ``laion_clap.CLAP_Module`` on the CPU (no weights loaded)."""
    if tmodel != "transformer":
        raise ValueError(f"text tower {tmodel!r} cannot be built offline; allowed: 'transformer'")
    laion_clap = _laion_clap()
    with warnings.catch_warnings():
        # HTSAT builds its attention masks with torch.meshgrid's old default; harmless.
        warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
        return laion_clap.CLAP_Module(
            enable_fusion=False, amodel=amodel, tmodel=tmodel, device="cpu"
        )


def tokenize(texts: Sequence[str]) -> torch.Tensor:
    from laion_clap.clap_module import tokenize as clip_bpe

    _laion_clap()
    return clip_bpe(list(texts))


def audio_windows(
    wave_16k: np.ndarray, *, window_s: float = WINDOW_S, hop_s: float = HOP_S
) -> np.ndarray:
    """Split 16 kHz audio into [n, window] windows; short clips repeat-pad to one window."""
    wave = np.asarray(wave_16k, dtype=np.float32).reshape(-1)
    if wave.size == 0:
        raise ValueError("empty audio: nothing to embed")
    size = int(window_s * MODEL_RATE)
    hop = int(hop_s * MODEL_RATE)
    if wave.size <= size:
        reps = int(np.ceil(size / wave.size))
        return np.tile(wave, reps)[:size][None, :]
    starts = list(range(0, wave.size - size + 1, hop))
    if starts[-1] + size < wave.size:
        starts.append(wave.size - size)
    return np.stack([wave[s : s + size] for s in starts])


def to_clap_rate(windows_16k: torch.Tensor) -> torch.Tensor:
    import torchaudio.functional as AF

    return AF.resample(windows_16k, MODEL_RATE, CLAP_RATE)


def audio_inputs(module: Any, windows_48k: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """laion-clap's per-clip input dicts for exactly-10 s windows (no random cropping)."""
    from laion_clap.training.data import get_audio_features

    inputs = []
    for window in windows_48k:
        features: dict[str, torch.Tensor] = {}
        get_audio_features(
            features,
            window,
            window.shape[-1],
            data_truncating="rand_trunc",
            data_filling="repeatpad",
            audio_cfg=module.model_cfg["audio_cfg"],
            require_grad=window.requires_grad,
        )
        inputs.append(features)
    return inputs


@dataclass
class ClapEmbedder:
    module: Any
    sha256: str
    path: Path
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None = None) -> ClapEmbedder:
        path = Path(path) if path else default_clap_path()
        if not path.is_file():
            raise ClapCheckpointMissing(
                f"no CLAP checkpoint at {path}: train one on your corpus with "
                "`fairchord clap train`, or place a LAION-CLAP HTSAT-tiny checkpoint "
                "(e.g. 630k-audioset-best.pt) there and pass --clap PATH"
            )
        blob = torch.load(path, map_location="cpu", weights_only=False)
        config = dict(blob.get("config") or {}) if isinstance(blob, dict) else {}
        state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
        state = {k.removeprefix("module."): v for k, v in state.items()}
        state.pop("text_branch.embeddings.position_ids", None)
        module = build_clap_module(
            amodel=config.get("amodel", DEFAULT_AMODEL), tmodel=config.get("tmodel", DEFAULT_TMODEL)
        )
        missing, unexpected = module.model.load_state_dict(state, strict=False)
        # A text tower may be absent (a public checkpoint's RoBERTa weights do not fit),
        # but audio weights left at their random initialisation would feed the gate noise.
        audio_params = {
            name
            for name, _ in module.model.named_parameters()
            if name.startswith(("audio_branch.", "audio_projection."))
        }
        lacking = [name for name in missing if name in audio_params]
        if lacking:
            raise ValueError(
                f"{path} is not a {config.get('amodel', DEFAULT_AMODEL)} CLAP checkpoint: "
                f"its audio tower lacks {len(lacking)} of {len(audio_params)} weights "
                f"(e.g. {lacking[0]})"
            )
        if missing:
            log.warning(
                "CLAP checkpoint %s lacks %d tensors (e.g. %s)", path, len(missing), missing[0]
            )
        if unexpected:
            log.info("CLAP checkpoint %s has %d unused tensors", path, len(unexpected))
        module.model.eval()
        return cls(module=module, sha256=sha256_file(path), path=path, config=config)

    @torch.no_grad()
    def embed_audio(self, wave_16k: np.ndarray) -> np.ndarray:
        """One L2-normalised embedding per 10 s window (5 s hop): [n_windows, D]."""
        windows = torch.from_numpy(audio_windows(wave_16k))
        return self.embed_windows(windows)

    @torch.no_grad()
    def embed_windows(
        self, windows_16k: torch.Tensor, *, batch_size: int = EMBED_BATCH
    ) -> np.ndarray:
        """L2-normalised embeddings of [n, 10 s] windows, ``batch_size`` windows per pass."""
        if windows_16k.ndim != 2 or windows_16k.shape[0] == 0:
            raise ValueError(f"need windows [n >= 1, samples], got {tuple(windows_16k.shape)}")
        self.module.model.eval()
        # A whole recording in one pass would hold every window's activations at once
        # (tens of MB each); fixed-size passes keep memory flat for any length.
        parts = []
        for chunk in torch.split(windows_16k.float(), batch_size):
            inputs = audio_inputs(self.module, to_clap_rate(chunk))
            parts.append(F.normalize(self.module.model.get_audio_embedding(inputs), dim=-1))
        return torch.cat(parts).numpy().astype(np.float32)

    def embed_audio_clip(self, wave_16k: np.ndarray) -> np.ndarray:
        """One embedding for a clip: its first 10 s window (padded if shorter)."""
        wave = np.asarray(wave_16k, dtype=np.float32).reshape(-1)[: int(WINDOW_S * MODEL_RATE)]
        return self.embed_audio(wave)[0]

    def embed_clips(self, waves_16k: Sequence[np.ndarray]) -> np.ndarray:
        """``embed_audio_clip`` of many clips at once, ``EMBED_BATCH`` per pass: [n, D]."""
        if not waves_16k:
            return np.zeros((0, self.dim), dtype=np.float32)
        size = int(WINDOW_S * MODEL_RATE)
        firsts = [
            audio_windows(np.asarray(w, dtype=np.float32).reshape(-1)[:size])[0] for w in waves_16k
        ]
        return self.embed_windows(torch.from_numpy(np.stack(firsts)))

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> np.ndarray:
        """L2-normalised caption embeddings: [n, D]."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.module.model.eval()
        out = self.module.model.encode_text(tokenize(texts), device="cpu")
        return F.normalize(out, dim=-1).numpy().astype(np.float32)

    @property
    def dim(self) -> int:
        return int(self.module.model.audio_projection[-1].out_features)
