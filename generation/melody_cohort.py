"""Outside music for the melody detector's threshold: chroma of tracks no snapshot holds.

How high an unrelated tune can correlate with a snapshot's melodies grows with the
snapshot (more passages, more chances), so the threshold is set per snapshot, at
calibration, from outside queries matched against that snapshot's own melody index.
fairchord ships those queries as chroma (``generation/data/melody_cohort.npz``): a 30 s
excerpt from the middle of every track of the tune half's outside music in
``benchmarks/data/gate_music.csv`` (the musicnn cohort's tracks; made by
``benchmarks/build_melody_cohort.py``), with each track's package, path, artist, licence
and file sha256.
Chroma is stored, not audio: it is all the detector compares, and it is small.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from generation.cohort import describe_sources
from generation.index import GateUnavailable
from generation.melody import chroma_config

__all__ = [
    "MelodyCohort",
    "default_melody_cohort_path",
    "load_melody_cohort",
    "write_melody_cohort",
]


def default_melody_cohort_path() -> Path:
    return Path(str(resources.files("generation") / "data" / "melody_cohort.npz"))


@dataclass
class MelodyCohort:
    classes: list[np.ndarray]  # per track [frames, 12] chroma at the analysis rate
    loudness: list[np.ndarray]  # per track [frames]
    meta: list[dict[str, Any]]
    sha256: str
    excluded: int = 0  # tracks left out because they are snapshot members

    def __len__(self) -> int:
        return len(self.classes)

    def excluding(self, sha256s: Collection[str]) -> MelodyCohort:
        """The cohort without the tracks whose source file has one of these sha256s (a
        snapshot member is not outside music, whatever the cohort was built from)."""
        members = set(sha256s)
        keep = [i for i, m in enumerate(self.meta) if m.get("sha256") not in members]
        if len(keep) == len(self.meta):
            return self
        return MelodyCohort(
            classes=[self.classes[i] for i in keep],
            loudness=[self.loudness[i] for i in keep],
            meta=[self.meta[i] for i in keep],
            sha256=self.sha256,
            excluded=self.excluded + len(self.meta) - len(keep),
        )

    def describe(self) -> dict[str, Any]:
        """What an auditor needs: size, sources and licences of the cohort's music."""
        return {
            "sha256": self.sha256,
            "tracks": len(self.classes),
            **describe_sources(self.meta),
            "excluded_as_members": self.excluded,
        }


def write_melody_cohort(
    path: Path,
    *,
    classes: Sequence[np.ndarray],
    loudness: Sequence[np.ndarray],
    meta: Sequence[dict[str, Any]],
) -> str:
    """Write a melody cohort (float16 chroma); returns its sha256."""
    if not (len(classes) == len(loudness) == len(meta)) or not classes:
        raise ValueError("classes, loudness and meta must be non-empty and of one length")
    if any(c.ndim != 2 or c.shape[1] != 12 for c in classes):
        raise ValueError("every track's chroma must be [frames, 12]")
    if [len(c) for c in classes] != [len(x) for x in loudness]:
        raise ValueError("loudness must have one value per chroma frame")
    offsets = np.cumsum([0, *(len(c) for c in classes)]).astype(np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        config=np.array(json.dumps(chroma_config(), sort_keys=True)),
        classes=np.concatenate(classes).astype(np.float16),
        loudness=np.concatenate(loudness).astype(np.float16),
        offsets=offsets,
        meta=np.array(json.dumps(list(meta), sort_keys=True)),
    )
    data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def load_melody_cohort(path: Path | None = None) -> MelodyCohort:
    """Load a melody cohort made with today's chroma front end; anything else means the
    melody detector cannot be calibrated (:class:`GateUnavailable`)."""
    path = path or default_melody_cohort_path()
    try:
        data = path.read_bytes()
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            config = json.loads(str(z["config"]))
            classes = z["classes"].astype(np.float32)
            loudness = z["loudness"].astype(np.float32)
            offsets = z["offsets"]
            meta = json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError) as exc:
        raise GateUnavailable(f"the melody cohort at {path} cannot be read: {exc}") from exc
    if config != chroma_config():
        raise GateUnavailable(
            f"the melody cohort at {path} was made with chroma settings {config}, "
            f"not today's {chroma_config()}"
        )
    bounds = list(zip(offsets[:-1], offsets[1:], strict=True))
    if (
        classes.ndim != 2
        or classes.shape[1] != 12
        or len(loudness) != len(classes)
        or len(bounds) != len(meta)
        or (len(offsets) and offsets[-1] != len(classes))
        or not np.all(np.isfinite(classes))
        or not np.all(np.isfinite(loudness))
    ):
        raise GateUnavailable(f"the melody cohort at {path} is malformed")
    return MelodyCohort(
        classes=[classes[a:b] for a, b in bounds],
        loudness=[loudness[a:b] for a, b in bounds],
        meta=meta,
        sha256=hashlib.sha256(data).hexdigest(),
    )
