"""Key- and tempo-invariant melody matching on chroma: a copied tune on other instruments.

Landmark fingerprints (``generation.fingerprint``) hash spectral peaks, which belong to
the instrument as much as to the tune: the same score on strings instead of a piano
shares few peaks. This detector compares what a re-orchestration keeps, the sequence
of pitch classes:

1. Chroma: a 100 ms-hop STFT, energy in one band per semitone (MIDI 36-95,
   65 Hz-2 kHz), log-compressed (which evens out how loud each instrument's harmonics
   are), folded into 12 pitch classes and smoothed over ``SMOOTH_FRAMES``. Recordings
   are kept at 5 frames per second; every frame is centred and scaled to unit length,
   and a silent frame is 0.
2. Tempo: the query is resampled at ``TIME_SCALES`` (0.85-1.18 of the reference's time).
3. Key: all 12 circular shifts of the pitch classes.
4. Score: the Pearson correlation, per pitch class, between the query's frames and the
   reference passage along the best (time scale, transposition, offset). Removing each
   passage's mean removes its key profile, which every tune in the same mode shares, so
   what correlates is the melodic and harmonic movement. All offsets and shifts are
   computed at once as 2-D FFT cross-correlations (time x pitch class) against the
   index's precomputed block transforms. 1.0 is a perfect copy; unrelated music sits
   well below (see ``benchmarks/reorchestration_eval.py`` for measured levels).

Clips longer than ``WINDOW_S`` (30 s, as the fingerprints) are scored in windows; the
best window counts. Shorter windows separate tunes less well: old folk tunes share
motifs a few bars long (two of the demo corpus's Essen tunes do). The index lays
recordings out with silent gaps longer than a window, so a window never
spans two of them.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
N_FFT = 4096
HOP = 1600  # 100 ms: the analysis rate; recordings are kept at every second frame
DOWNSAMPLE = 2  # 5 frames per second in the index
FRAME_RATE = SAMPLE_RATE / (HOP * DOWNSAMPLE)
MIDI_LOW, MIDI_HIGH = 36, 96  # C2 (65 Hz) up to B6 (1976 Hz): five octaves
LOG_GAIN = 100.0  # log(1 + LOG_GAIN * energy / the clip's loudest band)
SMOOTH_FRAMES = 5  # 0.5 s moving average before downsampling
SILENCE = 1e-4  # frames quieter than this share of the clip's loudest are silent
# Query time / reference time, log-spaced and symmetric around 1 (0.85 ... 1/0.85).
TIME_SCALES = tuple(float(s) for s in np.round(np.geomspace(0.85, 1 / 0.85, 7), 4))
WINDOW_S = 30.0
WINDOW_HOP_S = 15.0
MIN_ACTIVE_FRAMES = 10  # 2 s of sound before a window is scored at all
# Passages whose pitch classes barely move (a held chord) are not compared: the variance
# around their mean, per frame, must reach this (unit frames: up to 1).
MIN_VARIATION = 0.1
FORMAT_VERSION = 1

_WINDOW_FRAMES = int(round(WINDOW_S * FRAME_RATE))
# The most frames a resampled window can have; the silent gap between recordings is as
# long, so a window overlaps at most one recording.
MAX_QUERY_FRAMES = int(np.ceil(_WINDOW_FRAMES / min(TIME_SCALES))) + 2
GAP_FRAMES = MAX_QUERY_FRAMES
# Matching correlates the query with overlapping blocks of the index (overlap-save), so
# the query's FFT is short and the index's block FFTs are computed once.
BLOCK = 1024
BLOCK_STRIDE = BLOCK - MAX_QUERY_FRAMES
WINDOWS_PER_BATCH = 4


def chroma_config() -> dict[str, float | int]:
    """The chroma front end's parameters: stored chroma is only comparable under the same."""
    return {
        "sample_rate": SAMPLE_RATE,
        "n_fft": N_FFT,
        "hop": HOP,
        "midi_low": MIDI_LOW,
        "midi_high": MIDI_HIGH,
        "log_gain": LOG_GAIN,
        "smooth_frames": SMOOTH_FRAMES,
    }


