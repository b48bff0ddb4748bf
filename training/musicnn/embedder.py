"""The gate's pretrained music embedder: MSD-musicnn, loaded from the ``musicnn`` wheel.

The weights are the TensorFlow checkpoint that ships inside the ``musicnn`` package on
the package index (installed with ``--no-deps`` as a data package: its own code needs
TensorFlow 1-style APIs and numpy < 1.17, and is never imported). They are read
directly from the installed files (:mod:`training.musicnn.tf_bundle`) and pinned by
sha256, so nothing is downloaded and no TensorFlow is needed at any point.

A clip's embedding windows are 3 s patches (the length the model was trained on), each
described by the mid-end features pooled over the patch (mean and max, 2 × 753) — the
layer that describes timbre and texture before the tagging head narrows it to 50 tags.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from provenance.hashing import sha256_bytes, sha256_file
from training.musicnn.frontend import HOP, PATCH_FRAMES, log_mel, patches
from training.musicnn.model import Musicnn
from training.musicnn.tf_bundle import read_bundle

__all__ = [
    "MSD_LABELS",
    "MusicnnEmbedder",
    "MusicnnUnavailable",
    "PROVENANCE",
    "WEIGHT_FILES",
]

PACKAGE = "musicnn"
PACKAGE_VERSION = "0.1.0"
MODEL_DIR = "MSD_musicnn"
# The checkpoint inside musicnn-0.1.0's wheel; anything else is refused.
WEIGHT_FILES = {
    ".index": "87f3e0f3550c8d3bafc840374003e5c8af5eeb5ecf6add61af09a7822d3282c8",
    ".data-00000-of-00001": "8579734ee6388f799ed0def4bbd0d1fdcbeaf213ef2a9dc860917bd76a303de6",
}
FEATURES = ("pool", "mean_pool", "max_pool", "penultimate", "logits")
DEFAULT_FEATURE = "pool"

MSD_LABELS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s",
    "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
    "60s", "rnb", "indie pop", "sad", "House", "happy",
)  # fmt: skip

# What the gate's detector itself learned from: shown by the audit beside the snapshot.
PROVENANCE: dict[str, Any] = {
    "name": "MSD-musicnn",
    "kind": "musicnn",
    "task": "music audio tagging: the 50 most frequent Last.fm tags",
    "training_data": (
        "Million Song Dataset audio previews with Last.fm tag annotations (the MSD "
        "top-50 tagging split); the previews are commercial recordings used for research"
    ),
    "licence": "ISC",
    "authors": "Jordi Pons, Xavier Serra (Music Technology Group, Universitat Pompeu Fabra)",
    "reference": "musicnn: pre-trained convolutional neural networks for music audio tagging "
    "(ISMIR 2019 late-breaking demo)",
    "source_package": f"{PACKAGE}=={PACKAGE_VERSION}",
    "source_files": [f"{PACKAGE}/{MODEL_DIR}/{name}" for name in WEIGHT_FILES],
    "weights_sha256": dict(WEIGHT_FILES),
}


class MusicnnUnavailable(RuntimeError):
    """The musicnn weights are missing or are not the pinned ones."""


def package_dir() -> Path:
    """Where the installed ``musicnn`` package's files are (its code is not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MusicnnUnavailable(
            f"the {PACKAGE} package is not installed; install its weights with "
            f"`pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def verify_pinned(root: Path, weight_files: Mapping[str, str]) -> None:
    """Refuse a checkpoint directory whose files are missing or not the pinned ones."""
    for name, want in weight_files.items():
        path = root / name
        if not path.is_file():
            raise MusicnnUnavailable(
                f"{path} is missing: install the weights with "
                f"`pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}`"
            )
        actual = sha256_file(path)
        if actual != want:
            raise MusicnnUnavailable(
                f"{path} has sha256 {actual}, not the pinned {want}; reinstall "
                f"{PACKAGE}=={PACKAGE_VERSION}"
            )


