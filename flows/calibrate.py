"""The `gate-calibrate` flow: build the gate for a checkpoint's snapshot and set its thresholds.

It reads the snapshot's member recordings, decodes them (retried: file reads),
embeds them, then records the detector and builds the index in one short
transaction, fingerprints and calibrates with no transaction open, and stores the
thresholds and their audit event in a second short one (``generation.calibrate``).
On SQLite every transaction holds the write lock, so other commands (a consent
change, an ingest) can write while the calibration runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from prefect import flow
from prefect.cache_policies import NONE as NO_CACHE
from rich.console import Console
from rich.progress import Progress

from flows.local_runs import step
from flows.sessions import transaction

_progress_console = Console(stderr=True)


@dataclass(frozen=True)
class Member:
    recording_id: int
    object_uri: str
    sha256: str
    artist_ids: tuple[int, ...]


@step(cache_policy=NO_CACHE)
def snapshot_task(db_url: str | None, checkpoint_id: int | None) -> tuple[int, list[Member]]:
    """The checkpoint (given, else the newest final one) and its snapshot's members."""
    from provenance.checkpoints import checkpoint_or_newest
    from provenance.features import artist_ids
    from provenance.snapshot import member_recordings

    with transaction(db_url) as session:
        ckpt = checkpoint_or_newest(session, checkpoint_id)
        members = [
            Member(rec.id, rec.object_uri, rec.sha256, tuple(artist_ids(session, rec.id)))
            for rec in member_recordings(session, ckpt.training_run_id)
            if rec.object_uri
        ]
        return ckpt.id, members


@step(retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def decode_task(members: list[Member]) -> dict[int, np.ndarray]:
    """Each member recording, whole, at the gate's 16 kHz."""
    from generation.gate_models import load_wave_16k

    return {m.recording_id: load_wave_16k(m.object_uri) for m in members}


@step(cache_policy=NO_CACHE)
def calibrate_task(
    db_url: str | None,
    checkpoint_id: int,
    members: list[Member],
    recordings: dict[int, np.ndarray],
    false_block_rate: float,
    clip_samples: int | None,
    show_progress: bool,
) -> dict[str, Any]:
    from generation.calibrate import (
        compute_calibration,
        default_transforms,
        embed_members,
        index_snapshot,
        store_calibration,
    )
    from generation.gate_models import (
        detector_config,
        load_gate_cohort,
        load_gate_embedder,
        load_gate_melody_cohort,
    )
    from provenance.embedders import record_gate_detector
    from provenance.models import Checkpoint

    embedder = load_gate_embedder()
    cohort = load_gate_cohort(embedder.sha256)
    melody_cohort = load_gate_melody_cohort()
    clips = {rec_id: wave[:clip_samples] for rec_id, wave in recordings.items()}
    transforms = default_transforms()
    # Three short transactions around the long work, so other commands can write meanwhile
    # (on SQLite every transaction holds the write lock): embed outside any transaction;
    # record the detector and build the index; compute with no transaction open; store.
    windows = embed_members(embedder, recordings)
    with transaction(db_url) as session:
        record_gate_detector(
            session,
            sha256=embedder.sha256,
            uri=str(getattr(embedder, "path", "")),
            kind=str(getattr(embedder, "kind", "unknown")),
            config=detector_config(embedder, cohort, melody_cohort),
        )
        snapshot = index_snapshot(
            session,
            session.get_one(Checkpoint, checkpoint_id),
            embedder=embedder,
            recordings=recordings,
            windows=windows,
            cohort=cohort,
            artists={m.recording_id: list(m.artist_ids) for m in members},
            melody_cohort=melody_cohort,
            member_sha256={m.sha256 for m in members},
        )
    with Progress(console=_progress_console, disable=not show_progress, transient=True) as bar:
        step = bar.add_task(
            f"calibrating: each recording and {len(transforms)} transformed copies",
            total=len(clips),
        )
        report = compute_calibration(
            snapshot,
            embedder=embedder,
            clips=clips,
            recordings=recordings,
            transforms=transforms,
            false_block_rate=false_block_rate,
            progress=lambda n: bar.advance(step, n),
        )
    with transaction(db_url) as session:
        store_calibration(session, snapshot, report)
    return report.to_json()


@flow(name="gate-calibrate")
def calibrate_flow(
    checkpoint_id: int | None = None,
    false_block_rate: float = 0.01,
    clip_seconds: float = 30.0,
    db_url: str | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Calibrate the gate of a checkpoint (default: the newest final one) on its snapshot.

    ``clip_seconds``: calibrate on the first N seconds of each member (0: all of it).
    Returns the calibration report with ``checkpoint_id``.
    """
    from generation.gate_models import GATE_SAMPLE_RATE

    if not 0 <= false_block_rate < 1:
        raise ValueError(f"false-block rate must be in [0, 1), got {false_block_rate}")
    if clip_seconds < 0:
        raise ValueError(f"clip seconds must be >= 0, got {clip_seconds}")
    ckpt_id, members = snapshot_task(db_url, checkpoint_id)
    recordings = decode_task(members)
    clip_samples = int(clip_seconds * GATE_SAMPLE_RATE) or None
    report = calibrate_task(
        db_url, ckpt_id, members, recordings, false_block_rate, clip_samples, show_progress
    )
    return {"checkpoint_id": ckpt_id, **report}
