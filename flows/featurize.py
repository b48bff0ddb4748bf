"""The `featurize` flow: accepted recordings → mels + captions in Arrow shards, recorded in the DB.

Incremental: only recordings the current feature set (one per mel config
hash) does not cover yet are decoded. Per-recording work runs as tasks on
the default thread runner or on a two-worker Dask cluster; results come
back in recording-id order and the flow alone writes shards, so both
runners produce the same shard bytes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.bounded import submit_bounded
from flows.local_runs import dask_task_runner, publish, run_flow, run_logger, step
from flows.sessions import transaction
from provenance.empty_features import cover_empty_recordings
from provenance.features import (
    CoveredRecording,
    artist_ids,
    banned_names,
    concluded_licence,
    covered_recording_ids,
    get_or_create_feature_set,
    record_shards,
    recording_tags,
    recordings_to_featurize,
)
from provenance.hashing import sha256_file
from provenance.object_store import home_location, resolve_location
from provenance.settings import fairchord_home
from training.captions import ClapTagger
from training.featurizer import RecordingFeatures, RecordingJob, featurize_recording
from training.mel import MelConfig
from training.segments import SegmentConfig, window_frames
from training.shard_publish import publish_feature_files, published_feature_root, pull_manifest
from training.shard_writer import (
    DEFAULT_TARGET_BYTES,
    ShardWriter,
    add_shards_to_manifest,
    new_manifest,
    write_manifest,
)
from training.shards import manifest_path, read_manifest


def _readable_anywhere(location: str) -> str:
    """A recorded location as a task on another process reads it: ``home://`` resolved in
    this process's home (a Dask worker has its own, or none), a local path made absolute."""
    resolved = resolve_location(location)
    return resolved if "://" in resolved else Path(resolved).resolve().as_uri()


ProgressCallback = Callable[[int, int, float], None]  # (done, total, audio seconds so far)
_progress_callbacks: list[ProgressCallback] = []


def add_progress_callback(callback: ProgressCallback) -> Callable[[], None]:
    """Call ``callback(done, total, audio_seconds)`` as recordings finish; returns a remover."""
    _progress_callbacks.append(callback)
    return lambda: _progress_callbacks.remove(callback)


def _report_progress(done: int, total: int, audio_seconds: float) -> None:
    # The flow calls this by name: Dask pickles the flow's function by value with the
    # globals it names, and the callbacks (a CLI's progress bar, with its locks) must not
    # be among them.
    for callback in list(_progress_callbacks):
        callback(done, total, audio_seconds)


def feature_root(mel_config: MelConfig) -> Path:
    return fairchord_home() / "features" / mel_config.hash()


def load_or_start_manifest(
    root: Path, mel_config: MelConfig, segment_config: SegmentConfig, covered: set[int]
) -> dict[str, Any]:
    """The feature set's manifest, trimmed to shards the DB has recorded (a crash between
    writing shards and committing leaves orphans, which are ignored)."""
    seg = asdict(segment_config)
    frames = window_frames(segment_config, mel_config)
    if not manifest_path(root).exists():
        return new_manifest(mel_config, frames=frames, segment_config=seg)
    manifest = read_manifest(root)
    if manifest["mel_config_hash"] != mel_config.hash():
        raise ValueError(
            f"{root} holds mel config {manifest['mel_config_hash']}, not {mel_config.hash()}"
        )
    if manifest["segment_config"] != seg:
        raise ValueError(
            f"feature set {root} was cut with segments {manifest['segment_config']}, "
            f"not {seg}; keep the same --hop or use a new FAIRCHORD_HOME"
        )
    shards = [s for s in manifest["shards"] if set(s["recording_ids"]) <= covered]
    kept = {r for s in shards for r in s["recording_ids"]}
    manifest = dict(manifest)
    manifest["shards"] = shards
    manifest["recordings"] = {k: v for k, v in manifest["recordings"].items() if int(k) in kept}
    manifest["total_rows"] = sum(s["rows"] for s in shards)
    return manifest


@step
def plan_featurization(
    db_url: str | None, mel_config: dict[str, Any], root: str, published: str | None = None
) -> tuple[int, list[RecordingJob], list[str], list[int]]:
    """Create/find the feature set; list the jobs for recordings it lacks, and banned names.
    ``published``: the store folder its files go to (recorded as its root) instead of ``root``."""
    config = MelConfig.from_dict(mel_config)
    with transaction(db_url) as session:
        fs = get_or_create_feature_set(
            session,
            mel_config_hash=config.hash(),
            mel_config=config.to_dict(),
            root_uri=published or home_location(root),
        )
        jobs = [
            RecordingJob(
                recording_id=rec.id,
                recording_sha256=rec.sha256,
                uri=_readable_anywhere(str(rec.object_uri)),
                artist_ids=tuple(artist_ids(session, rec.id)),
                licence=concluded_licence(session, rec.id),
                tags=tuple(recording_tags(session, rec.id)),
            )
            for rec in recordings_to_featurize(session, fs.id)
        ]
        return fs.id, jobs, banned_names(session), covered_recording_ids(session, fs.id)