def _semitone_bank() -> np.ndarray:
    """[bands, N_FFT//2+1] triangular filters, one per semitone, peaking on the pitch."""
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    midi = np.arange(MIDI_LOW - 1, MIDI_HIGH + 1)
    centres = 440.0 * 2.0 ** ((midi - 69) / 12.0)
    bank = np.zeros((MIDI_HIGH - MIDI_LOW, freqs.size), dtype=np.float32)
    for k in range(bank.shape[0]):
        lo, mid, hi = centres[k], centres[k + 1], centres[k + 2]
        rising = (freqs - lo) / (mid - lo)
        falling = (hi - freqs) / (hi - mid)
        bank[k] = np.clip(np.minimum(rising, falling), 0.0, None)
    return bank


_BANK = _semitone_bank()


def chroma(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed chroma at the analysis rate: ([frames, 12], loudness).

    Loudness is each frame's share of the clip's loudest frame (0..1), after the same
    smoothing, so a caller can tell sound from silence.
    """
    from scipy.ndimage import uniform_filter1d

    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected a mono wave, got shape {wave.shape}")
    if wave.size < N_FFT:
        wave = np.pad(wave, (0, N_FFT - wave.size))
    frames = 1 + (wave.size - N_FFT) // HOP
    strided = np.lib.stride_tricks.as_strided(
        wave, shape=(frames, N_FFT), strides=(wave.strides[0] * HOP, wave.strides[0])
    )
    spectrum = np.abs(np.fft.rfft(strided * np.hanning(N_FFT).astype(np.float32), axis=1))
    energy = (spectrum.astype(np.float32) ** 2) @ _BANK.T  # [frames, bands]
    peak = float(energy.max())
    if peak <= 0.0:
        return np.zeros((frames, 12), np.float32), np.zeros(frames, np.float32)
    logged = np.log1p(LOG_GAIN * energy / peak)
    classes = logged.reshape(frames, -1, 12).sum(axis=1)
    loudness = energy.sum(axis=1)
    smooth = uniform_filter1d(classes, SMOOTH_FRAMES, axis=0, mode="nearest")
    loud = uniform_filter1d(loudness, SMOOTH_FRAMES, mode="nearest")
    return smooth.astype(np.float32), (loud / max(float(loud.max()), 1e-30)).astype(np.float32)


def _unit_frames(classes: np.ndarray, loudness: np.ndarray) -> np.ndarray:
    """Centre and L2-normalise every frame; silent or flat frames become 0."""
    centred = classes - classes.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1, keepdims=True)
    live = (loudness[:, None] >= SILENCE) & (norm > 1e-6)
    return np.where(live, centred / np.maximum(norm, 1e-6), 0.0).astype(np.float32)


def recording_frames(wave: np.ndarray) -> np.ndarray:
    """[frames, 12] unit chroma frames of a reference recording at ``FRAME_RATE``."""
    classes, loudness = chroma(wave)
    return _unit_frames(classes[::DOWNSAMPLE], loudness[::DOWNSAMPLE])


def _resample(classes: np.ndarray, loudness: np.ndarray, scale: float) -> np.ndarray:
    """Query frames at the reference's frame times stretched by ``scale``."""
    step = DOWNSAMPLE * scale
    positions = np.arange(0.0, classes.shape[0] - 1 + 1e-9, step)
    left = np.floor(positions).astype(np.int64)
    right = np.minimum(left + 1, classes.shape[0] - 1)
    frac = (positions - left).astype(np.float32)[:, None]
    mixed = classes[left] * (1 - frac) + classes[right] * frac
    loud = loudness[left] * (1 - frac[:, 0]) + loudness[right] * frac[:, 0]
    return _unit_frames(mixed, loud)


@dataclass
class MelodyMatch:
    score: float  # Pearson correlation of the aligned chroma, -1..1 (0: nothing compared)
    recording_id: int | None
    transpose_semitones: int  # the query is the reference moved by this many semitones
    time_scale: float  # query duration / reference duration of the matched passage


NO_MATCH = MelodyMatch(0.0, None, 0, 1.0)


class MelodyIndex:
    """Unit chroma frames of reference recordings, concatenated with silent gaps."""

    def __init__(
        self,
        frames: np.ndarray,
        recording_ids: np.ndarray,
        starts: np.ndarray,
        lengths: np.ndarray,
        artists: Mapping[int, Iterable[int]],
    ) -> None:
        self.frames = np.ascontiguousarray(frames, dtype=np.float32)
        self.recording_ids = np.asarray(recording_ids, dtype=np.int64)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.artists = {int(r): sorted(int(a) for a in ids) for r, ids in artists.items()}
        self._check()
        # Which recording a window starting at each frame overlaps (-1: none): the one it
        # starts in, or when it starts in a gap, the next one.
        owner = np.full(self.frames.shape[0], -1, dtype=np.int64)
        previous_end = 0
        for slot, (start, length) in enumerate(zip(self.starts, self.lengths, strict=True)):
            owner[max(previous_end, start - GAP_FRAMES) : start + length] = slot
            previous_end = start + length
        self._owner = owner
        self._spectra: np.ndarray | None = None
        self._norms: dict[int, np.ndarray] = {}

    def _check(self) -> None:
        n = self.frames.shape[0]
        if self.frames.ndim != 2 or self.frames.shape[1] != 12:
            raise ValueError(f"melody frames must be [n, 12], got {self.frames.shape}")
        if not self.recording_ids.shape == self.starts.shape == self.lengths.shape:
            raise ValueError("melody index: recording ids, starts and lengths differ in size")
        ends = self.starts + self.lengths
        if self.starts.size and (
            self.starts[0] < GAP_FRAMES
            or (self.lengths < 0).any()
            or (self.starts[1:] - ends[:-1] < GAP_FRAMES).any()
            or ends[-1] + GAP_FRAMES > n
        ):
            raise ValueError("melody index: recordings overlap or lack their silent gaps")
        if not np.isfinite(self.frames).all():
            raise ValueError("melody index: frames hold NaN or infinity")

    @classmethod
    def build(
        cls,
        waves: Mapping[int, np.ndarray],
        artists: Mapping[int, Iterable[int]],
    ) -> MelodyIndex:
        """Index whole recordings (recording id → 16 kHz mono wave)."""
        gap = np.zeros((GAP_FRAMES, 12), np.float32)
        parts, starts, lengths = [gap], [], []
        position = GAP_FRAMES
        for rec in waves:
            frames = recording_frames(waves[rec])
            starts.append(position)
            lengths.append(frames.shape[0])
            parts += [frames, gap]
            position += frames.shape[0] + GAP_FRAMES
        return cls(
            np.concatenate(parts),
            np.asarray(list(waves), dtype=np.int64),
            np.asarray(starts, dtype=np.int64),
            np.asarray(lengths, dtype=np.int64),
            {rec: artists.get(rec, ()) for rec in waves},
        )

    def __len__(self) -> int:
        """The number of recordings."""
        return int(self.recording_ids.size)

    @property
    def seconds(self) -> float:
        return float(self.lengths.sum()) / FRAME_RATE

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        recs = sorted(self.artists)
        np.savez(
            buf,
            version=np.array([FORMAT_VERSION]),
            frames=self.frames.astype(np.float16),
            recording_ids=self.recording_ids,
            starts=self.starts,
            lengths=self.lengths,
            artist_recordings=np.array(recs, dtype=np.int64),
            artist_counts=np.array([len(self.artists[r]) for r in recs], dtype=np.int64),
            artist_ids=np.array([a for r in recs for a in self.artists[r]], dtype=np.int64),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> MelodyIndex:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                version = int(z["version"][0])
                if version != FORMAT_VERSION:
                    raise ValueError(f"melody index format {version} != {FORMAT_VERSION}")
                recs, counts, flat = z["artist_recordings"], z["artist_counts"], z["artist_ids"]
                if counts.sum() != flat.size or counts.size != recs.size:
                    raise ValueError("melody index: artist lists do not add up")
                bounds = np.concatenate([[0], np.cumsum(counts)])
                artists = {
                    int(r): flat[bounds[i] : bounds[i + 1]].tolist() for i, r in enumerate(recs)
                }
                return cls(
                    z["frames"].astype(np.float32),
                    z["recording_ids"],
                    z["starts"],
                    z["lengths"],
                    artists,
                )
        except ValueError:
            raise
        except Exception as exc:  # zip, npz and key errors of a damaged file
            raise ValueError(f"not a melody index: {type(exc).__name__}: {exc}") from exc

    # ----------------------------------------------------------------------- matching

    def _block_spectra(self) -> np.ndarray:
        """FFTs (pitch class x time) of overlapping ``BLOCK``-frame blocks, computed once.

        Block ``b`` starts at frame ``b * BLOCK_STRIDE``; the overlap is as long as the
        longest query, so every offset's correlation lies whole inside one block.
        """
        if self._spectra is None:
            from scipy.fft import rfft2

            n_blocks = max(1, -(-self.frames.shape[0] // BLOCK_STRIDE))
            padded = np.zeros((n_blocks * BLOCK_STRIDE + BLOCK, 12), np.float32)
            padded[: self.frames.shape[0]] = self.frames
            starts = np.arange(n_blocks)[:, None] * BLOCK_STRIDE + np.arange(BLOCK)
            blocks = padded[starts].transpose(0, 2, 1)  # [blocks, 12, BLOCK]
            self._spectra = np.asarray(rfft2(blocks, axes=(1, 2)), dtype=np.complex64)
        return self._spectra

    def _centred_norms(self, length: int) -> np.ndarray:
        """[frames] the norm of each ``length``-frame reference passage, its mean removed
        per pitch class (floored, so a static passage cannot correlate by a tiny norm)."""
        cached = self._norms.get(length)
        if cached is not None:
            return cached
        n = self.frames.shape[0]
        padded = np.concatenate([self.frames, np.zeros((length, 12), np.float32)])
        sums = np.concatenate([np.zeros((1, 12)), np.cumsum(padded, axis=0, dtype=np.float64)])
        squares = np.concatenate(
            [[0.0], np.cumsum(np.sum(padded * padded, axis=1), dtype=np.float64)]
        )
        window_sum = sums[length : length + n] - sums[:n]
        energy = squares[length : length + n] - squares[:n]
        energy -= np.sum(window_sum * window_sum, axis=1) / length
        norms = np.sqrt(np.maximum(energy, MIN_VARIATION * length)).astype(np.float32)
        self._norms[length] = norms
        return norms

    def match(self, wave: np.ndarray, *, exclude_recordings: Collection[int] = ()) -> MelodyMatch:
        """The best match of a clip (any length; scored in ``WINDOW_S`` windows)."""
        if len(self) == 0:
            return NO_MATCH
        classes, loudness = chroma(wave)
        return self.match_chroma(classes, loudness, exclude_recordings=exclude_recordings)

    def match_chroma(
        self,
        classes: np.ndarray,
        loudness: np.ndarray,
        *,
        exclude_recordings: Collection[int] = (),
    ) -> MelodyMatch:
        """The best match of a clip given as its :func:`chroma` (e.g. a stored cohort's)."""
        if len(self) == 0 or classes.shape[0] == 0:
            return NO_MATCH
        classes = np.asarray(classes, dtype=np.float32)
        loudness = np.asarray(loudness, dtype=np.float32)
        window = int(round(WINDOW_S * SAMPLE_RATE / HOP))
        hop = int(round(WINDOW_HOP_S * SAMPLE_RATE / HOP))
        starts = list(range(0, max(classes.shape[0] - window, 0) + 1, hop))
        if starts[-1] + window < classes.shape[0]:
            starts.append(classes.shape[0] - window)
        best = NO_MATCH
        # A few windows at a time bound the memory of the correlation arrays.
        for group in range(0, len(starts), WINDOWS_PER_BATCH):
            queries: list[np.ndarray] = []
            scales: list[float] = []
            for start in starts[group : group + WINDOWS_PER_BATCH]:
                part, loud = classes[start : start + window], loudness[start : start + window]
                for scale in TIME_SCALES:
                    queries.append(_resample(part, loud, scale))
                    scales.append(scale)
            found = self._best(queries, scales, exclude_recordings)
            if found.recording_id is not None and (
                best.recording_id is None or found.score > best.score
            ):
                best = found
        return best

    def _best(
        self,
        queries: list[np.ndarray],
        scales: list[float],
        exclude_recordings: Collection[int],
    ) -> MelodyMatch:
        from scipy.fft import irfft2, rfft2

        centred, lengths = [], []
        for i, q in enumerate(queries):
            assert q.shape[0] <= MAX_QUERY_FRAMES
            active = int(np.count_nonzero(q.any(axis=1)))
            # Pearson correlation per pitch class: the window's own mean (its key profile,
            # which any tune in the same mode shares) carries no evidence.
            qc = q - q.mean(axis=0, keepdims=True)
            energy = float(np.sum(qc * qc))
            if active >= MIN_ACTIVE_FRAMES and energy >= MIN_VARIATION * q.shape[0]:
                centred.append((i, qc / np.sqrt(energy)))
                lengths.append(q.shape[0])
        if not centred:
            return NO_MATCH
        kept = np.array([i for i, _ in centred])
        batch = np.zeros((kept.size, 12, BLOCK), np.float32)
        for row, (_, qc) in enumerate(centred):
            batch[row, :, : qc.shape[0]] = qc.T
        spectrum = rfft2(batch, axes=(1, 2))
        # Cross-correlation over (pitch-class shift, time offset) of every query with every
        # block: [queries, blocks, 12 shifts, offsets].
        corr = irfft2(
            np.conj(spectrum)[:, None] * self._block_spectra()[None], s=(12, BLOCK), axes=(2, 3)
        )[..., :BLOCK_STRIDE]
        n = self.frames.shape[0]
        corr = corr.transpose(0, 2, 1, 3).reshape(kept.size, 12, -1)[:, :, :n]
        norms = {length: self._centred_norms(length) for length in set(lengths)}
        corr /= np.stack([norms[length] for length in lengths])[:, None, :]
        best_per_lag = corr.max(axis=(0, 1))
        allowed = self._owner >= 0
        if exclude_recordings:
            blocked = np.flatnonzero(np.isin(self.recording_ids, list(exclude_recordings)))
            allowed &= ~np.isin(self._owner, blocked)
        if not allowed.any():
            return NO_MATCH
        lag = int(np.argmax(np.where(allowed, best_per_lag, -np.inf)))
        flat = int(np.argmax(corr[:, :, lag]))
        best_query, shift = divmod(flat, 12)
        slot = int(self._owner[lag])
        # Reference pitch class (c + shift) lines up with query class c.
        transpose = -shift % 12
        return MelodyMatch(
            score=float(corr[best_query, shift, lag]),
            recording_id=int(self.recording_ids[slot]),
            transpose_semitones=transpose - 12 if transpose > 6 else transpose,
            time_scale=scales[int(kept[best_query])],
        )
