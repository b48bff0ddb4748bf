"""Landmark fingerprints that survive pitch and tempo changes: the gate's second detector.

A learned embedding can map a transformed copy far from its source; an exact spectral
match cannot be argued away. Each clip becomes a constellation of spectral peaks on a
log-frequency axis (24 bins per octave, 200 Hz-3.8 kHz: inside the 4 kHz low-pass a
replay may have gone through). Every peak ("anchor") is combined with three of its next
peaks into a quad hash built only from quantities that pitch and tempo changes leave
alone:

- frequency *differences* to the anchor, in log-frequency bins (a pitch shift moves every
  peak by the same number of bins);
- *ratios* of the time gaps (a tempo change scales every gap by the same factor).

Matching looks every query hash up (probing the neighbouring ratio bins, so quantisation
edges cost little), then keeps only matches that agree on one transform: one recording,
one pitch offset, one time scale and one time offset. The score counts the distinct
query anchors in the largest such consistent group, so chance collisions between
unrelated music (scattered over offsets) stay small while a replay piles up in one group.
Clips longer than 30 s are scored in 30 s windows, the length of the calibration queries.
"""

from __future__ import annotations

import io
import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
N_FFT = 2048
HOP = 256  # 16 ms
FMIN = 200.0
FMAX = 3800.0
BINS_PER_OCTAVE = 24
PEAKS_PER_SECOND = 30
PEAK_NEIGHBOURHOOD = (9, 21)  # (log bins, frames): 4.5 semitones x 336 ms
FAN_OUT = 5  # candidate target peaks per anchor; quads are 3 of them
MAX_TARGET_FRAMES = 96  # 1.5 s
MIN_SPAN_FRAMES = 6
MAX_FREQ_DELTA = 31  # bins; 6 bits with offset 32
RATIO_LEVELS = 8
MAX_PITCH_OFFSET = 8  # bins (4 semitones) accepted between query and reference
MAX_LOG_SCALE = float(np.log(1.2))  # time scale accepted: 1/1.2 .. 1.2
SCALE_TOLERANCE = 0.12  # log time scale around the group's median
OFFSET_BIN = 12  # frames per time-offset bin when grouping consistent matches
MAX_BUCKET = 512  # hashes this common carry no evidence and are skipped

# The lowest threshold calibration may set. Against the demo snapshot, unrelated music
# scored at most 6 (chance quads that happen to agree); 20 s replays scored 11-480 and
# 5 s crops 40-100.
MIN_THRESHOLD = 10

# Long clips are matched in windows as long as the calibration queries (30 s).
WINDOW_S = 30.0
WINDOW_HOP_S = 15.0

FORMAT_VERSION = 1


def _log_filterbank() -> np.ndarray:
    """[n_bins, N_FFT//2+1] triangular filters equally spaced in log frequency."""
    n_bins = int(np.floor(BINS_PER_OCTAVE * np.log2(FMAX / FMIN)))
    centres = FMIN * 2.0 ** (np.arange(-1, n_bins + 1) / BINS_PER_OCTAVE)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    bank = np.zeros((n_bins, freqs.size), dtype=np.float32)
    for k in range(n_bins):
        lo, mid, hi = centres[k], centres[k + 1], centres[k + 2]
        rising = (freqs - lo) / (mid - lo)
        falling = (hi - freqs) / (hi - mid)
        bank[k] = np.clip(np.minimum(rising, falling), 0.0, None)
        if not bank[k].any():  # narrower than one FFT bin: take the nearest bin
            bank[k, int(np.argmin(np.abs(freqs - mid)))] = 1.0
    return bank


_BANK = _log_filterbank()
N_BINS = _BANK.shape[0]


