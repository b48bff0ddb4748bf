"""`fairchord gate check|calibrate`: the similarity gate on any audio, and its calibration.

Exit codes of `gate check`: 0 every file allowed; 5 at least one file blocked; 6 the gate
could not decide (no/corrupt/mismatched index, embedder error, NaN scores) — fail closed;
2 bad input (missing or undecodable file, unknown checkpoint); 3 database not initialised.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from flows.cli.common import EXIT_BAD_INPUT, console, fail, print_json, session_scope

if TYPE_CHECKING:
    import numpy as np
    from sqlalchemy.orm import Session

    from provenance.models import Checkpoint

EXIT_BLOCKED = 5
EXIT_GATE_UNAVAILABLE = 6
GATE_SAMPLE_RATE = 16_000


def load_wave_16k(path_or_uri: str) -> np.ndarray:
    """Decode to mono 16 kHz float32 — the model's band limit, the gate's one signal path."""
    from training.audio_io import load_audio

    return load_audio(path_or_uri, sample_rate=GATE_SAMPLE_RATE, mono=True)


def resolve_checkpoint(session: Session, checkpoint_id: int | None) -> Checkpoint:
    """The given checkpoint, else the newest final one, else the newest one."""
    from provenance.checkpoints import newest_checkpoint
    from provenance.models import Checkpoint

    if checkpoint_id is not None:
        ckpt = session.get(Checkpoint, checkpoint_id)
        if ckpt is None:
            fail(f"checkpoint {checkpoint_id} does not exist", EXIT_BAD_INPUT)
        return ckpt
    ckpt = newest_checkpoint(session)
    if ckpt is None:
        fail("no checkpoints yet: train a model first (`fairchord train`)", EXIT_BAD_INPUT)
    return ckpt


def load_embedder(clap_path: str | None) -> Any:
    """The project's CLAP embedder; any failure means the gate cannot decide."""
    from generation.index import GateUnavailable

    try:
        from training.clap_embedder import ClapEmbedder, default_clap_path

        return ClapEmbedder.load(clap_path or default_clap_path())
    except Exception as exc:
        raise GateUnavailable(f"cannot load the CLAP embedder: {exc}") from exc


def load_gate_embedder() -> Any:
    """The gate's pretrained music embedder (MSD-musicnn); any failure means the gate
    cannot decide."""
    from generation.index import GateUnavailable

    try:
        from training.musicnn.embedder import MusicnnEmbedder

        return MusicnnEmbedder.load()
    except Exception as exc:
        raise GateUnavailable(f"cannot load the gate's music embedder: {exc}") from exc


def load_gate_cohort(embedder_sha256: str) -> Any:
    """The shipped outside-music cohort for the gate embedder."""
    from generation.cohort import load_cohort

    return load_cohort(embedder_sha256=embedder_sha256)


def load_gate_melody_cohort() -> Any:
    """The shipped outside-music chroma the melody detector is calibrated against."""
    from generation.melody_cohort import load_melody_cohort

    return load_melody_cohort()


def record_detector(
    session: Session, embedder: Any, cohort: Any | None, melody_cohort: Any | None = None
) -> None:
    """Record the gate's embedder (and the cohort it is calibrated with) as an ``Embedder``
    row with its provenance: what the gate itself learned from."""
    from sqlalchemy import select

    from provenance.audit_log import append_event
    from provenance.models import Embedder

    config = dict(getattr(embedder, "config", {}) or {})
    if cohort is not None:
        config["cohort"] = cohort.describe()
    if melody_cohort is not None:
        config["melody_cohort"] = melody_cohort.describe()
    row = session.execute(
        select(Embedder).where(Embedder.sha256 == embedder.sha256)
    ).scalar_one_or_none()
    if row is not None:
        if row.config != config:
            row.config = config
        return
    row = Embedder(
        sha256=embedder.sha256,
        uri=str(getattr(embedder, "path", "")),
        kind=str(getattr(embedder, "kind", "unknown")),
        config=config,
    )
    session.add(row)
    session.flush()
    append_event(
        session,
        "embedder.recorded",
        entity="embedder",
        entity_id=row.id,
        payload={"sha256": embedder.sha256, "kind": row.kind, "role": "similarity_gate"},
    )