def patch_levels_db(wave_16k: np.ndarray) -> np.ndarray:
    """RMS level (dBFS) of the audio under each 3 s patch :func:`frontend.patches` cuts: a
    window of digital silence or near-silence says nothing about what the music is."""
    wave = np.asarray(wave_16k, dtype=np.float64)
    step = PATCH_FRAMES * HOP
    count = max(1, (len(wave) // HOP + 1 - PATCH_FRAMES) // PATCH_FRAMES + 1)
    if len(wave) // HOP + 1 < PATCH_FRAMES:
        count = 1  # repeat-padded to one patch
    levels = []
    for i in range(count):
        part = wave[i * step : (i + 1) * step] if count > 1 else wave
        rms = float(np.sqrt(np.mean(part**2))) if part.size else 0.0
        levels.append(20.0 * np.log10(max(rms, 1e-12)))
    return np.array(levels)


def weights_sha256() -> str:
    """One digest over the pinned checkpoint files' digests."""
    text = "".join(f"{name}:{sha}\n" for name, sha in sorted(WEIGHT_FILES.items()))
    return sha256_bytes(text.encode())


@dataclass
class MusicnnEmbedder:
    """MSD-musicnn windows for the similarity gate (``generation.gate.AudioEmbedder``)."""

    model: Musicnn
    feature: str = DEFAULT_FEATURE
    kind: str = "musicnn"
    provenance: dict[str, Any] = field(default_factory=lambda: dict(PROVENANCE))

    def __post_init__(self) -> None:
        if self.feature not in FEATURES:
            raise ValueError(f"feature {self.feature!r} is unknown; allowed: {list(FEATURES)}")
        self.model.eval()

    @property
    def sha256(self) -> str:
        """The identity of the vector space: the weights and which features form a window."""
        spec = f"{weights_sha256()}\nfeature={self.feature}\npatch_frames={PATCH_FRAMES}\n"
        return sha256_bytes(spec.encode())

    @property
    def path(self) -> str:
        return str(package_dir() / MODEL_DIR)

    @property
    def config(self) -> dict[str, Any]:
        return {"feature": self.feature, "patch_frames": PATCH_FRAMES, **self.provenance}

    @classmethod
    def load(
        cls, *, feature: str = DEFAULT_FEATURE, directory: Path | None = None
    ) -> MusicnnEmbedder:
        """Load and verify the pinned checkpoint from the installed wheel (or ``directory``)."""
        root = directory if directory is not None else package_dir() / MODEL_DIR
        verify_pinned(root, WEIGHT_FILES)
        model = Musicnn()
        model.load_tf_variables(read_bundle(str(root) + "/"))
        return cls(model=model, feature=feature)

    @torch.no_grad()
    def patch_outputs(self, wave_16k: np.ndarray) -> dict[str, np.ndarray]:
        """Every output per 3 s patch: logits, penultimate, mean_pool, max_pool."""
        x = patches(log_mel(wave_16k))
        out = self.model(x)
        return {
            "logits": out.logits.numpy(),
            "penultimate": out.penultimate.numpy(),
            "mean_pool": out.mean_pool.numpy(),
            "max_pool": out.max_pool.numpy(),
        }

    def embed_audio(self, wave_16k: np.ndarray) -> np.ndarray:
        """16 kHz mono → ``[patches, D]`` float32 windows (not normalised)."""
        wave = np.asarray(wave_16k, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0:
            raise ValueError(f"expected a non-empty mono wave, got shape {wave.shape}")
        out = self.patch_outputs(wave)
        if self.feature == "pool":
            return np.concatenate([out["mean_pool"], out["max_pool"]], axis=1)
        return out[self.feature]

    def window_levels_db(self, wave_16k: np.ndarray) -> np.ndarray:
        """RMS level (dBFS) of the audio under each window ``embed_audio`` returns: a window
        of digital silence or near-silence says nothing about what the music is."""
        return patch_levels_db(wave_16k)

    def embed_clips(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self.embed_audio(w) for w in waves]

    def tags(self, wave_16k: np.ndarray) -> list[tuple[str, float]]:
        """The MSD tags, averaged over patches, most likely first."""
        probs = 1.0 / (1.0 + np.exp(-self.patch_outputs(wave_16k)["logits"]))
        mean = probs.mean(axis=0)
        order = np.argsort(-mean)
        return [(MSD_LABELS[i], float(mean[i])) for i in order]