def log_spectrogram(wave: np.ndarray) -> np.ndarray:
    """[N_BINS, frames] log-magnitude (dB) on the log-frequency axis, gain-normalised."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.size < N_FFT:
        wave = np.pad(wave, (0, N_FFT - wave.size))
    frames = 1 + (wave.size - N_FFT) // HOP
    strided = np.lib.stride_tricks.as_strided(
        wave, shape=(frames, N_FFT), strides=(wave.strides[0] * HOP, wave.strides[0])
    )
    spectrum = np.abs(np.fft.rfft(strided * np.hanning(N_FFT).astype(np.float32), axis=1))
    power = _BANK @ spectrum.T.astype(np.float32)
    db = 20.0 * np.log10(power + 1e-9)
    return db - float(db.max())


def peaks(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spectral peaks (frame, bin), the most prominent ``PEAKS_PER_SECOND`` per second."""
    from scipy.ndimage import maximum_filter, uniform_filter

    db = log_spectrogram(wave)
    is_max = maximum_filter(db, size=PEAK_NEIGHBOURHOOD, mode="constant", cval=-1e9) == db
    prominence = db - uniform_filter(db, size=(15, 31), mode="nearest")
    audible = db > -70.0
    f_idx, t_idx = np.nonzero(is_max & audible & (prominence > 3.0))
    if f_idx.size == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    keep = max(1, int(PEAKS_PER_SECOND * db.shape[1] * HOP / SAMPLE_RATE))
    if f_idx.size > keep:
        top = np.argpartition(-prominence[f_idx, t_idx], keep - 1)[:keep]
        f_idx, t_idx = f_idx[top], t_idx[top]
    order = np.lexsort((f_idx, t_idx))
    return t_idx[order].astype(np.int32), f_idx[order].astype(np.int32)


@dataclass
class Quads:
    """Quad hashes of one clip with the anchor's frame, bin and the quad's time span."""

    hashes: np.ndarray  # uint32 [n]
    anchor_t: np.ndarray  # int32 [n]
    anchor_f: np.ndarray  # int16 [n]
    span: np.ndarray  # int16 [n] frames from anchor to the last target

    def __len__(self) -> int:
        return int(self.hashes.size)


def _pack(df: np.ndarray, rb: np.ndarray, rc: np.ndarray) -> np.ndarray:
    """df [n, 3] in -31..31, rb/rc ratio levels in 0..RATIO_LEVELS-1 → uint32."""
    d = (df + 32).astype(np.uint32)
    return (
        d[:, 0]
        | (d[:, 1] << 6)
        | (d[:, 2] << 12)
        | (rb.astype(np.uint32) << 18)
        | (rc.astype(np.uint32) << 22)
    )