def register(app: typer.Typer) -> None:
    gate_app = typer.Typer(
        help="The similarity gate: check audio against a checkpoint's training snapshot.",
        no_args_is_help=True,
    )
    app.add_typer(gate_app, name="gate")

    @gate_app.command("check")
    def check(
        audio: list[Path] = typer.Argument(
            ..., help="Audio files to check (any decodable format)."
        ),
        checkpoint: int = typer.Option(
            None, "--checkpoint", help="Checkpoint id (default: newest final checkpoint)."
        ),
        json_output: bool = typer.Option(False, "--json", help="One JSON object per file."),
    ) -> None:
        """Gate each file exactly as generated audio is gated. Exit 0 all allowed, 5 some
        blocked, 6 the gate could not decide (fails closed), 2 bad input."""
        from generation.gate import SimilarityGate
        from generation.index import GateUnavailable, load_index

        for path in audio:
            if not path.is_file():
                fail(f"{path} is not a file", EXIT_BAD_INPUT)
        waves = {}
        for path in audio:
            try:
                waves[path] = load_wave_16k(str(path))
            except Exception as exc:
                fail(f"cannot decode {path}: {exc}", EXIT_BAD_INPUT)
        blocked = False
        try:
            with session_scope() as session:
                ckpt = resolve_checkpoint(session, checkpoint)
                embedder = load_gate_embedder()
                index = load_index(session, ckpt, embedder_sha256=embedder.sha256)
                gate = SimilarityGate(index, embedder)
                for path, wave in waves.items():
                    result = gate.check(wave)
                    blocked |= result.verdict == "block"
                    doc = {"file": str(path), "checkpoint_id": ckpt.id, **result.to_json()}
                    if json_output:
                        print_json(doc)
                    else:
                        console.print(
                            f"{path}: [bold]{result.verdict}[/bold] track "
                            f"{result.track_similarity:.3f} (recording "
                            f"{result.nearest['recording_id']}) {'; '.join(result.reasons)}",
                            highlight=False,
                        )
        except GateUnavailable as exc:
            fail(f"gate could not decide (nothing allowed): {exc}", EXIT_GATE_UNAVAILABLE)
        if blocked:
            raise typer.Exit(EXIT_BLOCKED)

    @gate_app.command("calibrate")
    def calibrate(
        checkpoint: int = typer.Option(
            None, "--checkpoint", help="Checkpoint id (default: newest final checkpoint)."
        ),
        false_block_rate: float = typer.Option(
            0.01, "--false-block-rate", help="Allowed share of negatives blocked (0..1)."
        ),
        clip_seconds: float = typer.Option(
            30.0,
            "--clip-seconds",
            help="Calibrate on the first N seconds of each member recording (0: all of it).",
        ),
        json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ) -> None:
        """Build the gate for the checkpoint's snapshot and set its thresholds: embeds every
        member recording with the pretrained music embedder (MSD-musicnn) into the gate
        index, fingerprints them, enrols each training artist and normalises against the
        shipped outside-music cohort; thresholds come from transformed copies of training
        clips (track and fingerprint scores) and from outside music (artist score)."""
        from rich.progress import Progress
        from sqlalchemy import select

        from generation.calibrate import calibrate_run, default_transforms
        from generation.index import GateUnavailable
        from provenance.features import artist_ids
        from provenance.models import Recording, TrainingRunMember

        if not 0 <= false_block_rate < 1:
            fail(f"--false-block-rate must be in [0, 1), got {false_block_rate}", EXIT_BAD_INPUT)
        if clip_seconds < 0:
            fail(f"--clip-seconds must be >= 0, got {clip_seconds}", EXIT_BAD_INPUT)
        limit = int(clip_seconds * GATE_SAMPLE_RATE) or None
        try:
            with session_scope() as session:
                ckpt = resolve_checkpoint(session, checkpoint)
                embedder = load_gate_embedder()
                cohort = load_gate_cohort(embedder.sha256)
                melody_cohort = load_gate_melody_cohort()
                record_detector(session, embedder, cohort, melody_cohort)
                members = (
                    session.execute(
                        select(Recording)
                        .join(TrainingRunMember, TrainingRunMember.recording_id == Recording.id)
                        .where(TrainingRunMember.training_run_id == ckpt.training_run_id)
                        .order_by(Recording.id)
                    )
                    .scalars()
                    .all()
                )
                recordings = {
                    rec.id: load_wave_16k(rec.object_uri) for rec in members if rec.object_uri
                }
                clips = {rec_id: wave[:limit] for rec_id, wave in recordings.items()}
                artists = {rec_id: artist_ids(session, rec_id) for rec_id in recordings}
                transforms = default_transforms()
                with Progress(console=console, disable=json_output, transient=True) as bar:
                    task = bar.add_task(
                        f"calibrating: each recording and {len(transforms)} transformed copies",
                        total=len(clips),
                    )
                    report = calibrate_run(
                        session,
                        ckpt,
                        embedder=embedder,
                        clips=clips,
                        recordings=recordings,
                        transforms=transforms,
                        false_block_rate=false_block_rate,
                        progress=lambda n: bar.advance(task, n),
                        cohort=cohort,
                        artists=artists,
                        melody_cohort=melody_cohort,
                        member_sha256={rec.sha256 for rec in members},
                    )
        except GateUnavailable as exc:
            fail(f"cannot calibrate: {exc}", EXIT_GATE_UNAVAILABLE)
        if json_output:
            print_json(report.to_json())
        else:
            console.print(
                f"track ≥ {report.thresholds['track']:.4f} (recall {report.track_recall:.3f}), "
                f"fingerprint ≥ {report.thresholds['fingerprint']['threshold']:g} (recall "
                f"{report.fingerprint_recall:.3f}), replays blocked by either "
                f"{report.replay_recall:.3f}; artist ≥ {report.thresholds['artist']:.4f} "
                f"(recall {report.artist_recall:.3f}); false blocks on negatives "
                f"{report.combined_false_block_rate:.3%} over {report.recordings} recordings",
                highlight=False,
            )
            if report.melody is not None:
                mel = report.melody
                console.print(
                    f"melody ≥ {mel['thresholds']['window']:.3f} for 30 s windows, "
                    f"≥ {mel['thresholds']['short']:.3f} for clips under 20 s; outside "
                    f"negatives {mel['outside_negatives']['window']} tracks "
                    f"({mel['cohort_excluded_as_members']} left out as members)",
                    highlight=False,
                )
            for name, recall in report.per_transform_recall.items():
                console.print(f"  {name:<16} replays blocked {recall:.3f}", highlight=False)
