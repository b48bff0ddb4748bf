"""The outside-music cohort the gate's artist model is normalised and calibrated against.

A cohort is the embedder windows of tracks by artists outside any snapshot, in two
parts: ``cohort`` tracks give the score-normalisation statistics, ``calibration`` tracks
are the negatives the artist threshold is set on (never the same tracks, so a threshold
is not read off the statistics it is normalised by). fairchord ships one for the
MSD-musicnn embedder, ``generation/data/musicnn_cohort.npz``: 30 s excerpts of freely
licensed Debian-packaged music (the tune half of ``benchmarks/data/gate_music.csv``, made by
``benchmarks/build_gate_cohort.py``), with every track's package, path, artist and licence,
since it is part of what the gate learned from.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from generation.index import GateUnavailable

__all__ = [
    "ROLES",
    "Cohort",
    "default_cohort_path",
    "describe_sources",
    "load_cohort",
    "write_cohort",
]

ROLES = ("cohort", "calibration")


def default_cohort_path() -> Path:
    return Path(str(resources.files("generation") / "data" / "musicnn_cohort.npz"))


@dataclass
class Cohort:
    embedder_sha256: str
    tracks: list[np.ndarray]  # raw embedder windows per track, float32 [n, D]
    roles: list[str]
    meta: list[dict[str, Any]]
    sha256: str
    levels: list[np.ndarray] | None = None  # per-window RMS dBFS, when the file has them
    excluded: int = 0  # tracks left out because they are snapshot members

    def part(self, role: str, *, quiet_dbfs: float = -45.0) -> list[np.ndarray]:
        """The role's tracks, each reduced to its sounding windows (as the gate scores)."""
        if role not in ROLES:
            raise ValueError(f"role {role!r} is unknown; allowed: {list(ROLES)}")
        levels = self.levels or [np.zeros(len(t)) for t in self.tracks]
        out = []
        for track, level, r in zip(self.tracks, levels, self.roles, strict=True):
            if r != role:
                continue
            sounding = track[np.asarray(level) >= quiet_dbfs]
            if len(sounding):
                out.append(sounding)
        return out

    def excluding(self, sha256s: Collection[str]) -> Cohort:
        """The cohort without the tracks whose source file has one of these sha256s (a
        snapshot member is not outside music, whatever the cohort was built from)."""
        members = set(sha256s)
        keep = [i for i, m in enumerate(self.meta) if m.get("sha256") not in members]
        if len(keep) == len(self.meta):
            return self
        return Cohort(
            embedder_sha256=self.embedder_sha256,
            tracks=[self.tracks[i] for i in keep],
            roles=[self.roles[i] for i in keep],
            meta=[self.meta[i] for i in keep],
            sha256=self.sha256,
            levels=None if self.levels is None else [self.levels[i] for i in keep],
            excluded=self.excluded + len(self.meta) - len(keep),
        )

    def describe(self) -> dict[str, Any]:
        """What an auditor needs: size, sources and licences of the cohort's music."""
        return {
            "sha256": self.sha256,
            "embedder_sha256": self.embedder_sha256,
            "tracks": {role: self.roles.count(role) for role in ROLES},
            **describe_sources(self.meta),
            "excluded_as_members": self.excluded,
        }


def describe_sources(meta: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Artists, seconds, licences and packages of a cohort's tracks, from their metadata."""
    return {
        "artists": len({m.get("artist") for m in meta}),
        "seconds": round(sum(float(m.get("excerpt_seconds", 0.0)) for m in meta), 1),
        "licences": dict(Counter(str(m.get("licence")) for m in meta)),
        "packages": sorted({str(m.get("package")) for m in meta}),
    }


def write_cohort(
    path: Path,
    *,
    embedder_sha256: str,
    tracks: Sequence[np.ndarray],
    roles: Sequence[str],
    meta: Sequence[dict[str, Any]],
    levels: Sequence[np.ndarray] | None = None,
) -> str:
    """Write a cohort file (windows as float16, with each window's RMS level in dBFS when
    given); returns its sha256."""
    if not (len(tracks) == len(roles) == len(meta)) or not tracks:
        raise ValueError("tracks, roles and meta must be non-empty and of one length")
    if set(roles) - set(ROLES):
        raise ValueError(f"roles must be among {list(ROLES)}")
    offsets = np.cumsum([0, *(len(t) for t in tracks)]).astype(np.int64)
    extra: dict[str, np.ndarray] = {}
    if levels is not None:
        if [len(x) for x in levels] != [len(t) for t in tracks]:
            raise ValueError("levels must have one value per window")
        extra["levels"] = np.concatenate(levels).astype(np.float32)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        **extra,
        embedder_sha256=np.array(embedder_sha256),
        windows=np.concatenate(tracks).astype(np.float16),
        offsets=offsets,
        roles=np.array(list(roles)),
        meta=np.array(json.dumps(list(meta), sort_keys=True)),
    )
    data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def load_cohort(path: Path | None = None, *, embedder_sha256: str) -> Cohort:
    """Load a cohort made with ``embedder_sha256``; anything else means the gate cannot
    be calibrated (:class:`GateUnavailable`)."""
    path = path or default_cohort_path()
    try:
        data = path.read_bytes()
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            stored_sha = str(z["embedder_sha256"])
            windows = z["windows"].astype(np.float32)
            offsets = z["offsets"]
            roles = [str(r) for r in z["roles"]]
            meta = json.loads(str(z["meta"]))
            all_levels = z["levels"] if "levels" in z.files else None
    except (OSError, ValueError, KeyError) as exc:
        raise GateUnavailable(f"the cohort at {path} cannot be read: {exc}") from exc
    if stored_sha != embedder_sha256:
        raise GateUnavailable(
            f"the cohort at {path} was made with embedder {stored_sha[:12]}, not "
            f"{embedder_sha256[:12]}"
        )
    tracks = [windows[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    levels = (
        [all_levels[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        if all_levels is not None
        else None
    )
    if not np.all(np.isfinite(windows)) or len(tracks) != len(roles) != len(meta):
        raise GateUnavailable(f"the cohort at {path} is malformed")
    return Cohort(
        embedder_sha256=stored_sha,
        tracks=tracks,
        roles=roles,
        meta=meta,
        sha256=hashlib.sha256(data).hexdigest(),
        levels=levels,
    )