_taggers: dict[str, ClapTagger] = {}
_taggers_lock = threading.Lock()


def load_clap_tagger(clap_path: str) -> ClapTagger:
    """A zero-shot tagger over the shipped vocabulary, one per checkpoint and process."""
    with _taggers_lock:
        tagger = _taggers.get(clap_path)
        if tagger is None:
            from training.clap_embedder import ClapEmbedder

            tagger = ClapTagger(ClapEmbedder.load(clap_path))
            _taggers[clap_path] = tagger
        return tagger


@step
def featurize_one(
    job: RecordingJob,
    names: list[str],
    mel_config: dict[str, Any],
    hop_s: float,
    clap_path: str | None = None,
) -> RecordingFeatures | str:
    """The recording's rows, or a one-line error (the flow skips it; a rerun retries it)."""
    import torch

    # One intra-op thread per task: the runner supplies the parallelism (2 cores).
    torch.set_num_threads(1)
    try:
        return featurize_recording(
            job,
            banned_names=names,
            mel_config=MelConfig.from_dict(mel_config),
            segment_config=SegmentConfig(hop_s=hop_s),
            tagger=load_clap_tagger(clap_path) if clap_path else None,
        )
    except Exception as exc:  # one unreadable file must not sink the whole corpus
        return f"recording {job.recording_id} ({job.uri}): {type(exc).__name__}: {exc}"


@step
def record_feature_set(
    db_url: str | None,
    feature_set_id: int,
    shards: list[dict[str, Any]],
    covered: list[tuple[int, int, str]],
    manifest_uri: str,
    manifest_sha256: str,
    shard_uri_prefix: str,
) -> None:
    from provenance.models import FeatureSet

    with transaction(db_url) as session:
        fs = session.get(FeatureSet, feature_set_id)
        assert fs is not None
        record_shards(
            session,
            fs,
            shards=shards,
            recordings=[CoveredRecording(r, n, s) for r, n, s in covered],
            manifest_uri=manifest_uri,
            manifest_sha256=manifest_sha256,
            shard_uri_prefix=shard_uri_prefix,
        )


