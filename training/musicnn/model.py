"""MusiCNN (Pons & Serra, 2019, "musicnn: pre-trained convolutional neural networks for
music audio tagging"), as a plain PyTorch module that loads the published TF weights.

Layout (the ``MSD_musicnn`` configuration):

- front end, musically motivated: batch-norm on the log-mel input, then timbral filters
  spanning 40 % and 70 % of the mel axis (7 frames wide, 204 each) and temporal filters
  128/64/32 frames long (51 each), every map max-pooled over frequency → 561 channels;
- mid end: three 7-frame 1-D convolutions of 64 channels with residual connections, densely
  concatenated with the front end → 753 channels per frame;
- back end: max and mean over time (interleaved, 1506), a 200-unit dense layer (the
  "penultimate" features) and 50 tag logits.

TensorFlow's ``tf.layers`` apply ReLU inside the convolution and batch-norm after it
(epsilon 1e-3); the order is kept here. Input is ``[batch, frames, 96]`` log-mel
patches as :mod:`training.musicnn.frontend` computes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MusicnnFeatures", "Musicnn", "N_MELS"]

N_MELS = 96
_BN_EPS = 1e-3
_TIMBRAL = ((7, int(0.4 * N_MELS)), (7, int(0.7 * N_MELS)))  # (frames, mel bins): 38, 67
_TEMPORAL = (128, 64, 32)


@dataclass
class MusicnnFeatures:
    """Per input patch: what the gate and the tagger use."""

    logits: torch.Tensor  # [B, 50]
    penultimate: torch.Tensor  # [B, 200]
    mean_pool: torch.Tensor  # [B, 753] mean over time of the mid-end features
    max_pool: torch.Tensor  # [B, 753]


class _BatchNorm(nn.Module):
    """Inference-only batch-norm over the last axis, as tf.layers stores it."""

    scale: torch.Tensor
    shift: torch.Tensor
    sign: torch.Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(channels))
        self.register_buffer("shift", torch.zeros(channels))
        self.register_buffer("sign", torch.ones(channels))

    def load(self, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray) -> None:
        scale = gamma / np.sqrt(var + _BN_EPS)
        self.scale.copy_(torch.from_numpy(scale.astype(np.float32)))
        self.shift.copy_(torch.from_numpy((beta - mean * scale).astype(np.float32)))
        self.sign.copy_(torch.from_numpy(np.where(scale < 0, -1.0, 1.0).astype(np.float32)))

    def forward(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        shape = [1] * x.dim()
        shape[dim] = -1
        return x * self.scale.view(shape) + self.shift.view(shape)


def _same_pad(kernel: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding for stride 1: the extra frame goes after."""
    before = (kernel - 1) // 2
    return before, kernel - 1 - before


# Mixed values computed and pooled per block (about 1 MB of float32), so that a block stays
# in cache between the product and the max.
_MIX_BLOCK = 1 << 18


