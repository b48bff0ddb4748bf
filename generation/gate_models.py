"""What the gate loads: audio at its 16 kHz signal path, its embedders and the shipped cohorts.

Any failure to load an embedder is :class:`GateUnavailable`: the gate cannot decide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from generation.index import GateUnavailable

if TYPE_CHECKING:
    import numpy as np

    from generation.cohort import Cohort
    from generation.melody_cohort import MelodyCohort

GATE_SAMPLE_RATE = 16_000


def load_wave_16k(path_or_uri: str) -> np.ndarray:
    """Decode to mono 16 kHz float32 — the model's band limit, the gate's one signal path."""
    from training.audio_io import load_audio

    return load_audio(path_or_uri, sample_rate=GATE_SAMPLE_RATE, mono=True)


def load_clap_embedder(clap_path: str | None) -> Any:
    """The project's CLAP embedder; any failure means the gate cannot decide."""
    try:
        from training.clap_embedder import ClapEmbedder, default_clap_path

        return ClapEmbedder.load(clap_path or default_clap_path())
    except Exception as exc:
        raise GateUnavailable(f"cannot load the CLAP embedder: {exc}") from exc


def load_gate_embedder() -> Any:
    """The gate's pretrained music embedder (MSD-musicnn); any failure means the gate
    cannot decide."""
    try:
        from training.musicnn.embedder import MusicnnEmbedder

        return MusicnnEmbedder.load()
    except Exception as exc:
        raise GateUnavailable(f"cannot load the gate's music embedder: {exc}") from exc


def load_gate_cohort(embedder_sha256: str) -> Cohort:
    """The shipped outside-music cohort for the gate embedder."""
    from generation.cohort import load_cohort

    return load_cohort(embedder_sha256=embedder_sha256)


def load_gate_melody_cohort() -> MelodyCohort:
    """The shipped outside-music chroma the melody detector is calibrated against."""
    from generation.melody_cohort import load_melody_cohort

    return load_melody_cohort()


def detector_config(
    embedder: Any, cohort: Cohort | None, melody_cohort: MelodyCohort | None
) -> dict[str, Any]:
    """The gate embedder's configuration with the cohorts it is calibrated against."""
    config = dict(getattr(embedder, "config", {}) or {})
    if cohort is not None:
        config["cohort"] = cohort.describe()
    if melody_cohort is not None:
        config["melody_cohort"] = melody_cohort.describe()
    return config
