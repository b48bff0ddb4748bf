"""Audio decode-validation: check a file and measure it (``probe_audio``), and fingerprint it.

``probe_audio`` is what ingestion trusts: it sniffs the container header
itself (so a zero sample rate, a truncated WAV or a cut-off Ogg stream are
named as such), decodes every frame with soundfile, and returns the facts the
provenance DB records plus a decoded-PCM fingerprint. The fingerprint is
robust to re-encoding (FLAC → Vorbis → MP3 keep it within a few bits), so
ingestion can link the same music in another encoding as a near-duplicate.

It lives in the record so every layer may use it; ``training.audio_io`` re-exports
it beside ``load_audio``, the decoder featurization and the gate use.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf
import soxr

# Containers ingestion accepts (soundfile's format names). WAV-family variants count as WAV.
DEFAULT_CONTAINERS: tuple[str, ...] = ("WAV", "WAVEX", "RF64", "W64", "FLAC", "OGG", "MP3")
# WAVE format tags libsndfile decodes: PCM, ADPCM, IEEE float, A-law, mu-law, IMA ADPCM,
# GSM 6.10, G.721, and WAVE_FORMAT_EXTENSIBLE.
_WAV_FORMAT_TAGS = {0x0001, 0x0002, 0x0003, 0x0006, 0x0007, 0x0011, 0x0031, 0x0040, 0xFFFE}
# A frame at or below this absolute amplitude counts as digital silence (about -80 dBFS).
DEFAULT_SILENCE_AMPLITUDE = 1e-4
RMS_FLOOR_DBFS = -120.0

# Fingerprint: mono at a fixed rate; 33 equal time slices × 17 log-spaced bands of mean power;
# one bit per (slice, band) pair from the sign of the time-difference of the band-difference
# (Haitsma & Kalker, "A Highly Robust Audio Fingerprinting System", ISMIR 2002) → 512 bits.
FINGERPRINT_RATE = 11025
FINGERPRINT_SLICES = 33
FINGERPRINT_BANDS = 17
FINGERPRINT_BITS = (FINGERPRINT_SLICES - 1) * (FINGERPRINT_BANDS - 1)
_BAND_EDGES_HZ = np.geomspace(250.0, 4000.0, FINGERPRINT_BANDS + 1)
# Unrelated audio differs in about half of the 512 bits (256 ± 11); re-encodes in a few.
DEFAULT_NEAR_DUPLICATE_BITS = 80

_BLOCK_FRAMES = 65536
_OTHER_MAGIC = {b"wvpk": "WAVPACK", b"MAC ": "APE", b"MThd": "MIDI", b"\x30\x26\xb2\x75": "ASF"}


class AudioProbeError(Exception):
    """A file that cannot be accepted as audio; ``code`` is the quarantine reason code."""

    CODES = (
        "zero_bytes",
        "not_audio",
        "unsupported_codec",
        "truncated_or_corrupt",
        "impossible_header",
        "unreadable",
    )

    def __init__(self, code: str, detail: str) -> None:
        if code not in self.CODES:
            raise ValueError(f"unknown probe error code {code!r}; expected one of {self.CODES}")
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class AudioFacts:
    """What decoding a file established about it."""

    container: str  # soundfile format name: WAV, FLAC, OGG, MP3, ...
    subtype: str  # PCM_16, VORBIS, OPUS, MPEG_LAYER_III, ...
    sample_rate: int
    channels: int
    frames: int  # frames actually decoded
    duration_s: float
    peak: float  # max |sample| over all channels, 0..1 (may exceed 1 for float files)
    rms_dbfs: float  # RMS over all samples in dBFS, floored at RMS_FLOOR_DBFS
    silence_fraction: float  # share of frames whose every channel is at/below the silence level
    fingerprint: str | None  # 128 hex chars (512 bits), None when too short to fingerprint

    @property
    def codec(self) -> str:
        return f"{self.container}/{self.subtype}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"codec": self.codec}


# --------------------------------------------------------------------------- header sniffing


def sniff_container(head: bytes) -> str | None:
    """The container named by a file's first bytes, or None when it is no audio format we know."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"RF64" and head[8:12] == b"WAVE":
        return "RF64"
    if head[:4] == b"riff":
        return "W64"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "OGG"
    if head[:3] == b"ID3":
        return "MP3"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06):
        return "MP3"  # MPEG audio frame sync with a valid layer
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[4:8] == b"ftyp":
        return "MP4"
    if head[:4] == b".snd":
        return "AU"
    if head[:4] == b"caff":
        return "CAF"
    return _OTHER_MAGIC.get(head[:4])