def _conv_max_over_frequency(conv: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``conv(inputs).amax(dim=3)``: [B, 1, T', F'] → [B, C, T].

    For a factorised bank (``r`` basis filters, then a 1x1 mix into ``C`` maps; see
    :meth:`Musicnn.factorise`) the mix is a matrix product over the basis maps, and the
    bias is added after the max (max_f (z + b) = max_f z + b). The product is laid out so
    that the max reads contiguous memory (as [B·T, F, C] when C ≥ F, max across rows of C;
    else as [C, B·T, F], max along rows of F) and is taken a block of frames at a time, so
    the [B, C, T, F] maps are never held at once: several times faster than the 1x1
    convolution followed by ``amax`` over its output. Equal to it up to float rounding."""
    if not (isinstance(conv, nn.Sequential) and len(conv) == 2):
        return conv(inputs).amax(dim=3)
    basis, mix = conv
    assert isinstance(mix, nn.Conv2d) and mix.bias is not None
    if mix.kernel_size != (1, 1):
        return conv(inputs).amax(dim=3)
    maps = basis(inputs)  # [B, r, T, F]
    batch, rank, frames, freqs = maps.shape
    weight = mix.weight.reshape(mix.out_channels, rank)  # [C, r]
    bias = mix.bias.view(-1, 1)
    rows = max(1, _MIX_BLOCK // (freqs * mix.out_channels))
    if mix.out_channels >= freqs:  # [BT, F, r] @ [r, C] → max over F
        flat = maps.permute(0, 2, 3, 1).reshape(batch * frames, freqs, rank)
        weight_t = weight.t()
        blocks = [(flat[s : s + rows] @ weight_t).amax(dim=1) for s in range(0, len(flat), rows)]
        pooled = torch.cat(blocks).t()  # [C, BT]
    else:  # [C, r] @ [r, BT x F] → max over F
        flat = maps.transpose(0, 1).reshape(rank, batch * frames * freqs)
        cols = rows * freqs
        blocks = [
            (weight @ flat[:, s : s + cols]).view(mix.out_channels, -1, freqs).amax(dim=2)
            for s in range(0, flat.shape[1], cols)
        ]
        pooled = torch.cat(blocks, dim=1)  # [C, BT]
    return (pooled + bias).view(-1, batch, frames).transpose(0, 1)


class Musicnn(nn.Module):
    """The MSD/MTT musicnn tagger (num_filt_midend=64, num_units_backend=200)."""

    def __init__(self, *, n_classes: int = 50, midend: int = 64, backend: int = 200) -> None:
        super().__init__()
        self.input_bn = _BatchNorm(1)
        self.timbral = nn.ModuleList(nn.Conv2d(1, 204, k) for k in _TIMBRAL)
        self.timbral_bn = nn.ModuleList(_BatchNorm(204) for _ in _TIMBRAL)
        self.temporal = nn.ModuleList(nn.Conv2d(1, 51, (k, 1)) for k in _TEMPORAL)
        self.temporal_bn = nn.ModuleList(_BatchNorm(51) for _ in _TEMPORAL)
        front = 2 * 204 + 3 * 51
        self.mid = nn.ModuleList(
            [
                nn.Conv1d(front, midend, 7),
                nn.Conv1d(midend, midend, 7),
                nn.Conv1d(midend, midend, 7),
            ]
        )
        self.mid_bn = nn.ModuleList(_BatchNorm(midend) for _ in range(3))
        self.features = front + 3 * midend  # 753
        self.pool_bn = _BatchNorm(2 * self.features)
        self.dense = nn.Linear(2 * self.features, backend)
        self.dense_bn = _BatchNorm(backend)
        self.out = nn.Linear(backend, n_classes)

    def frame_features(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, T, 96] log-mel → [B, 753, T] per-frame mid-end features."""
        x = self.input_bn(mel.unsqueeze(1), dim=1)  # [B, 1, T, 96]
        maps = []
        padded = F.pad(x, (0, 0, 3, 3))
        convs = [(conv, bn, padded) for conv, bn in zip(self.timbral, self.timbral_bn, strict=True)]
        convs += [
            (conv, bn, F.pad(x, (0, 0, *_same_pad(k))))
            for conv, bn, k in zip(self.temporal, self.temporal_bn, _TEMPORAL, strict=True)
        ]
        for conv, bn, inputs in convs:
            # max_f bn(relu(z)) = bn(relu(max_f z)) where bn's scale is positive and
            # bn(relu(min_f z)) where it is negative: pool the raw map first (the signs are
            # folded into the filters at load), so ReLU and batch-norm touch [B, C, T] only.
            assert isinstance(bn, _BatchNorm)
            pooled = _conv_max_over_frequency(conv, inputs) * bn.sign.view(1, -1, 1)
            maps.append(bn(F.relu(pooled), dim=1))
        front = torch.cat(maps, dim=1)  # [B, 561, T]
        outs = [front]
        h = front
        for i, (conv, bn) in enumerate(zip(self.mid, self.mid_bn, strict=True)):
            y = bn(F.relu(conv(F.pad(h, (3, 3)))), dim=1)
            h = y if i == 0 else y + h  # residual from the second layer on
            outs.append(h)
        return torch.cat(outs, dim=1)

    def forward(self, mel: torch.Tensor) -> MusicnnFeatures:
        frames = self.frame_features(mel)  # [B, 753, T]
        max_pool = frames.amax(dim=2)
        mean_pool = frames.mean(dim=2)
        # TF concatenates [max, mean] on a trailing axis and flattens: interleaved.
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)
        hidden = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return MusicnnFeatures(
            logits=self.out(hidden), penultimate=hidden, mean_pool=mean_pool, max_pool=max_pool
        )

    @torch.no_grad()
    def load_tf_variables(
        self, tensors: Mapping[str, np.ndarray], *, factorised: bool = True
    ) -> None:
        """Copy the TF checkpoint's variables in (names as ``tf.layers`` made them), then
        (unless ``factorised`` is false) replace the low-rank filter banks by
        :meth:`factorise`'s equivalent, cheaper pairs."""

        def bn(module: nn.Module, i: int) -> None:
            assert isinstance(module, _BatchNorm)
            name = "batch_normalization" + (f"_{i}" if i else "")
            module.load(
                *(
                    tensors[f"{name}/{p}"]
                    for p in ("gamma", "beta", "moving_mean", "moving_variance")
                )
            )

        def conv2d(module: nn.Module, i: int, norm: nn.Module) -> None:
            assert isinstance(module, nn.Conv2d) and isinstance(norm, _BatchNorm)
            # Front-end filters carry the sign of the batch-norm that follows them, so that
            # pooling the raw map with max (see frame_features) is exact.
            name = "conv2d" + (f"_{i}" if i else "")
            kernel = tensors[f"{name}/kernel"]  # [kh, kw, in, out]
            sign = norm.sign.numpy()
            weight = kernel.transpose(3, 2, 0, 1) * sign.reshape(-1, 1, 1, 1)
            module.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
            assert module.bias is not None
            module.bias.copy_(torch.from_numpy(tensors[f"{name}/bias"] * sign))

        def conv1d(module: nn.Module, i: int) -> None:
            assert isinstance(module, nn.Conv1d)
            kernel = tensors[f"conv2d_{i}/kernel"][:, :, 0, :]  # [7, in, out]
            module.weight.copy_(torch.from_numpy(kernel.transpose(2, 1, 0).copy()))
            assert module.bias is not None
            module.bias.copy_(torch.from_numpy(tensors[f"conv2d_{i}/bias"]))

        def dense(module: nn.Linear, name: str) -> None:
            module.weight.copy_(torch.from_numpy(tensors[f"{name}/kernel"].T.copy()))
            module.bias.copy_(torch.from_numpy(tensors[f"{name}/bias"]))

        # Creation order in musicnn's models.py fixes the numbering.
        bn(self.input_bn, 0)
        for i, (conv, norm) in enumerate(zip(self.timbral, self.timbral_bn, strict=True)):
            bn(norm, i + 1)
            conv2d(conv, i, norm)
        for i, (conv, norm) in enumerate(zip(self.temporal, self.temporal_bn, strict=True)):
            bn(norm, i + 3)
            conv2d(conv, i + 2, norm)
        for i, (conv, norm) in enumerate(zip(self.mid, self.mid_bn, strict=True)):
            conv1d(conv, i + 5)
            bn(norm, i + 6)
        bn(self.pool_bn, 9)
        dense(self.dense, "dense")
        bn(self.dense_bn, 10)
        dense(self.out, "dense_1")
        if factorised:
            self.factorise()

    @torch.no_grad()
    def factorise(self, *, tolerance: float = 1e-6) -> dict[str, int]:
        """Replace each convolution whose filter bank has low rank by an equivalent pair:
        ``r`` basis filters, then a 1-wide convolution mixing them into the outputs.

        The published MSD-musicnn filter banks are of very low rank (23 of the 204 timbral
        7x38 filters are independent, 14 of the 7x67, 3-17 of the temporal ones), so the
        pair computes the same maps (singular values below ``tolerance`` of the largest
        are dropped) with a fraction of the arithmetic. Returns the rank of each bank."""
        ranks: dict[str, int] = {}
        for group_name in ("timbral", "temporal", "mid"):
            group = getattr(self, group_name)
            assert isinstance(group, nn.ModuleList)
            for i, conv in enumerate(group):
                if not isinstance(conv, (nn.Conv1d, nn.Conv2d)):
                    continue
                out = conv.out_channels
                matrix = conv.weight.reshape(out, -1).double()
                u, sv, vh = torch.linalg.svd(matrix, full_matrices=False)
                rank = int((sv > tolerance * sv[0]).sum())
                ranks[f"{group_name}.{i}"] = rank
                if rank * (matrix.shape[1] + out) >= matrix.shape[1] * out:
                    continue  # no saving
                kernel = tuple(conv.weight.shape[2:])
                if isinstance(conv, nn.Conv2d):
                    kh, kw = kernel
                    basis: nn.Module = nn.Conv2d(conv.in_channels, rank, (kh, kw), bias=False)
                    mix: nn.Conv1d | nn.Conv2d = nn.Conv2d(rank, out, 1)
                else:
                    basis = nn.Conv1d(conv.in_channels, rank, kernel[0], bias=False)
                    mix = nn.Conv1d(rank, out, 1)
                weights = (sv[:rank, None] * vh[:rank]).reshape(rank, *conv.weight.shape[1:])
                assert isinstance(basis, (nn.Conv1d, nn.Conv2d))
                basis.weight.copy_(weights.float())
                mix.weight.copy_(u[:, :rank].reshape(out, rank, *([1] * len(kernel))).float())
                assert conv.bias is not None and mix.bias is not None
                mix.bias.copy_(conv.bias)
                group[i] = nn.Sequential(basis, mix)
        return ranks
