"""Audio loading for featurization and the gate (``load_audio``).

Decode-validation, measurement and fingerprints (``probe_audio`` and friends)
live in :mod:`provenance.audio_probe`, where ingestion can use them too; they
are re-exported here so training code has one audio module to import.
"""

from __future__ import annotations

import numpy as np
import soundfile as sf
import soxr

from provenance.audio_probe import (
    DEFAULT_CONTAINERS,
    DEFAULT_NEAR_DUPLICATE_BITS,
    DEFAULT_SILENCE_AMPLITUDE,
    FINGERPRINT_BITS,
    FINGERPRINT_RATE,
    AudioFacts,
    AudioProbeError,
    fingerprint_distance,
    pcm_fingerprint,
    probe_audio,
    sniff_container,
)

__all__ = [
    "DEFAULT_CONTAINERS",
    "DEFAULT_NEAR_DUPLICATE_BITS",
    "DEFAULT_SILENCE_AMPLITUDE",
    "FINGERPRINT_BITS",
    "FINGERPRINT_RATE",
    "AudioFacts",
    "AudioProbeError",
    "fingerprint_distance",
    "load_audio",
    "pcm_fingerprint",
    "probe_audio",
    "sniff_container",
]


def load_audio(uri_or_path: str, *, sample_rate: int, mono: bool = True) -> np.ndarray:
    """Decode a file (local path or fsspec URI) to float32 at ``sample_rate``.

    Mono (the default) returns ``[samples]`` (channels averaged); otherwise
    ``[channels, samples]``. Resampling uses soxr's high-quality filter.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if str(uri_or_path).startswith("home://"):  # a location recorded inside the home
        from provenance.object_store import resolve_location

        uri_or_path = resolve_location(str(uri_or_path))
    if "://" in str(uri_or_path):
        import fsspec

        with fsspec.open(str(uri_or_path), "rb") as f:
            data, rate = sf.read(f, dtype="float32", always_2d=True)
    else:
        data, rate = sf.read(str(uri_or_path), dtype="float32", always_2d=True)
    wave = data.mean(axis=1, keepdims=True) if mono else data
    if rate != sample_rate:
        wave = soxr.resample(wave, rate, sample_rate, quality="HQ")
    out = np.ascontiguousarray(wave.T, dtype=np.float32)
    return out[0] if mono else out