def _check_wav_header(f: BinaryIO, size: int) -> None:
    f.seek(12)
    fmt_seen = False
    while True:
        chunk = f.read(8)
        if len(chunk) < 8:
            what = "'data'" if fmt_seen else "'fmt '"
            raise AudioProbeError("truncated_or_corrupt", f"WAV ends before its {what} chunk")
        cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"fmt ":
            body = f.read(min(csize, 40))
            if len(body) < 16:
                raise AudioProbeError("truncated_or_corrupt", "WAV 'fmt ' chunk is cut short")
            tag, channels, rate, byte_rate, block_align, bits = struct.unpack("<HHIIHH", body[:16])
            if channels == 0 or rate == 0 or block_align == 0:
                raise AudioProbeError(
                    "impossible_header",
                    f"WAV header says channels={channels}, sample rate={rate}, "
                    f"block align={block_align}; none may be 0",
                )
            if tag not in _WAV_FORMAT_TAGS:
                raise AudioProbeError(
                    "unsupported_codec",
                    f"WAV format tag 0x{tag:04x} cannot be decoded; supported tags: "
                    + ", ".join(f"0x{t:04x}" for t in sorted(_WAV_FORMAT_TAGS)),
                )
            fmt_seen = True
            f.seek(csize - len(body) + (csize & 1), io.SEEK_CUR)
        elif cid == b"data":
            if not fmt_seen:
                raise AudioProbeError("truncated_or_corrupt", "WAV 'data' chunk before 'fmt '")
            available = size - f.tell()
            # 0 and 0xFFFFFFFF mean "unknown length" (streamed writers); RF64 uses ds64.
            if csize not in (0, 0xFFFFFFFF) and csize > available:
                raise AudioProbeError(
                    "truncated_or_corrupt",
                    f"WAV 'data' chunk declares {csize} bytes but only {available} follow",
                )
            return
        else:
            f.seek(csize + (csize & 1), io.SEEK_CUR)


def _check_flac_header(f: BinaryIO) -> None:
    f.seek(4)
    block = f.read(4 + 34)
    if len(block) < 38:
        raise AudioProbeError("truncated_or_corrupt", "FLAC ends inside its STREAMINFO block")
    if block[0] & 0x7F != 0:
        raise AudioProbeError("truncated_or_corrupt", "FLAC does not start with STREAMINFO")
    info = block[4:]
    packed = int.from_bytes(info[10:18], "big")
    rate = packed >> 44
    channels = ((packed >> 41) & 0x7) + 1
    if rate == 0:
        raise AudioProbeError(
            "impossible_header", f"FLAC STREAMINFO says sample rate 0 ({channels} channel(s))"
        )


def _check_ogg(f: BinaryIO, size: int) -> None:
    f.seek(0)
    first = f.read(28 + 255 + 64)
    if len(first) < 28:
        raise AudioProbeError("truncated_or_corrupt", "Ogg stream ends inside its first page")
    nseg = first[26]
    body = first[27 + nseg :]
    if body[:7] == b"\x01vorbis" and len(body) >= 16:
        channels = body[11]
        rate = struct.unpack("<I", body[12:16])[0]
        if channels == 0 or rate == 0:
            raise AudioProbeError(
                "impossible_header", f"Vorbis header says channels={channels}, sample rate={rate}"
            )
    elif body[:8] == b"OpusHead" and len(body) >= 10 and body[9] == 0:
        raise AudioProbeError("impossible_header", "Opus header says 0 channels")
    # A complete Ogg stream ends with a whole page carrying the end-of-stream flag.
    tail_len = min(size, 65536 + 282)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(b"OggS")
    while at >= 0:
        page = tail[at:]
        if len(page) >= 27 and page[4] == 0:
            nseg = page[26]
            if len(page) >= 27 + nseg:
                body_len = sum(page[27 : 27 + nseg])
                complete = len(page) >= 27 + nseg + body_len
                if complete and page[5] & 0x04:
                    return
                raise AudioProbeError(
                    "truncated_or_corrupt",
                    "Ogg stream ends without a complete end-of-stream page (cut off?)",
                )
        at = tail.rfind(b"OggS", 0, at)
    raise AudioProbeError("truncated_or_corrupt", "no Ogg page found at the end of the stream")


