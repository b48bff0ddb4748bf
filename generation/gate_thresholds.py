"""The checks a gate index's calibrated thresholds pass before the gate decides with them.

Every detector the thresholds name must have a finite threshold, a well-formed fitted
tail and its data loaded with the index; anything else is ``GateUnavailable`` (the gate
fails closed rather than gate with a detector missing or switched off).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from generation.calibrate_melody import LENGTHS
from generation.index import GateIndex, GateUnavailable


def _check_melody_entry(entry: Any) -> None:
    """A calibrated melody entry has a finite threshold and a fitted tail per query length."""
    try:
        rate = float(entry["rate"])
        values = [float(entry["thresholds"][kind]) for kind in LENGTHS]
        for kind in LENGTHS:
            values += [float(entry["tails"][kind][k]) for k in ("z_mean", "z_sd")]
    except (KeyError, TypeError, ValueError) as exc:
        raise GateUnavailable(f"the melody calibration is malformed: {entry!r}") from exc
    if not 0 < rate < 1 or not np.all(np.isfinite(values)):
        raise GateUnavailable(f"the melody calibration is malformed: {entry!r}")


def _check_embedding_thresholds(chosen: dict[str, Any]) -> None:
    """The track and artist thresholds are numbers, their per-window tails well formed."""
    for key in ("track", "artist"):
        value = chosen.get(key)
        if not isinstance(value, (int, float)) or not np.isfinite(value):
            raise GateUnavailable(
                f"threshold {key!r} is {value!r}; calibrate the index first "
                "(`fairchord gate calibrate`)"
            )
    for key in ("track_tail", "artist_tail"):
        tail = chosen.get(key)
        if tail is None:
            continue
        values: list[float] = []
        if isinstance(tail, dict):
            values = [
                float(v)
                for v in (tail.get("z_mean"), tail.get("z_sd"), tail.get("rate"))
                if isinstance(v, (int, float))
            ]
        if len(values) != 3 or not np.all(np.isfinite(values)) or not 0 < values[2] < 1:
            raise GateUnavailable(f"{key} is malformed: {tail!r}; recalibrate the index")


def _check_artist_model(index: GateIndex, model_entry: Any) -> None:
    """A calibrated artist model has a finite threshold and tail, and is loaded."""
    tail = model_entry.get("tail") if isinstance(model_entry, dict) else None
    values = [
        v
        for v in (
            model_entry.get("threshold") if isinstance(model_entry, dict) else None,
            *((tail or {}).get(k) for k in ("mean", "sd", "rate")),
        )
        if isinstance(v, (int, float))
    ]
    if len(values) != 4 or not np.all(np.isfinite(values)) or not 0 < values[3] < 1:
        raise GateUnavailable(f"the artist model's calibration is malformed: {model_entry!r}")
    if index.artist_model is None:
        raise GateUnavailable(
            "the index was calibrated with an artist model that is not loaded; "
            "refusing to gate without it"
        )


def check_thresholds(index: GateIndex, chosen: dict[str, Any]) -> float:
    """Check every detector's calibration in ``chosen``; returns the fingerprint threshold."""
    _check_embedding_thresholds(chosen)
    fingerprint = chosen.get("fingerprint")
    fp_threshold = fingerprint.get("threshold") if isinstance(fingerprint, dict) else None
    if not isinstance(fp_threshold, (int, float)) or not np.isfinite(fp_threshold):
        raise GateUnavailable(
            f"fingerprint threshold is {fp_threshold!r}: the index was calibrated without "
            "the fingerprint detector; run `fairchord gate calibrate`"
        )
    if index.fingerprints is None:
        raise GateUnavailable(
            "the index's fingerprints are not loaded; refusing to gate without them"
        )
    model_entry = chosen.get("artist_model")
    if model_entry is not None:
        _check_artist_model(index, model_entry)
    melody_entry = chosen.get("melody")
    if melody_entry is not None:
        _check_melody_entry(melody_entry)
        if index.melody is None:
            raise GateUnavailable(
                "the index was calibrated with a melody detector that is not loaded; "
                "refusing to gate without it"
            )
    return float(fp_threshold)
