"""The training loop's own random streams: seeded initialisation and dropout masks.

Module constructors and ``nn.Dropout`` draw from torch's process-wide
generator, which other threads in the process (Prefect's event client, for
one) draw from at any time; :class:`DrawFrom` hands them a generator of the
loop's own instead, so weights and masks are a pure function of the seed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

# Random torch builtins that take ``generator=`` (builtins have no signature to inspect).
_RANDOM_BUILTINS = frozenset(
    {
        "bernoulli",
        "bernoulli_",
        "cauchy_",
        "exponential_",
        "geometric_",
        "log_normal_",
        "multinomial",
        "normal",
        "normal_",
        "rand",
        "randint",
        "randn",
        "randperm",
        "random_",
        "uniform_",
    }
)


def _dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    generator: torch.Generator,
) -> torch.Tensor:
    """``F.dropout`` (the same computation as torch's CPU kernel) with masks from ``generator``."""
    if not training or p == 0 or input.numel() == 0:
        return input
    keep = torch.empty_like(input).bernoulli_(1 - p, generator=generator)
    scale = keep.div_(1 - p) if p < 1 else keep
    return input.mul_(scale) if inplace else input * scale


class DrawFrom(TorchFunctionMode):
    """Give ``generator`` to every random torch op this thread calls without one.

    Module constructors draw their initial weights, and ``nn.Dropout`` its
    masks, from torch's process-wide generator, which any other thread may
    draw from meanwhile; inside this (thread-local) mode they draw from the
    loop's own instead, so they are a pure function of its seed.
    """

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.generator = generator

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func is torch.nn.functional.dropout:  # takes no generator
            return _dropout(*args, **kwargs, generator=self.generator)
        if inspect.isfunction(func):
            # Ops called inside this one (uniform_ inside kaiming_uniform_) bypass the mode,
            # so a Python-level op like nn.init.* gets the generator to pass down.
            signature = inspect.signature(func, follow_wrapped=False)
            if "generator" in signature.parameters:
                bound = signature.bind_partial(*args, **kwargs).arguments
                if bound.get("generator") is None:
                    kwargs["generator"] = self.generator
        elif getattr(func, "__name__", "") in _RANDOM_BUILTINS and kwargs.get("generator") is None:
            kwargs["generator"] = self.generator
        return func(*args, **kwargs)


def seeded_init(make: Callable[[], nn.Module], *, seed: int) -> nn.Module:
    """``make()`` with every random initialisation drawn from a generator seeded with ``seed``.

    The same weights as ``torch.manual_seed(seed); make()``, without reading or
    moving torch's process-wide generator.
    """
    with DrawFrom(torch.Generator().manual_seed(seed)):
        return make()


def dropout_generator(seed: int, rank: int, step: int, device: torch.device) -> torch.Generator:
    """The generator of step ``step``'s dropout masks on rank ``rank``.

    Masks are a pure function of (seed, rank, step): a resumed run recomputes
    them, so the checkpoint needs no generator state for them.
    """
    step_seed = int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(step_seed)