def _check_header(f: BinaryIO, container: str, size: int) -> None:
    if container == "WAV":
        _check_wav_header(f, size)
    elif container == "FLAC":
        _check_flac_header(f)
    elif container == "OGG":
        _check_ogg(f, size)
    f.seek(0)


# --------------------------------------------------------------------------- probing


def probe_audio(
    path_or_fileobj: str | Path | BinaryIO,
    *,
    containers: Iterable[str] = DEFAULT_CONTAINERS,
    silence_amplitude: float = DEFAULT_SILENCE_AMPLITUDE,
) -> AudioFacts:
    """Decode-validate one file and measure it; raise :class:`AudioProbeError` if it is not
    acceptable audio (the error's ``code`` is the quarantine reason)."""
    allowed = tuple(containers)
    if isinstance(path_or_fileobj, str | Path):
        try:
            with open(path_or_fileobj, "rb") as f:
                return _probe_open(f, allowed=allowed, silence_amplitude=silence_amplitude)
        except OSError as exc:
            raise AudioProbeError("unreadable", f"{type(exc).__name__}: {exc}") from exc
    return _probe_open(path_or_fileobj, allowed=allowed, silence_amplitude=silence_amplitude)


def _probe_open(f: BinaryIO, *, allowed: tuple[str, ...], silence_amplitude: float) -> AudioFacts:
    f.seek(0, io.SEEK_END)
    size = f.tell()
    f.seek(0)
    if size == 0:
        raise AudioProbeError("zero_bytes", "the file is empty")
    head = f.read(64)
    f.seek(0)
    sniffed = sniff_container(head)
    if sniffed is None:
        # Let libsndfile have the last word: it knows formats we do not sniff.
        try:
            info = sf.info(f)
        except Exception as exc:
            raise AudioProbeError(
                "not_audio", f"no audio container recognised ({_short(exc)})"
            ) from exc
        sniffed = info.format
        f.seek(0)
    if sniffed not in allowed:
        raise AudioProbeError(
            "unsupported_codec",
            f"container {sniffed} is not accepted; accepted: {', '.join(allowed)}",
        )
    _check_header(f, sniffed, size)
    try:
        snd = sf.SoundFile(f)
    except Exception as exc:
        message = _short(exc)
        code = "unsupported_codec" if "unsupported" in message.lower() else "truncated_or_corrupt"
        raise AudioProbeError(code, f"{sniffed}: {message}") from exc
    with snd:
        if snd.samplerate <= 0 or snd.channels <= 0:
            raise AudioProbeError(
                "impossible_header",
                f"sample rate {snd.samplerate}, channels {snd.channels}",
            )
        if snd.format not in allowed:
            raise AudioProbeError(
                "unsupported_codec",
                f"container {snd.format} is not accepted; accepted: {', '.join(allowed)}",
            )
        return _measure(snd, silence_amplitude=silence_amplitude)