def quads(wave: np.ndarray, *, probe: bool = False) -> Quads:
    """Quad hashes of a 16 kHz mono clip.

    ``probe=True`` (queries) also emits the neighbouring ratio bin of each ratio that lies
    near a bin edge, so a one-frame jitter does not lose the match.
    """
    t, f = peaks(wave)
    n = t.size
    empty = Quads(
        np.zeros(0, np.uint32), np.zeros(0, np.int32), np.zeros(0, np.int16), np.zeros(0, np.int16)
    )
    if n < 4:
        return empty
    window = 24  # peaks after the anchor examined for targets
    cand = np.arange(n)[:, None] + np.arange(1, window + 1)[None, :]
    inside = cand < n
    cand = np.where(inside, cand, n - 1)
    dt = t[cand] - t[:, None]
    dfreq = f[cand] - f[:, None]
    valid = inside & (dt >= 1) & (dt <= MAX_TARGET_FRAMES) & (np.abs(dfreq) <= MAX_FREQ_DELTA)
    # First FAN_OUT valid targets per anchor, in time order.
    rank = np.cumsum(valid, axis=1)
    chosen = valid & (rank <= FAN_OUT)
    targets = np.full((n, FAN_OUT), -1, dtype=np.int64)
    rows, cols = np.nonzero(chosen)
    targets[rows, rank[rows, cols] - 1] = cand[rows, cols]
    combos = np.array(list(itertools.combinations(range(FAN_OUT), 3)))
    trip = targets[:, combos]  # [n, C, 3]
    anchor = np.repeat(np.arange(n), combos.shape[0])
    trip = trip.reshape(-1, 3)
    ok = np.all(trip >= 0, axis=1)
    anchor, trip = anchor[ok], trip[ok]
    span = t[trip[:, 2]] - t[anchor]
    ok = span >= MIN_SPAN_FRAMES
    anchor, trip, span = anchor[ok], trip[ok], span[ok]
    if anchor.size == 0:
        return empty
    df = f[trip] - f[anchor][:, None]
    ratio_b = (t[trip[:, 0]] - t[anchor]) / span
    ratio_c = (t[trip[:, 1]] - t[anchor]) / span
    level_b = np.minimum((ratio_b * RATIO_LEVELS).astype(np.int64), RATIO_LEVELS - 1)
    level_c = np.minimum((ratio_c * RATIO_LEVELS).astype(np.int64), RATIO_LEVELS - 1)
    variants = [(level_b, level_c, np.ones(anchor.size, bool))]
    if probe:
        near_b = _neighbour_level(ratio_b, level_b)
        near_c = _neighbour_level(ratio_c, level_c)
        variants += [
            (near_b, level_c, near_b != level_b),
            (level_b, near_c, near_c != level_c),
            (near_b, near_c, (near_b != level_b) & (near_c != level_c)),
        ]
    parts = [(_pack(df[m], lb[m], lc[m]), anchor[m], span[m]) for lb, lc, m in variants if m.any()]
    hashes = np.concatenate([p[0] for p in parts])
    anchors = np.concatenate([p[1] for p in parts])
    spans = np.concatenate([p[2] for p in parts])
    return Quads(
        hashes=hashes,
        anchor_t=t[anchors].astype(np.int32),
        anchor_f=f[anchors].astype(np.int16),
        span=spans.astype(np.int16),
    )


def _neighbour_level(ratio: np.ndarray, level: np.ndarray) -> np.ndarray:
    """The adjacent ratio level when ``ratio`` sits in the outer quarter of its bin."""
    pos = ratio * RATIO_LEVELS - level
    up = np.minimum(level + 1, RATIO_LEVELS - 1)
    down = np.maximum(level - 1, 0)
    return np.where(pos > 0.75, up, np.where(pos < 0.25, down, level))


@dataclass
class Match:
    score: int  # query anchor frames whose matches agree on one recording and transform
    recording_id: int | None
    pitch_offset_bins: int
    time_scale: float

    @property
    def pitch_semitones(self) -> float:
        return 12.0 * self.pitch_offset_bins / BINS_PER_OCTAVE


@dataclass
class Candidates:
    """Reference quads sharing a hash with a query quad: one entry per (query quad, row).

    ``query`` indexes the query's quads; the other columns are the reference row's. Buckets
    longer than ``MAX_BUCKET`` are left out, as they carry no evidence.
    """

    query: np.ndarray  # int64 [m]
    recording: np.ndarray  # int64 [m]
    anchor_t: np.ndarray  # int32 [m]
    anchor_f: np.ndarray  # int16 [m]
    span: np.ndarray  # int16 [m]

    def __len__(self) -> int:
        return int(self.query.size)


