"""What a file's header says, checked before a single sample is decoded.

Decoding trusts the header: a WAV that declares a 1 Hz sample rate is resampled
11 025-fold for its fingerprint, and a header declaring days of audio is read
block after block. Both cost memory and time in proportion to what the header
*claims*, not to the file's size. So ingestion reads the header first
(libsndfile parses it without decoding) and refuses, with a reason code:

- a sample rate outside ``[min_sample_rate_hz, max_sample_rate_hz]``
  (``implausible_sample_rate``);
- more than ``max_channels`` channels (``too_many_channels``);
- a declared length over the maximum duration (``too_long``).

What passes is bounded: libsndfile never returns more frames than the header
declares, so decoding holds at most ``max_duration_s`` of audio at a plausible
rate. A header libsndfile cannot parse is left to the decoder's own checks,
which name the right reason (``not_audio``, ``impossible_header``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provenance.ingest_prepare import IngestLimits

# A declared length may exceed the limit by this much before the header alone refuses it:
# MP3 lengths are estimates, so a file at the limit is left to the decoder's exact count.
_ESTIMATE_SLACK = 1.02


@dataclass(frozen=True)
class HeaderFacts:
    """What the header declares: container, sample rate, channels and length in frames."""

    container: str
    subtype: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """The facts a recording row keeps for a file refused on its header alone."""
        return {
            "container": self.container,
            "codec": f"{self.container}/{self.subtype}",
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frames": self.frames,
            "duration_s": self.duration_s,
        }


def read_header(path: str | Path) -> HeaderFacts | None:
    """The header of a local file, or None when libsndfile cannot parse one (the decoder
    then classifies the file). Reads no audio."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:
        return None
    return HeaderFacts(
        container=str(info.format),
        subtype=str(info.subtype),
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
    )


def header_violation(
    header: HeaderFacts,
    *,
    min_sample_rate_hz: int,
    max_sample_rate_hz: int,
    max_channels: int,
    max_duration_s: float,
) -> tuple[str, str] | None:
    """``(reason code, detail)`` when the header alone rules the file out, else None.

    A rate or channel count of zero or less is not judged here: the decoder's header check
    reports it as ``impossible_header``."""
    rate, channels = header.sample_rate, header.channels
    if rate <= 0 or channels <= 0:
        return None
    if not min_sample_rate_hz <= rate <= max_sample_rate_hz:
        return (
            "implausible_sample_rate",
            f"the header declares {rate} Hz; accepted: {min_sample_rate_hz} to "
            f"{max_sample_rate_hz} Hz",
        )
    if channels > max_channels:
        return (
            "too_many_channels",
            f"the header declares {channels} channels; accepted: at most {max_channels}",
        )
    if header.duration_s > max_duration_s * _ESTIMATE_SLACK:
        return (
            "too_long",
            f"the header declares {header.duration_s:.2f} s > max {max_duration_s} s (not decoded)",
        )
    return None


def judge_header(
    path: str | Path, limits: IngestLimits
) -> tuple[str, str, dict[str, Any] | None] | None:
    """``(reason code, detail, facts to keep)`` when ``path``'s header alone rules it out
    under ``limits``, else None. Only ``too_long`` keeps the header's facts: wider limits
    may readmit such a file, and its row should say how long it is meanwhile."""
    header = read_header(path)
    if header is None or header.container not in limits.containers:
        return None  # the decoder's own checks name the reason
    violation = header_violation(
        header,
        min_sample_rate_hz=limits.min_sample_rate_hz,
        max_sample_rate_hz=limits.max_sample_rate_hz,
        max_channels=limits.max_channels,
        max_duration_s=limits.max_duration_s,
    )
    if violation is None:
        return None
    code, detail = violation
    return code, detail, header.to_dict() if code == "too_long" else None
