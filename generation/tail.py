"""A normal tail fitted to negative similarities on the Fisher z scale.

Calibration has a few dozen recordings, too few to read a 0.3 % quantile off directly;
the fitted tail extrapolates it, and lets the gate hold a clip of many windows to a
proportionally smaller per-window rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from statistics import NormalDist

import numpy as np

CLIP = 0.999999  # arctanh is infinite at 1


def fit_tail(negatives: np.ndarray) -> dict[str, float]:
    """Mean and standard deviation of the negatives' Fisher z (arctanh of the similarity)."""
    values = np.arctanh(np.clip(np.asarray(negatives, dtype=np.float64), -CLIP, CLIP))
    if values.size < 2:
        raise ValueError("need at least two negatives to fit a tail")
    return {"z_mean": float(values.mean()), "z_sd": float(values.std(ddof=1))}


def tail_at(tail: Mapping[str, float], rate: float) -> float:
    """The (1 - rate) quantile of the fitted normal, back on the similarity scale."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate {rate} must be in (0, 1)")
    z = tail["z_mean"] + NormalDist().inv_cdf(1.0 - rate) * tail["z_sd"]
    return float(np.tanh(z))


def tail_threshold(negatives: np.ndarray, rate: float) -> float:
    """The (1 - rate) quantile of a normal fitted to the negatives' Fisher z; infinite
    with fewer than two negatives. Calibration keeps the higher of this and the
    empirical threshold, which with a few dozen negatives sits just above the largest."""
    if np.asarray(negatives).size < 2:
        return float("inf")
    return tail_at(fit_tail(negatives), rate)