def bucket_rows(
    sorted_hashes: np.ndarray, query_hashes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(query position, row) pairs of each query hash's bucket in ``sorted_hashes``."""
    lo = np.searchsorted(sorted_hashes, query_hashes, side="left")
    hi = np.searchsorted(sorted_hashes, query_hashes, side="right")
    return bucket_pairs(lo, hi)


def bucket_pairs(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query position, row) pairs from each query hash's bucket bounds ``[lo, hi)``.

    The rule every table shares: buckets longer than ``MAX_BUCKET`` are dropped, rows
    come in query order, then in table order within a bucket.
    """
    counts = np.asarray(hi, dtype=np.int64) - lo
    counts[counts > MAX_BUCKET] = 0
    total = int(counts.sum())
    q_idx = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
    return q_idx, starts + np.arange(total, dtype=np.int64)


class QuadTable(ABC):
    """Reference quads, looked up by hash, and the matching every table shares.

    Subclasses say how rows are found (:meth:`candidates`); scoring the consistent groups
    is this class's alone, so every layout gives the same ``Match`` for the same quads.
    """

    artists: dict[int, list[int]]

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def candidates(self, hashes: np.ndarray) -> Candidates:
        """Every stored row whose hash equals one of ``hashes`` (buckets over
        ``MAX_BUCKET`` left out), ordered by query position, then by stored order."""

    def match(self, wave: np.ndarray, *, exclude_recordings: Iterable[int] = ()) -> Match:
        """The best consistent match of a clip against the reference recordings."""
        query = quads(wave, probe=True)
        return self.match_quads(query, exclude_recordings=exclude_recordings)

    def match_windows(
        self,
        wave: np.ndarray,
        *,
        window_s: float = WINDOW_S,
        hop_s: float = WINDOW_HOP_S,
        exclude_recordings: Iterable[int] = (),
    ) -> Match:
        """The best match over ``window_s`` windows of a long clip.

        Chance agreements grow with the length of the query; scoring windows as long
        as the calibration queries keeps a whole track at the calibrated chance level,
        while a replay of any part still scores in full inside its window.
        """
        size, hop = int(window_s * SAMPLE_RATE), int(hop_s * SAMPLE_RATE)
        wave = np.asarray(wave, dtype=np.float32)
        if wave.size <= size:
            return self.match(wave, exclude_recordings=exclude_recordings)
        starts = list(range(0, wave.size - size + 1, hop))
        if starts[-1] + size < wave.size:
            starts.append(wave.size - size)
        best = Match(0, None, 0, 1.0)
        for start in starts:
            found = self.match(wave[start : start + size], exclude_recordings=exclude_recordings)
            if found.score > best.score:
                best = found
        return best

    def match_quads(self, query: Quads, *, exclude_recordings: Iterable[int] = ()) -> Match:
        if len(query) == 0 or len(self) == 0:
            return Match(0, None, 0, 1.0)
        return best_group(query, self.candidates(query.hashes), exclude_recordings)


def best_group(query: Quads, found: Candidates, exclude_recordings: Iterable[int] = ()) -> Match:
    """The largest group of candidates agreeing on one recording, pitch offset, time scale
    and time offset, scored by its distinct query anchors."""
    none = Match(0, None, 0, 1.0)
    total = len(found)
    if total == 0:
        return none
    q_idx, rec = found.query, found.recording
    keep = np.ones(total, dtype=bool)
    excluded = np.fromiter((int(r) for r in exclude_recordings), dtype=np.int64)
    if excluded.size:
        keep &= ~np.isin(rec, excluded)
    pitch = query.anchor_f[q_idx].astype(np.int64) - found.anchor_f
    log_scale = np.log(query.span[q_idx] / found.span.astype(np.float64))
    keep &= (np.abs(pitch) <= MAX_PITCH_OFFSET) & (np.abs(log_scale) <= MAX_LOG_SCALE)
    if not keep.any():
        return none
    q_idx, ref_t, rec = q_idx[keep], found.anchor_t[keep], rec[keep]
    pitch, log_scale = pitch[keep], log_scale[keep]
    group = rec * 64 + (pitch + 32)
    keys, inverse, sizes = np.unique(group, return_inverse=True, return_counts=True)
    best = none
    for g in np.argsort(-sizes)[:8]:
        if sizes[g] <= best.score:
            break
        members = inverse == g
        centre = float(np.median(log_scale[members]))
        members &= np.abs(log_scale - centre) <= SCALE_TOLERANCE
        if not members.any():
            continue
        scale = float(np.exp(centre))
        offsets = query.anchor_t[q_idx[members]] - scale * ref_t[members]
        bins = np.floor(offsets / OFFSET_BIN).astype(np.int64)
        bins -= bins.min()
        hist = np.bincount(bins)
        pair = hist[:-1] + hist[1:] if hist.size > 1 else hist
        if int(pair.max()) <= best.score:
            continue
        first = int(np.argmax(pair))
        agreeing = (bins == first) | (bins == first + 1)
        # Distinct query anchors, so one coincidental local pattern counts once.
        score = int(np.unique(query.anchor_t[q_idx[members][agreeing]]).size)
        if score > best.score:
            key = int(keys[g])
            best = Match(score, key // 64, key % 64 - 32, scale)
    return best


class FingerprintIndex(QuadTable):
    """Reference quads of a snapshot in memory, sorted by hash, with per-recording artist
    ids. ``generation.fingerprint_store`` keeps the same rows on disk at catalogue scale."""

    def __init__(
        self,
        hashes: np.ndarray,
        recording: np.ndarray,
        anchor_t: np.ndarray,
        anchor_f: np.ndarray,
        span: np.ndarray,
        artists: Mapping[int, Iterable[int]],
    ) -> None:
        order = np.argsort(hashes, kind="stable")
        self.hashes = np.ascontiguousarray(hashes[order], dtype=np.uint32)
        self.recording = np.ascontiguousarray(recording[order], dtype=np.int64)
        self.anchor_t = np.ascontiguousarray(anchor_t[order], dtype=np.int32)
        self.anchor_f = np.ascontiguousarray(anchor_f[order], dtype=np.int16)
        self.span = np.ascontiguousarray(span[order], dtype=np.int16)
        self.artists = {int(r): sorted(int(a) for a in ids) for r, ids in artists.items()}

    @classmethod
    def build(
        cls, waves: Mapping[int, np.ndarray], artists: Mapping[int, Iterable[int]]
    ) -> FingerprintIndex:
        """Fingerprint whole recordings (recording id → 16 kHz mono wave)."""
        recs = list(waves)
        parts = [quads(waves[rec]) for rec in recs] or [quads(np.zeros(0, np.float32))]
        return cls(
            np.concatenate([q.hashes for q in parts]),
            np.repeat(np.asarray(recs, dtype=np.int64), [len(q) for q in parts[: len(recs)]]),
            np.concatenate([q.anchor_t for q in parts]),
            np.concatenate([q.anchor_f for q in parts]),
            np.concatenate([q.span for q in parts]),
            {rec: artists.get(rec, ()) for rec in recs},
        )

    def __len__(self) -> int:
        return int(self.hashes.size)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        recs = sorted(self.artists)
        flat = [a for r in recs for a in self.artists[r]]
        counts = [len(self.artists[r]) for r in recs]
        np.savez(
            buf,
            version=np.array([FORMAT_VERSION]),
            hashes=self.hashes,
            recording=self.recording,
            anchor_t=self.anchor_t,
            anchor_f=self.anchor_f,
            span=self.span,
            artist_recordings=np.array(recs, dtype=np.int64),
            artist_counts=np.array(counts, dtype=np.int64),
            artist_ids=np.array(flat, dtype=np.int64),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> FingerprintIndex:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if int(z["version"][0]) != FORMAT_VERSION:
                raise ValueError(f"fingerprint format {int(z['version'][0])} != {FORMAT_VERSION}")
            recs, counts, flat = z["artist_recordings"], z["artist_counts"], z["artist_ids"]
            bounds = np.concatenate([[0], np.cumsum(counts)])
            artists = {int(r): flat[bounds[i] : bounds[i + 1]].tolist() for i, r in enumerate(recs)}
            index = cls.__new__(cls)
            index.hashes = z["hashes"]
            index.recording = z["recording"]
            index.anchor_t = z["anchor_t"]
            index.anchor_f = z["anchor_f"]
            index.span = z["span"]
            index.artists = artists
        return index

    def candidates(self, hashes: np.ndarray) -> Candidates:
        q_idx, r_idx = bucket_rows(self.hashes, hashes)
        return Candidates(
            q_idx,
            self.recording[r_idx],
            self.anchor_t[r_idx],
            self.anchor_f[r_idx],
            self.span[r_idx],
        )
