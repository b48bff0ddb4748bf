"""Near-duplicate links: when one accepted recording counts as another's copy.

A near-duplicate is left out of training (eligibility reason
``duplicate_of:<id>``), so a false link silently loses a licensed recording.
A link therefore needs three pieces of evidence, cheapest first:

1. **Duration.** The two durations differ by at most ``duration_tolerance``
   of the newcomer's plus 0.5 s (re-encoding pads by milliseconds; a small
   crop shortens by a second or two).
2. **Coarse fingerprint.** The 512-bit fingerprints
   (``provenance.audio_probe.pcm_fingerprint``) are at most ``max_bits`` apart.
   Cheap, read from the database; but it keeps only signs of band-energy
   changes, so sounds that change little over time (a held chord and a held
   tone: 30–40 bits) pass it.
3. **Fine comparison.** Both stored objects are decoded into 46 ms × 36-band
   log-power spectrograms and correlated cell by cell at the best lag
   (``provenance.audio_match``); the correlation must reach
   ``min_correlation``. In ``benchmarks/near_duplicate_eval.py`` re-encodes
   and gain changes of the same track score 0.994 or more, and different
   recordings that pass steps 1–2 score at most 0.75 (README, "Near-duplicates").

A recording whose object cannot be read is not linked (it stays eligible):
a missed duplicate costs a little repetition in training, a false one loses
a recording.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audio_match import (
    DEFAULT_MIN_CORRELATION,
    SpectralProfile,
    profile_similarity,
    spectral_profile,
)
from provenance.audio_probe import DEFAULT_NEAR_DUPLICATE_BITS, fingerprint_distance
from provenance.models import Recording
from provenance.object_store import open_location

logger = logging.getLogger(__name__)

DEFAULT_DURATION_TOLERANCE = 0.02  # relative, plus DURATION_SLACK_S
DURATION_SLACK_S = 0.5
# Lag window beyond the duration difference: encoder delay and padding.
LAG_SLACK_S = 0.5


@dataclass(frozen=True)
class DuplicateEvidence:
    """What the comparison of a newcomer with one earlier recording found."""

    candidate_id: int
    root_id: int  # the recording a link points at (the candidate's own root)
    bits: int
    duration_delta_s: float
    correlation: float | None = None  # None when the coarse steps already ruled it out
    lag_s: float | None = None

    def links(self, *, max_bits: int, min_correlation: float) -> bool:
        return (
            self.bits <= max_bits
            and self.correlation is not None
            and self.correlation >= min_correlation
        )


def duration_window_s(duration_s: float, tolerance: float) -> float:
    """How far another recording's duration may be from ``duration_s`` to be compared."""
    return duration_s * tolerance + DURATION_SLACK_S


def fine_correlation(
    a: SpectralProfile, b: SpectralProfile, *, duration_delta_s: float
) -> tuple[float, float]:
    """``(correlation, lag in seconds)`` of two profiles, lags up to the duration gap + slack."""
    match = profile_similarity(a, b, max_lag_s=abs(duration_delta_s) + LAG_SLACK_S)
    return match.correlation, match.lag_frames * a.seconds_per_frame


def object_profile(uri: str) -> SpectralProfile:
    """The spectral profile of a stored object (location as recorded in the DB)."""
    with open_location(uri) as handle:
        return spectral_profile(handle)


def near_duplicate_of(
    session: Session,
    rec: Recording,
    *,
    max_bits: int = DEFAULT_NEAR_DUPLICATE_BITS,
    duration_tolerance: float = DEFAULT_DURATION_TOLERANCE,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
    profile_of: Callable[[str], SpectralProfile] = object_profile,
) -> int | None:
    """The root of the accepted recording ``rec`` duplicates, or None (see the module doc).

    Among candidates passing all three steps the highest correlation wins; links
    point at the root, never at another duplicate.
    """
    evidence = duplicate_evidence(
        session,
        rec,
        max_bits=max_bits,
        duration_tolerance=duration_tolerance,
        profile_of=profile_of,
    )
    linked = [e for e in evidence if e.links(max_bits=max_bits, min_correlation=min_correlation)]
    if not linked:
        return None
    best = max(linked, key=lambda e: (e.correlation or 0.0, -e.bits, -e.candidate_id))
    logger.info(
        "recording %s: near-duplicate of %s (%d bits, correlation %.3f, lag %.2f s)",
        rec.id,
        best.root_id,
        best.bits,
        best.correlation,
        best.lag_s or 0.0,
    )
    return best.root_id


def duplicate_evidence(
    session: Session,
    rec: Recording,
    *,
    max_bits: int = DEFAULT_NEAR_DUPLICATE_BITS,
    duration_tolerance: float = DEFAULT_DURATION_TOLERANCE,
    profile_of: Callable[[str], SpectralProfile] = object_profile,
) -> list[DuplicateEvidence]:
    """Evidence for every duration-matched candidate; the fine step runs only on those
    within ``max_bits``."""
    if not rec.pcm_fingerprint or rec.duration_s is None:
        return []
    window = duration_window_s(rec.duration_s, duration_tolerance)
    rows = session.execute(
        select(
            Recording.id,
            Recording.pcm_fingerprint,
            Recording.duplicate_of_id,
            Recording.duration_s,
            Recording.object_uri,
        )
        .where(
            Recording.status == "accepted",
            Recording.pcm_fingerprint.is_not(None),
            Recording.id != rec.id,
            Recording.duration_s.between(rec.duration_s - window, rec.duration_s + window),
        )
        .order_by(Recording.id)
    ).all()
    own_profile: SpectralProfile | None = None
    found: list[DuplicateEvidence] = []
    for rid, fp, dup_of, duration, uri in rows:
        if fp is None or len(fp) != len(rec.pcm_fingerprint):
            continue
        bits = fingerprint_distance(fp, rec.pcm_fingerprint)
        delta = float(duration) - rec.duration_s
        evidence = DuplicateEvidence(rid, dup_of or rid, bits, delta)
        if bits <= max_bits and rec.object_uri and uri:
            try:
                if own_profile is None:
                    own_profile = profile_of(rec.object_uri)
                correlation, lag = fine_correlation(
                    own_profile, profile_of(uri), duration_delta_s=delta
                )
            except Exception as exc:  # an unreadable object is no evidence either way
                logger.warning(
                    "recording %s vs %s: fine comparison failed (%s: %s); not linked",
                    rec.id,
                    rid,
                    type(exc).__name__,
                    exc,
                )
            else:
                evidence = DuplicateEvidence(rid, dup_of or rid, bits, delta, correlation, lag)
        found.append(evidence)
    return found
