"""`fairchord eval`: FD_clap, FD_musicnn and CLAP score of a checkpoint on its run's
held-back segments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from flows.cli.common import (
    EXIT_BAD_INPUT,
    console,
    err_console,
    fail,
    print_json,
    print_table,
    session_scope,
)

if TYPE_CHECKING:
    from training.evaluate import HeldBackClip, MusicnnLike


def load_musicnn() -> tuple[MusicnnLike | None, str | None]:
    """MSD-musicnn, the judge the project did not train, or None and the reason it is
    missing: an eval is a report, so the CLAP figures go out without it."""
    try:
        from training.musicnn.embedder import MusicnnEmbedder

        return MusicnnEmbedder.load(), None
    except Exception as exc:  # any failure only costs the report one figure
        return None, f"{type(exc).__name__}: {exc}"


def held_back_clips(
    spec: dict[str, Any], object_uris: dict[int, str], *, count: int, seconds: float
) -> list[HeldBackClip]:
    """Up to ``count`` full segments of the run's held-back recordings, taken round-robin
    over the recordings, each cropped to ``seconds`` (audio from the object store)."""
    import numpy as np
    import torch

    from training import shards
    from training.audio_io import load_audio
    from training.evaluate import HeldBackClip
    from training.mel import DEFAULT_MEL_CONFIG
    from training.snapshot_data import split_by_recording

    config = spec["config"]
    root = spec["feature_root"]
    members = {int(k) for k in spec["members"]}
    covered = members & {int(r) for r in shards.read_manifest(root)["recordings"]}
    _, held = split_by_recording(
        covered, val_fraction=float(config["val_fraction"]), seed=int(config["seed"])
    )
    if not held:
        raise ValueError("this run held back no recordings (val_fraction 0); nothing to compare")
    rate, hop = DEFAULT_MEL_CONFIG.sample_rate, DEFAULT_MEL_CONFIG.hop_length
    frames = int(round(seconds * rate / hop))
    table = shards.rows_for_recordings(root, held)
    mels = shards.mel_array(table)
    rows: dict[int, list[int]] = {}
    for i, (rid, valid) in enumerate(
        zip(
            table.column("recording_id").to_pylist(),
            table.column("valid_frames").to_pylist(),
            strict=True,
        )
    ):
        if valid >= frames:
            rows.setdefault(int(rid), []).append(i)
    order: list[int] = []
    queues = [rows[r] for r in sorted(rows)]
    while len(order) < count and any(queues):
        for queue in queues:
            if queue and len(order) < count:
                order.append(queue.pop(0))
    audio: dict[int, np.ndarray] = {}
    clips = []
    for i in order:
        rid = int(table.column("recording_id")[i].as_py())
        if rid not in audio:
            audio[rid] = load_audio(object_uris[rid], sample_rate=rate, mono=True)
        start = int(round(float(table.column("start_s")[i].as_py()) * rate))
        wave = np.zeros(frames * hop, np.float32)
        piece = audio[rid][start : start + frames * hop]
        wave[: piece.size] = piece
        clips.append(
            HeldBackClip(
                recording_id=rid,
                segment_index=int(table.column("segment_index")[i].as_py()),
                caption=str(table.column("caption")[i].as_py()),
                wave_16k=wave,
                mel_log=torch.from_numpy(np.asarray(mels[i][:, :frames], dtype=np.float32)),
            )
        )
    return clips


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def evaluate_command(
        checkpoint: int = typer.Option(
            None, "--checkpoint", help="Checkpoint id (default: newest final checkpoint)."
        ),
        clips: int = typer.Option(16, "--clips", help="Held-back segments to compare (>= 2)."),
        seconds: float = typer.Option(5.12, "--seconds", help="Seconds per clip (<= 10.24)."),
        steps: int = typer.Option(25, "--steps", help="Sampler steps."),
        cfg: float = typer.Option(3.0, "--cfg", help="Classifier-free guidance scale."),
        sampler: str = typer.Option("dpmpp-2m", "--sampler", help="dpmpp-2m, heun or euler."),
        seed: int = typer.Option(0, "--seed", help="First sampling seed (and the init seed)."),
        clap: str = typer.Option(None, "--clap", help="CLAP checkpoint (default: ours)."),
        json_output: bool = typer.Option(
            False, "--json", help="Print the report as one JSON document."
        ),
    ) -> None:
        """Compare generated audio with the run's held-back real audio: FD_musicnn (in the
        space of MSD-musicnn, a pretrained music tagger we did not train), FD_clap and the
        CLAP text-audio score (our CLAP, trained on the same corpus) for the trained
        model, the untrained model and vocoded real mels (the ceiling). If musicnn cannot
        be loaded the CLAP figures are still reported and stderr says why FD_musicnn is
        missing. Writes eval-CHECKPOINT.json into the run folder."""
        from rich.progress import Progress

        from flows.cli.gate import resolve_checkpoint
        from flows.train import run_dir
        from generation.checkpoint_checks import checkpoint_path
        from generation.gate_models import load_clap_embedder
        from generation.index import GateUnavailable
        from generation.vocoder import GriffinLimVocoder
        from provenance.snapshot import member_recordings
        from training.checkpoint import load_checkpoint
        from training.evaluate import evaluate

        if clips < 2:
            fail(f"--clips must be >= 2, got {clips}", EXIT_BAD_INPUT)
        if not 0 < seconds <= 10.24:
            fail(f"--seconds must be in (0, 10.24], got {seconds}", EXIT_BAD_INPUT)
        with session_scope() as session:
            ckpt = resolve_checkpoint(session, checkpoint)
            ckpt_id, run_id, sha = ckpt.id, ckpt.training_run_id, ckpt.sha256
            path = checkpoint_path(ckpt.uri, ckpt.sha256)  # verified; fetched from S3 if there
            uris: dict[int, str] = {
                rec.id: rec.object_uri
                for rec in member_recordings(session, run_id)
                if rec.object_uri
            }
        spec_path = run_dir(run_id) / "spec.json"
        if not spec_path.is_file():
            fail(f"training run {run_id} has no {spec_path}", EXIT_BAD_INPUT)
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        try:
            embedder = load_clap_embedder(clap)
        except GateUnavailable as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        denoiser, meta = load_checkpoint(path)
        if meta.clap_sha256 and meta.clap_sha256 != embedder.sha256:
            fail(
                f"checkpoint {ckpt_id} was trained with CLAP {meta.clap_sha256[:12]}, "
                f"the loaded CLAP is {embedder.sha256[:12]}",
                EXIT_BAD_INPUT,
            )
        try:
            held = held_back_clips(spec, uris, count=clips, seconds=seconds)
        except ValueError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        if len(held) < 2:
            fail(f"only {len(held)} held-back segment(s) of {seconds} s; need 2", EXIT_BAD_INPUT)
        musicnn, musicnn_missing = load_musicnn()
        if musicnn_missing is not None:
            err_console.print(
                "[yellow]warning:[/yellow] fd_musicnn is not reported: cannot load the "
                f"MSD-musicnn embedder ({musicnn_missing})",
                highlight=False,
                soft_wrap=True,
            )
        with Progress(console=console, disable=json_output) as bar:
            task = bar.add_task("sampling (trained, untrained)", total=2 * len(held))
            report = evaluate(
                denoiser,
                held,
                embedder=embedder,
                vocoder=GriffinLimVocoder(),
                checkpoint_sha256=sha,
                musicnn=musicnn,
                steps=steps,
                cfg=cfg,
                sampler=sampler.replace("-", "_"),
                seed=seed,
                progress=lambda: bar.advance(task),
            )
        doc = {"checkpoint_id": ckpt_id, "training_run_id": run_id, **report.to_json()}
        doc["musicnn_unavailable"] = musicnn_missing
        if musicnn is not None:
            from training.musicnn.embedder import weights_sha256

            doc["musicnn_weights_sha256"] = weights_sha256()
        out = run_dir(run_id) / f"eval-{ckpt_id}.json"
        out.write_text(json.dumps(doc, indent=2), encoding="utf-8")
        if json_output:
            print_json(doc)
            return
        from rich.table import Table

        table = Table(
            title=f"checkpoint {ckpt_id}: {report.clips} held-back clips of "
            f"{report.seconds:.2f} s from recordings {report.recordings}"
        )
        table.add_column("audio")
        table.add_column("FD_musicnn (lower is better)", justify="right")
        table.add_column("FD_clap (lower is better)", justify="right")
        table.add_column("CLAP score", justify="right")
        for name in ("untrained", "trained", "vocoded_real", "real"):
            table.add_row(
                name,
                f"{report.fd_musicnn[name]:.4f}" if report.fd_musicnn is not None else "n/a",
                f"{report.fd_clap[name]:.4f}",
                f"{report.clap_score[name]:.4f}",
            )
        print_table(table)
        for label, share in (
            ("FD_musicnn", report.gap_closed_musicnn),
            ("FD_clap", report.gap_closed),
        ):
            if share is not None:
                console.print(
                    f"training closed {share:.0%} of the {label} gap between the "
                    "untrained model and vocoded real audio"
                )
        console.print(f"report: {Path(out)}", highlight=False)