@flow(name="featurize")
def featurize_flow(
    db_url: str | None = None,
    shard_mb: float = DEFAULT_TARGET_BYTES / 2**20,
    hop_s: float = 10.24,
    mel_config: dict[str, Any] | None = None,
    in_flight: int = 8,
    clap_path: str | None = None,
) -> dict[str, Any]:
    """Featurize every accepted, non-duplicate recording the current feature set lacks.

    With ``clap_path`` (a CLAP checkpoint), captions also get zero-shot genre /
    instrument / mood tags from training/data/clap_vocabulary.txt.
    """
    logger = run_logger("featurize")
    started = time.perf_counter()
    config = MelConfig.from_dict(mel_config) if mel_config else MelConfig()
    segment_config = SegmentConfig(hop_s=hop_s)
    root = feature_root(config)
    root.mkdir(parents=True, exist_ok=True)
    published = published_feature_root(config.hash())
    if published is not None:
        pull_manifest(root, published)
    fs_id, jobs, names, covered = plan_featurization(db_url, config.to_dict(), str(root), published)
    manifest = load_or_start_manifest(root, config, segment_config, set(covered))
    logger.info(
        "feature set %s (%s): %d recording(s) to featurize, %d already covered",
        fs_id,
        config.hash(),
        len(jobs),
        len(covered),
    )

    frames = window_frames(segment_config, config)
    segments_total = 0
    audio_seconds = 0.0
    per_recording: dict[int, dict[str, Any]] = {}
    failures: list[str] = []
    with ShardWriter(
        root,
        n_mels=config.n_mels,
        frames=frames,
        target_bytes=int(shard_mb * 2**20),
        first_index=_next_shard_index(root, manifest),
    ) as writer:
        done = 0

        def collect(result: RecordingFeatures | str) -> None:
            nonlocal segments_total, audio_seconds, done
            done += 1
            if isinstance(result, str):
                failures.append(result)
                logger.error("skipped: %s", result)
                _report_progress(done, len(jobs), audio_seconds)
                return
            writer.add_recording(result.batch)
            segments_total += result.segments
            audio_seconds += result.audio_seconds
            per_recording[result.recording_id] = {
                "sha256": result.batch.column("recording_sha256")[0].as_py()
                if result.segments
                else None,
                "segments": result.segments,
                "audio_seconds": round(result.audio_seconds, 3),
            }
            _report_progress(done, len(jobs), audio_seconds)

        # Collected strictly in submission (recording-id) order, so shard contents do not
        # depend on the runner.
        submit_bounded(
            lambda job: featurize_one.submit(job, names, config.to_dict(), hop_s, clap_path),
            jobs,
            limit=in_flight,
            on_result=collect,
        )
    shards = writer.written

    shard_of = {rid: s.name for s in shards for rid in s.recording_ids}
    for rid, info in per_recording.items():
        info["shard"] = shard_of.get(rid)
    if per_recording or not manifest_path(root).exists():
        manifest = add_shards_to_manifest(manifest, shards, per_recording)
        manifest_sha = write_manifest(root, manifest)
    else:
        manifest_sha = sha256_file(manifest_path(root))
    if per_recording:
        shard_prefix, manifest_uri = publish_feature_files(root, published, shards, manifest_sha)
        record_feature_set(
            db_url,
            fs_id,
            [s.to_dict() for s in shards],
            [
                (rid, info["segments"], info["shard"])
                for rid, info in per_recording.items()
                if info["shard"]
            ],
            manifest_uri,
            manifest_sha,
            shard_prefix,
        )
        _record_empty_recordings(db_url, fs_id, per_recording)
    took = time.perf_counter() - started
    summary = {
        "feature_set_id": fs_id,
        "mel_config_hash": config.hash(),
        "root": str(root),
        "recordings": len(per_recording),
        "recordings_covered": len(covered) + len(per_recording),
        "failed": failures,
        "segments": segments_total,
        "audio_seconds": round(audio_seconds, 2),
        "shards": [s.name for s in shards],
        "manifest_sha256": manifest_sha,
        "seconds": round(took, 2),
    }
    publish(
        create_table_artifact,
        key="featurize-summary",
        table=[
            {
                "recordings": len(per_recording),
                "failed": len(failures),
                "segments": segments_total,
                "audio seconds": round(audio_seconds, 1),
                "shards": len(shards),
                "time (s)": round(took, 1),
            }
        ],
        description=f"feature set {config.hash()}: "
        f"{len(covered) + len(per_recording)} recordings covered",
    )
    logger.info(
        "featurized %d recording(s) (%d failed), %d segment(s), %.0f s of audio into %d shard(s) "
        "in %.1f s",
        len(per_recording),
        len(failures),
        segments_total,
        audio_seconds,
        len(shards),
        took,
    )
    return summary


def _next_shard_index(root: Path, manifest: dict[str, Any]) -> int:
    # Never reuse a name, not even an orphan's from a crashed run.
    used = [int(p.name[6:11]) for p in root.glob("shard-*.arrow") if p.name[6:11].isdigit()]
    used += [int(s["name"][6:11]) for s in manifest["shards"]]
    return max(used, default=-1) + 1


def _record_empty_recordings(
    db_url: str | None, feature_set_id: int, per_recording: dict[int, dict[str, Any]]
) -> None:
    """Recordings that decoded to no segment at all (empty audio) are covered with 0 segments,
    so reruns do not decode them again."""
    empty = [rid for rid, info in per_recording.items() if not info["shard"]]
    if not empty:
        return
    with transaction(db_url) as session:
        cover_empty_recordings(session, feature_set_id, empty)


def run_featurize(
    *,
    db_url: str | None = None,
    shard_mb: float = DEFAULT_TARGET_BYTES / 2**20,
    hop_s: float = 10.24,
    use_dask: bool = False,
    dask_address: str | None = None,
    mel_config: MelConfig | None = None,
    clap_path: str | None = None,
) -> dict[str, Any]:
    """Run the flow: locally on 2 threads when no Prefect API is configured, else as a
    Prefect flow run on its thread runner; ``use_dask``: on a two-worker local Dask
    cluster, or with ``dask_address`` on the existing cluster whose scheduler is there
    (a Prefect flow run, with a temporary server if none is configured)."""
    params: dict[str, Any] = {
        "db_url": db_url,
        "shard_mb": shard_mb,
        "hop_s": hop_s,
        "mel_config": mel_config.to_dict() if mel_config else None,
        # Absolute: a Dask worker loads it from its own working folder.
        "clap_path": str(Path(clap_path).resolve()) if clap_path else None,
    }
    result: dict[str, Any] = run_flow(
        featurize_flow,
        workers=2,
        dask_runner=dask_task_runner(dask_address) if use_dask or dask_address else None,
        **params,
    )
    return result
