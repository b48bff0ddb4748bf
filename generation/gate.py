"""The similarity gate: block audio that replays a training track or imitates a training artist.

Scores (cosine similarities between L2-normalised embedder windows and snapshot segments):

- track score: the maximum similarity of any clip window to any training segment;
- artist score: with a calibrated artist model (``generation.artist_model``, the
  default since the MSD-musicnn embedder), the clip's cohort-normalised score against
  each training artist, highest over its 30 s segments; for indexes calibrated without
  one, the mean of the top-``artist_top_k`` similarities between the clip's windows and
  that artist's segments (taken from the exact top-``search_k`` hits);
- fingerprint score: the number of the clip's landmarks whose quad matches agree on one
  training recording, pitch offset, time scale and offset (``generation.fingerprint``):
  the detector for replays that went through pitch, tempo, noise or codec changes;
- melody score: the best key- and tempo-invariant chroma correlation with any passage of
  the snapshot (``generation.melody``), for a copied tune played on other instruments.

Each detector has its own calibrated threshold; any one reaching it blocks the clip.

The gate fails closed: anything that prevents a trustworthy decision raises
``GateUnavailable`` and never yields ``allow``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from sqlalchemy.orm import Session

from generation.calibrate_artists import normal_tail_at
from generation.calibrate_melody import melody_threshold
from generation.gate_thresholds import check_thresholds
from generation.index import GateIndex, GateUnavailable
from generation.melody import MelodyMatch
from generation.search import Search, search_for
from generation.tail import tail_at
from provenance.gate_decisions import record_decision
from provenance.hashing import sha256_bytes
from provenance.models import GateDecision

log = logging.getLogger(__name__)

# Windows quieter than this (RMS, dBFS) are left out of the embedding scores: digital
# silence embeds the same whatever track it sits in, so silent windows "match" every
# training track's silences. The fingerprints still see the whole clip.
QUIET_DBFS = -45.0

__all__ = [
    "AudioEmbedder",
    "GateResult",
    "GateUnavailable",
    "SimilarityGate",
    "record_gate_decision",
]


class AudioEmbedder(Protocol):
    """What the gate needs from an embedder (training.clap_embedder.ClapEmbedder fits)."""

    sha256: str

    def embed_audio(self, wave_16k: np.ndarray) -> np.ndarray: ...


def audible(embedder: Any, wave: np.ndarray, n_windows: int) -> np.ndarray:
    """Which of the embedder's windows carry sound (all, for embedders that cannot say)."""
    levels_of = getattr(embedder, "window_levels_db", None)
    if levels_of is None:
        return np.ones(n_windows, dtype=bool)
    levels = np.asarray(levels_of(wave), dtype=np.float64)
    if levels.shape != (n_windows,):
        raise GateUnavailable(f"embedder gave {levels.shape} window levels for {n_windows} windows")
    return levels >= QUIET_DBFS