def _measure(snd: sf.SoundFile, *, silence_amplitude: float) -> AudioFacts:
    rate, channels, declared = snd.samplerate, snd.channels, snd.frames
    resampler = soxr.ResampleStream(rate, FINGERPRINT_RATE, 1, dtype="float32", quality="MQ")
    mono_parts: list[np.ndarray] = []
    decoded = 0
    peak = 0.0
    sum_sq = 0.0
    silent = 0
    try:
        while True:
            block = snd.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
            if not len(block):
                break
            decoded += len(block)
            flat = block.reshape(-1)
            # NaN/inf poison the sum of squares, so one dot product checks finiteness too.
            block_sq = float(np.dot(flat, flat))
            if not math.isfinite(block_sq):
                raise AudioProbeError("truncated_or_corrupt", "decoded samples include NaN/inf")
            sum_sq += block_sq
            peak = max(peak, float(flat.max()), -float(flat.min()))
            # Column-wise ufuncs: much faster than reductions along a 2-wide axis.
            frame_peak = np.abs(block[:, 0])
            mono = block[:, 0].copy()
            for c in range(1, channels):
                np.maximum(frame_peak, np.abs(block[:, c]), out=frame_peak)
                mono += block[:, c]
            silent += int(np.count_nonzero(frame_peak <= silence_amplitude))
            if channels > 1:
                mono *= 1.0 / channels
            mono_parts.append(resampler.resample_chunk(mono))
    except AudioProbeError:
        raise
    except Exception as exc:
        raise AudioProbeError(
            "truncated_or_corrupt", f"decoding failed after {decoded} frames: {_short(exc)}"
        ) from exc
    mono_parts.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    # PCM and FLAC frame counts are exact. An Ogg stream's is its last granule position,
    # which real encoders overshoot by a few hundred frames; an MP3's comes from a Xing/Info
    # header or an estimate. (A cut-off Ogg stream is caught by its missing EOS page.)
    tolerance = {"MP3": max(2048, int(0.01 * declared)), "OGG": 8192}.get(snd.format, 0)
    if declared > 0 and decoded < declared - tolerance:
        raise AudioProbeError(
            "truncated_or_corrupt",
            f"the header promises {declared} frames but only {decoded} decode",
        )
    samples = decoded * channels
    rms = math.sqrt(sum_sq / samples) if samples else 0.0
    rms_dbfs = 20 * math.log10(rms) if rms > 0 else RMS_FLOOR_DBFS
    return AudioFacts(
        container=snd.format,
        subtype=snd.subtype,
        sample_rate=rate,
        channels=channels,
        frames=decoded,
        duration_s=decoded / rate,
        peak=peak,
        rms_dbfs=max(RMS_FLOOR_DBFS, rms_dbfs),
        silence_fraction=silent / decoded if decoded else 1.0,
        fingerprint=pcm_fingerprint(np.concatenate(mono_parts), sample_rate=FINGERPRINT_RATE),
    )


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


# --------------------------------------------------------------------------- fingerprint


def pcm_fingerprint(mono: np.ndarray, *, sample_rate: int) -> str | None:
    """A 512-bit (128 hex) fingerprint of decoded mono PCM; None when under ~0.2 s.

    Time slices are fractions of the whole clip, so encoder delay and padding (a few
    milliseconds) move no slice boundary noticeably; only coarse band-energy
    *differences* are kept, so gain changes and codec noise flip few bits.
    """
    wave = np.asarray(mono, dtype=np.float32)
    if sample_rate != FINGERPRINT_RATE:
        wave = soxr.resample(wave, sample_rate, FINGERPRINT_RATE, quality="MQ")
    slice_len = len(wave) // FINGERPRINT_SLICES
    if slice_len < 64:
        return None
    n_fft = 1 << min(11, int(math.log2(slice_len)))
    hop = n_fft // 2
    window = np.hanning(n_fft).astype(np.float32)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / FINGERPRINT_RATE)
    band_of = np.searchsorted(_BAND_EDGES_HZ, freqs, side="right") - 1
    in_band = (band_of >= 0) & (band_of < FINGERPRINT_BANDS)
    energies = np.zeros((FINGERPRINT_SLICES, FINGERPRINT_BANDS))
    for s in range(FINGERPRINT_SLICES):
        chunk = wave[s * slice_len : (s + 1) * slice_len]
        starts = range(0, len(chunk) - n_fft + 1, hop)
        frames = np.stack([chunk[i : i + n_fft] for i in starts]) * window
        power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)
        energies[s] = np.bincount(
            band_of[in_band], weights=power[in_band], minlength=FINGERPRINT_BANDS
        )
    # Floor 35 dB under the loudest band anywhere: what a lossy codec drops under its masking
    # threshold is floored alike in every encoding, so it flips no bits.
    log_e = np.log10(np.maximum(energies, energies.max() * 3e-4 + 1e-20))
    band_diff = log_e[:, :-1] - log_e[:, 1:]
    bits = (band_diff[1:] - band_diff[:-1]) > 1e-3
    value = 0
    for bit in bits.ravel():
        value = (value << 1) | int(bit)
    return f"{value:0{FINGERPRINT_BITS // 4}x}"


def fingerprint_distance(a: str, b: str) -> int:
    """Hamming distance in bits between two fingerprints of the same length."""
    if len(a) != len(b):
        raise ValueError(f"fingerprints differ in length ({len(a)} vs {len(b)} hex chars)")
    return (int(a, 16) ^ int(b, 16)).bit_count()
