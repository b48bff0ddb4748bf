"""One recording → its shard rows: decode, segment, log-mel, descriptors, captions.

Plain functions with no database and no Prefect, so flows, benchmarks and
tests share exactly the same path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from training.audio_io import load_audio
from training.captions import ClapTagger, NameFilter, build_caption
from training.descriptors import compute_descriptors
from training.mel import DEFAULT_MEL_CONFIG, MelConfig, log_mel
from training.segments import (
    DEFAULT_SEGMENT_CONFIG,
    SegmentConfig,
    segment_wave,
    window_frames,
)
from training.shard_writer import segment_rows

logger = logging.getLogger(__name__)


def decode_for_mel(uri_or_path: str, *, mel_config: MelConfig = DEFAULT_MEL_CONFIG) -> np.ndarray:
    """Mono float32 audio at the mel sample rate, via training.audio_io.load_audio."""
    return np.asarray(
        load_audio(uri_or_path, sample_rate=mel_config.sample_rate, mono=True), dtype=np.float32
    )


@dataclass(frozen=True)
class RecordingJob:
    """Everything featurizing one recording needs; plain values so it pickles to Dask."""

    recording_id: int
    recording_sha256: str
    uri: str
    artist_ids: tuple[int, ...] = ()
    licence: str = "NOASSERTION"
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordingFeatures:
    recording_id: int
    batch: pa.RecordBatch
    segments: int
    audio_seconds: float
    seconds_taken: float


def featurize_wave(
    wave: np.ndarray,
    job: RecordingJob,
    *,
    banned_names: Iterable[str] | NameFilter = (),
    mel_config: MelConfig = DEFAULT_MEL_CONFIG,
    segment_config: SegmentConfig = DEFAULT_SEGMENT_CONFIG,
    tagger: ClapTagger | None = None,
) -> pa.RecordBatch:
    """Shard rows for an already decoded mono waveform at the mel sample rate."""
    name_filter = (
        banned_names
        if isinstance(banned_names, NameFilter)
        else NameFilter.from_names(banned_names)
    )
    frames = window_frames(segment_config, mel_config)
    segments = segment_wave(wave, segment_config=segment_config, mel_config=mel_config)
    mels = np.empty((len(segments), mel_config.n_mels, frames), dtype=np.float16)
    captions: list[str] = []
    methods: list[str] = []
    for i, seg in enumerate(segments):
        # One clip at a time: on 2 cores batching clips is slower per clip.
        mel = log_mel(seg.wave, mel_config)[:, :frames]
        mels[i] = mel.numpy()
        descriptors = compute_descriptors(
            seg.wave, mel, valid_samples=seg.valid_samples, mel_config=mel_config
        )
        clap_tags: Sequence[str] = tagger.tags(seg.wave) if tagger is not None else ()
        caption = build_caption(
            descriptors, banned_names=name_filter, tags=job.tags, clap_tags=clap_tags
        )
        captions.append(caption.text)
        methods.append(caption.method)
    return segment_rows(
        recording_id=job.recording_id,
        recording_sha256=job.recording_sha256,
        mels=mels,
        start_s=[s.start_s for s in segments],
        is_partial=[s.is_partial for s in segments],
        valid_frames=[s.valid_frames for s in segments],
        captions=captions,
        caption_methods=methods,
        artist_ids=list(job.artist_ids),
        licence=job.licence,
    )


def featurize_recording(
    job: RecordingJob,
    *,
    banned_names: Iterable[str] | NameFilter = (),
    mel_config: MelConfig = DEFAULT_MEL_CONFIG,
    segment_config: SegmentConfig = DEFAULT_SEGMENT_CONFIG,
    tagger: ClapTagger | None = None,
) -> RecordingFeatures:
    """Decode ``job.uri`` and return its shard rows with counts and timing."""
    started = time.perf_counter()
    wave = decode_for_mel(job.uri, mel_config=mel_config)
    batch = featurize_wave(
        wave,
        job,
        banned_names=banned_names,
        mel_config=mel_config,
        segment_config=segment_config,
        tagger=tagger,
    )
    return RecordingFeatures(
        recording_id=job.recording_id,
        batch=batch,
        segments=batch.num_rows,
        audio_seconds=len(wave) / mel_config.sample_rate,
        seconds_taken=time.perf_counter() - started,
    )