@dataclass
class GateResult:
    verdict: str  # allow | block
    reasons: list[str]
    track_similarity: float
    nearest: dict[str, Any]  # recording_id, segment_index, similarity
    artist_scores: list[dict[str, Any]]  # party_id, score, threshold (top first)
    detector_scores: dict[str, float]
    thresholds: dict[str, Any]
    index_sha256: str
    embedder_sha256: str
    index_row_id: int | None = None
    audio_sha256: str | None = None
    windows: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SimilarityGate:
    """Gate one clip against one training run's snapshot index."""

    def __init__(
        self,
        index: GateIndex | None,
        embedder: AudioEmbedder | None,
        thresholds: dict[str, Any] | None = None,
        *,
        search_k: int = 256,
        artist_top_k: int = 3,
        top_artists: int = 5,
    ) -> None:
        if index is None:
            raise GateUnavailable("no gate index loaded; refusing to gate without one")
        if embedder is None:
            raise GateUnavailable("no embedder loaded; refusing to gate without one")
        embedder_sha = getattr(embedder, "sha256", None)
        if embedder_sha != index.embedder_sha256:
            raise GateUnavailable(
                f"embedder sha256 {embedder_sha} does not match the index's embedder "
                f"{index.embedder_sha256} (run {index.training_run_id})"
            )
        chosen = dict(thresholds if thresholds is not None else index.thresholds)
        fp_threshold = check_thresholds(index, chosen)
        if search_k < 1 or artist_top_k < 1 or top_artists < 1:
            raise ValueError(
                f"search_k={search_k}, artist_top_k={artist_top_k}, top_artists={top_artists}: "
                "each must be >= 1"
            )
        try:
            self.search: Search = search_for(index.index, index.recording_ids, chosen.get("search"))
        except ValueError as exc:
            raise GateUnavailable(f"cannot use the recorded search: {exc}") from exc
        self.index = index
        self.embedder = embedder
        self.thresholds = chosen
        self.fingerprint_threshold = fp_threshold
        self.search_k = search_k
        self.artist_top_k = artist_top_k
        self.top_artists = top_artists

    def threshold_for(self, key: str, n_windows: int) -> float:
        """The calibrated threshold, raised for a clip of many windows so that it gets no
        more chances to cross than a one-window clip (per-window rate / n_windows)."""
        base = float(self.thresholds[key])
        tail = self.thresholds.get(f"{key}_tail")
        if not tail or n_windows <= 1:
            return base
        return max(base, tail_at(tail, float(tail["rate"]) / n_windows))

    def embed(self, wave_16k: np.ndarray) -> np.ndarray:
        """Embedder windows [w, D], L2-normalised; any embedder fault is GateUnavailable."""
        raw = self.embed_raw(wave_16k)
        return np.ascontiguousarray(raw / np.linalg.norm(raw, axis=1, keepdims=True))

    def embed_raw(self, wave_16k: np.ndarray) -> np.ndarray:
        """Embedder windows [w, D] as the embedder gives them, checked."""
        try:
            windows = np.asarray(self.embedder.embed_audio(wave_16k), dtype=np.float32)
        except GateUnavailable:
            raise
        except Exception as exc:
            raise GateUnavailable(f"embedder failed: {type(exc).__name__}: {exc}") from exc
        if windows.ndim != 2 or windows.shape[0] == 0 or windows.shape[1] != self.index.index.d:
            raise GateUnavailable(
                f"embedder returned shape {windows.shape}, "
                f"expected [n_windows>=1, {self.index.index.d}]"
            )
        if not np.all(np.isfinite(windows)):
            raise GateUnavailable("embedder returned NaN or infinite values")
        norms = np.linalg.norm(windows, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise GateUnavailable("embedder returned a zero vector")
        return windows

    def model_artist_scores(self, raw: np.ndarray) -> tuple[list[tuple[int, float]], float, int]:
        """Per-artist scores from the calibrated artist model (highest over the clip's
        segments), the threshold for a clip of that many segments, and the segment count."""
        model = self.index.artist_model
        assert model is not None
        entry = self.thresholds["artist_model"]
        try:
            scores = model.scores(raw)  # [S, A]
        except Exception as exc:
            raise GateUnavailable(f"artist model failed: {type(exc).__name__}: {exc}") from exc
        n_segments = int(scores.shape[0])
        threshold = float(entry["threshold"])
        if n_segments > 1:
            tail = entry["tail"]
            threshold = max(threshold, normal_tail_at(tail, float(tail["rate"]) / n_segments))
        best = scores.max(axis=0)
        ranked = sorted(
            ((int(p), float(v)) for p, v in zip(model.party_ids, best, strict=True)),
            key=lambda item: -item[1],
        )
        return ranked, threshold, n_segments

    def score_windows(self, windows: np.ndarray) -> dict[str, Any]:
        """Exact track score, nearest segment and per-artist scores for given windows."""
        k = min(self.search_k, self.index.ntotal)
        sims, rows = self.search.search(windows, k)
        found = rows >= 0
        if not np.all(found[:, 0]) or not np.all(np.isfinite(sims[found])):
            raise GateUnavailable("index search returned NaN scores or missing rows")
        best_w = int(np.argmax(sims[:, 0]))
        best_row = int(rows[best_w, 0])
        track = float(sims[best_w, 0])
        per_artist: dict[int, list[float]] = {}
        for w in range(sims.shape[0]):
            seen: dict[int, list[float]] = {}
            for sim, row in zip(sims[w], rows[w], strict=True):
                if row < 0:
                    break
                for party in self.index.artist_ids[int(row)]:
                    seen.setdefault(party, []).append(float(sim))
            for party, values in seen.items():
                top = sorted(values, reverse=True)[: self.artist_top_k]
                per_artist.setdefault(party, []).append(float(np.mean(top)))
        artist_scores = sorted(
            ((party, max(values)) for party, values in per_artist.items()),
            key=lambda item: -item[1],
        )
        return {
            "track": track,
            "nearest": {
                "recording_id": int(self.index.recording_ids[best_row]),
                "segment_index": int(self.index.segment_index[best_row]),
                "similarity": track,
            },
            "artists": artist_scores,
        }

    def check(self, wave_16k: np.ndarray) -> GateResult:
        """Decide allow/block for one 16 kHz mono clip; raises GateUnavailable if it cannot."""
        wave = np.asarray(wave_16k, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0:
            raise GateUnavailable(f"expected a non-empty mono 16 kHz wave, got shape {wave.shape}")
        if not np.all(np.isfinite(wave)):
            raise GateUnavailable("audio contains NaN or infinite samples")
        raw = self.embed_raw(wave)
        sounding = audible(self.embedder, wave, raw.shape[0])
        raw = raw[sounding]
        windows = np.ascontiguousarray(raw / np.linalg.norm(raw, axis=1, keepdims=True))
        artist_method = "top_k"
        segments = 0
        if windows.shape[0] == 0:
            # Silence throughout: nothing for the embedding detectors to compare.
            scored: dict[str, Any] = {
                "track": 0.0,
                "nearest": {"recording_id": None, "segment_index": None, "similarity": 0.0},
                "artists": [],
            }
            track_t = self.threshold_for("track", 1)
            artist_t = self.threshold_for("artist", 1)
        else:
            scored = self.score_windows(windows)
            track_t = self.threshold_for("track", windows.shape[0])
            artist_t = self.threshold_for("artist", windows.shape[0])
            if self.index.artist_model is not None:
                scored["artists"], artist_t, segments = self.model_artist_scores(raw)
                artist_method = self.index.artist_model.method
        reasons: list[str] = []
        detector_scores: dict[str, float] = {"track": scored["track"]}
        if scored["track"] >= track_t:
            reasons.append(
                f"track_similarity {scored['track']:.4f} >= {track_t:.4f} to training recording "
                f"{scored['nearest']['recording_id']}"
            )
        artist_scores = [
            {"party_id": party, "score": score, "threshold": artist_t}
            for party, score in scored["artists"][: self.top_artists]
        ]
        if artist_scores:
            detector_scores["artist"] = artist_scores[0]["score"]
        for entry in artist_scores:
            if entry["score"] >= artist_t:
                reasons.append(
                    f"artist_similarity {entry['score']:.4f} >= {artist_t:.4f} "
                    f"to party {entry['party_id']}"
                )
        fingerprints = self.index.fingerprints
        assert fingerprints is not None  # checked in __init__
        try:
            match = fingerprints.match_windows(wave)
        except Exception as exc:
            raise GateUnavailable(
                f"fingerprint detector failed: {type(exc).__name__}: {exc}"
            ) from exc
        detector_scores["fingerprint"] = float(match.score)
        if match.score >= self.fingerprint_threshold:
            reasons.append(
                f"fingerprint {match.score} matching landmarks >= "
                f"{self.fingerprint_threshold:g} to training recording {match.recording_id} "
                f"(pitch {match.pitch_semitones:+.1f} st, time x{match.time_scale:.3f})"
            )
        melody = self._melody(wave)
        if melody is not None:
            found, melody_t = melody
            detector_scores["melody"] = found.score
            if found.score >= melody_t:
                reasons.append(
                    f"melody {found.score:.3f} >= {melody_t:.3f} to training recording "
                    f"{found.recording_id} (transposed {found.transpose_semitones:+d} st, "
                    f"time x{found.time_scale:.2f})"
                )
        if not all(np.isfinite(v) for v in detector_scores.values()):
            raise GateUnavailable(f"non-finite gate scores: {detector_scores}")
        return GateResult(
            verdict="block" if reasons else "allow",
            reasons=reasons,
            track_similarity=scored["track"],
            nearest=scored["nearest"],
            artist_scores=artist_scores,
            detector_scores=detector_scores,
            thresholds={
                **self.thresholds,
                "effective": {
                    "track": track_t,
                    "artist": artist_t,
                    "windows": len(windows),
                    "quiet_windows": int((~sounding).sum()),
                    "artist_segments": segments,
                },
            },
            index_sha256=self.index.sha256,
            embedder_sha256=self.index.embedder_sha256,
            index_row_id=self.index.row_id,
            audio_sha256=sha256_bytes(wave.tobytes()),
            windows=int(windows.shape[0]),
            extra={
                "search": self.search.name,
                "artist_method": artist_method,
                "fingerprint": {
                    "score": match.score,
                    "recording_id": match.recording_id,
                    "pitch_offset_semitones": match.pitch_semitones,
                    "time_scale": match.time_scale,
                },
                **(
                    {
                        "melody": {
                            "score": melody[0].score,
                            "threshold": melody[1],
                            "recording_id": melody[0].recording_id,
                            "transpose_semitones": melody[0].transpose_semitones,
                            "time_scale": melody[0].time_scale,
                        }
                    }
                    if melody is not None
                    else {}
                ),
            },
        )

    def _melody(self, wave: np.ndarray) -> tuple[MelodyMatch, float] | None:
        """The melody detector's best match and the threshold for this clip's length, or
        None when the index was calibrated without it."""
        entry = self.thresholds.get("melody")
        if entry is None:
            return None
        assert self.index.melody is not None  # checked in __init__
        try:
            found = self.index.melody.match(wave)
            threshold = melody_threshold(entry, int(wave.size))
        except Exception as exc:
            raise GateUnavailable(f"melody detector failed: {type(exc).__name__}: {exc}") from exc
        return found, threshold


def record_gate_decision(
    session: Session, generation_id: int | None, result: GateResult
) -> GateDecision:
    """Append one similarity-gate decision (allow or block) with its evidence + audit event."""
    return record_decision(
        session,
        generation_id=generation_id,
        stage="similarity_gate",
        verdict=result.verdict,
        reasons=result.reasons,
        scores={
            "track_similarity": result.track_similarity,
            "detectors": dict(result.detector_scores),
            "artists": list(result.artist_scores),
            "index_sha256": result.index_sha256,
            "embedder_sha256": result.embedder_sha256,
            "fingerprint": result.extra.get("fingerprint"),
        },
        nearest=[result.nearest],
        thresholds=result.thresholds,
        event={
            "track_similarity": result.track_similarity,
            "index_sha256": result.index_sha256,
        },
        index_id=result.index_row_id,
        audio_sha256=result.audio_sha256,
    )
