"""MSD_vgg, the musicnn package's other Million Song Dataset tagger, as a PyTorch module
and a gate embedder.

Pons & Serra's VGG-like baseline (``musicnn/models.py``, ``vgg(..., num_filters=128)``):
batch-norm on the log-mel patch, then five 3x3 convolutions of 128 channels ("same"
padding), each followed by ReLU, batch-norm and max-pooling (4x1 stride 2, then 2x2 three
times, then 4x4), and one dense layer from the flattened last map (2 time steps x 1 band x
128) to the 50 MSD tags. Input and patching are musicnn's (:mod:`training.musicnn.frontend`,
3 s patches of 187 frames); the weights are the ``MSD_vgg`` checkpoint in the same
``musicnn==0.1.0`` wheel, read without TensorFlow and pinned by sha256.

A window (one per patch) is one of the pooled maps ``extractor()`` exposes: ``pool5``
flattened as the tagging layer sees it, or an earlier map's per-channel mean and max over
time and frequency.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.musicnn.embedder import (
    MSD_LABELS,
    PACKAGE,
    PACKAGE_VERSION,
    package_dir,
    patch_levels_db,
    verify_pinned,
)
from training.musicnn.frontend import PATCH_FRAMES, log_mel, patches
from training.musicnn.model import _BatchNorm
from training.musicnn.tf_bundle import read_bundle

__all__ = [
    "FEATURES",
    "MusicnnVgg",
    "MusicnnVggEmbedder",
    "VGG_PROVENANCE",
    "VGG_WEIGHT_FILES",
    "VggFeatures",
]

VGG_MODEL_DIR = "MSD_vgg"
# The checkpoint inside musicnn-0.1.0's wheel; anything else is refused.
VGG_WEIGHT_FILES = {
    ".index": "50e499238457558bba9f34f8b84d4afb8279afd43520cdf0a4fdf805a49c9ca3",
    ".data-00000-of-00001": "9683d756b8311146534f333502ebf4a2a78a3e320c54ab0411dff6186d8375fc",
}
CHANNELS = 128
# (kernel, stride) of the max-pooling after each convolution, [time, mel] as in models.py.
_POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))
FEATURES = ("pool5", "pool4", "pool3", "pool2", "pool1", "logits")
# pool4 (mean and max of the 11 x 6 map) told artists apart best of the vgg windows on the
# tune half of benchmarks/artist_eval.py (AUC 0.75 with S-norm; pool5 0.70).
DEFAULT_FEATURE = "pool4"

VGG_PROVENANCE: dict[str, Any] = {
    "name": "MSD-vgg",
    "kind": "musicnn-vgg",
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
    "source_files": [f"{PACKAGE}/{VGG_MODEL_DIR}/{name}" for name in VGG_WEIGHT_FILES],
    "weights_sha256": dict(VGG_WEIGHT_FILES),
}


@dataclass
class VggFeatures:
    """Per input patch: the tag logits and every pooled map, ``[B, 128, time, mel]``."""

    logits: torch.Tensor  # [B, 50]
    pools: list[torch.Tensor]  # pool1 [B,128,92,48] ... pool5 [B,128,2,1]


class MusicnnVgg(nn.Module):
    """The MSD/MTT vgg tagger of the musicnn package (``num_filters=128``)."""

    def __init__(self, *, n_classes: int = 50, n_mels: int = 96) -> None:
        super().__init__()
        self.input_bn = _BatchNorm(1)
        self.convs = nn.ModuleList(
            nn.Conv2d(1 if i == 0 else CHANNELS, CHANNELS, 3, padding=1) for i in range(5)
        )
        self.bns = nn.ModuleList(_BatchNorm(CHANNELS) for _ in range(5))
        self.pools = nn.ModuleList(nn.MaxPool2d(k, s) for k, s in _POOLS)
        frames, mels = PATCH_FRAMES, n_mels
        for (kt, kf), (st, sf) in _POOLS:
            frames, mels = (frames - kt) // st + 1, (mels - kf) // sf + 1
        self.flat = CHANNELS * frames * mels  # 256 for 187 x 96 patches
        self.dense = nn.Linear(self.flat, n_classes)

    def forward(self, mel: torch.Tensor) -> VggFeatures:
        """[B, 187, 96] log-mel patches → tag logits and pooled maps."""
        x = self.input_bn(mel.unsqueeze(1), dim=1).contiguous(
            memory_format=torch.channels_last
        )  # [B, 1, T, 96]
        pools = []
        for conv, bn, pool in zip(self.convs, self.bns, self.pools, strict=True):
            # tf.layers order: convolution + bias, ReLU, batch-norm, then pooling ("valid").
            # max bn(relu(z)) = bn(relu(max z)) where bn's scale is positive and
            # bn(relu(min z)) where it is negative: the filters carry that sign (folded in
            # at load), so ReLU and batch-norm run on the pooled, 4-16x smaller map.
            assert isinstance(bn, _BatchNorm)
            pooled = pool(conv(x)) * bn.sign.view(1, -1, 1, 1)
            x = bn(F.relu(pooled), dim=1)
            pools.append(x)
        # TensorFlow flattens [B, time, mel, channels]: channels vary fastest.
        flat = x.permute(0, 2, 3, 1).flatten(1)
        if flat.shape[1] != self.flat:
            raise ValueError(
                f"patches must be {PATCH_FRAMES} frames x 96 mel bands, got {tuple(mel.shape[1:])}"
            )
        return VggFeatures(logits=self.dense(flat), pools=pools)

    @torch.no_grad()
    def load_tf_variables(self, tensors: Mapping[str, np.ndarray]) -> None:
        """Copy the TF checkpoint's variables in (``1CNN``..``5CNN`` are named in models.py;
        the batch-norms are numbered in creation order)."""

        def bn(module: nn.Module, i: int) -> None:
            assert isinstance(module, _BatchNorm)
            name = "batch_normalization" + (f"_{i}" if i else "")
            module.load(
                *(
                    tensors[f"{name}/{p}"]
                    for p in ("gamma", "beta", "moving_mean", "moving_variance")
                )
            )

        bn(self.input_bn, 0)
        for i, (conv, norm) in enumerate(zip(self.convs, self.bns, strict=True)):
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None
            assert isinstance(norm, _BatchNorm)
            bn(norm, i + 1)
            sign = norm.sign.numpy()
            kernel = tensors[f"{i + 1}CNN/kernel"]  # [kh(time), kw(mel), in, out]
            weight = kernel.transpose(3, 2, 0, 1) * sign.reshape(-1, 1, 1, 1)
            conv.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
            conv.bias.copy_(torch.from_numpy(tensors[f"{i + 1}CNN/bias"] * sign))
        self.to(memory_format=torch.channels_last)
        self.dense.weight.copy_(torch.from_numpy(tensors["dense/kernel"].T.copy()))
        self.dense.bias.copy_(torch.from_numpy(tensors["dense/bias"]))


def vgg_weights_sha256() -> str:
    """One digest over the pinned MSD_vgg checkpoint files' digests."""
    text = "".join(f"{name}:{sha}\n" for name, sha in sorted(VGG_WEIGHT_FILES.items()))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class MusicnnVggEmbedder:
    """MSD_vgg windows, one per 3 s patch, with the interface of
    :class:`training.musicnn.embedder.MusicnnEmbedder`."""

    model: MusicnnVgg
    feature: str = DEFAULT_FEATURE
    kind: str = "musicnn-vgg"
    provenance: dict[str, Any] = field(default_factory=lambda: dict(VGG_PROVENANCE))

    def __post_init__(self) -> None:
        if self.feature not in FEATURES:
            raise ValueError(f"feature {self.feature!r} is unknown; allowed: {list(FEATURES)}")
        self.model.eval()

    @property
    def sha256(self) -> str:
        """The identity of the vector space: the weights and which features form a window."""
        spec = (
            f"{vgg_weights_sha256()}\nmodel={VGG_MODEL_DIR}\nfeature={self.feature}\n"
            f"patch_frames={PATCH_FRAMES}\n"
        )
        return hashlib.sha256(spec.encode()).hexdigest()

    @property
    def path(self) -> str:
        return str(package_dir() / VGG_MODEL_DIR)

    @property
    def config(self) -> dict[str, Any]:
        return {"feature": self.feature, "patch_frames": PATCH_FRAMES, **self.provenance}

    @classmethod
    def load(
        cls, *, feature: str = DEFAULT_FEATURE, directory: Path | None = None
    ) -> MusicnnVggEmbedder:
        """Load and verify the pinned checkpoint from the installed wheel (or ``directory``)."""
        root = directory if directory is not None else package_dir() / VGG_MODEL_DIR
        verify_pinned(root, VGG_WEIGHT_FILES)
        model = MusicnnVgg()
        model.load_tf_variables(read_bundle(str(root) + "/"))
        return cls(model=model, feature=feature)

    @torch.no_grad()
    def patch_outputs(self, wave_16k: np.ndarray) -> dict[str, np.ndarray]:
        """Every window kind per 3 s patch: ``logits``, ``pool5`` (flattened) and, for
        pool1..pool4, ``poolN_mean`` / ``poolN_max`` over time and frequency."""
        out = self.model(patches(log_mel(wave_16k)))
        result = {
            "logits": out.logits.numpy(),
            "pool5": out.pools[4].permute(0, 2, 3, 1).flatten(1).numpy(),
        }
        for i, pooled in enumerate(out.pools[:4]):
            result[f"pool{i + 1}_mean"] = pooled.mean(dim=(2, 3)).numpy()
            result[f"pool{i + 1}_max"] = pooled.amax(dim=(2, 3)).numpy()
        return result

    def embed_audio(self, wave_16k: np.ndarray) -> np.ndarray:
        """16 kHz mono → ``[patches, D]`` float32 windows (not normalised)."""
        wave = np.asarray(wave_16k, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0:
            raise ValueError(f"expected a non-empty mono wave, got shape {wave.shape}")
        out = self.patch_outputs(wave)
        if self.feature in ("pool5", "logits"):
            return out[self.feature]
        return np.concatenate([out[f"{self.feature}_mean"], out[f"{self.feature}_max"]], axis=1)

    def window_levels_db(self, wave_16k: np.ndarray) -> np.ndarray:
        """RMS level (dBFS) of the audio under each window ``embed_audio`` returns."""
        return patch_levels_db(wave_16k)

    def embed_clips(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self.embed_audio(w) for w in waves]

    def tags(self, wave_16k: np.ndarray) -> list[tuple[str, float]]:
        """The MSD tags, averaged over patches, most likely first."""
        probs = 1.0 / (1.0 + np.exp(-self.patch_outputs(wave_16k)["logits"]))
        mean = probs.mean(axis=0)
        order = np.argsort(-mean)
        return [(MSD_LABELS[i], float(mean[i])) for i in order]
