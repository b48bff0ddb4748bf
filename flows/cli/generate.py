"""`fairchord generate "PROMPT"`: text-to-audio (or audio-to-audio) behind every safeguard.

The work is :func:`generation.pipeline.generate`: prompt screen, taint check,
checkpoint and CLAP checks, sampling, Griffin-Lim, the similarity gate on every
clip, then audio + JSON sidecar + spectrogram PNG for each allowed clip. Every
attempt, allowed or not, is stored in ``generations`` and ``gate_decisions``.

Every written audio file carries Content Credentials (a C2PA manifest signed with the
keys of ``fairchord keys init``, or ``FAIRCHORD_SIGNING_CERT``/``_KEY``); without keys
the command warns once and writes unsigned files, recorded as unsigned. Check a file
with ``fairchord verify-output``.

Exit codes:

- 0 every clip was allowed and written;
- 1 unexpected failure;
- 2 bad input: an option out of range, an unreadable ``--init-audio``, an unknown
  checkpoint, or a checkpoint file that is missing or not the recorded one;
- 3 the database is not initialised (``fairchord db upgrade``);
- 5 at least one clip was blocked by the similarity gate: it is not written (the
  allowed clips are), and the command says which clip and why;
- 6 the safeguards could not run as trained — no, corrupt, mismatched or
  uncalibrated gate index, a CLAP other than the checkpoint's, an embedder
  error, NaN audio or scores: fail closed, nothing is written;
- 7 the prompt screen blocked the prompt (it names a party): nothing is sampled;
- 8 the checkpoint is tainted (a member opted out or its licence was re-assessed
  after the snapshot) and was refused; ``--allow-tainted`` is accepted only for
  a ``research``-policy run.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import typer

from flows.cli.common import (
    EXIT_BAD_INPUT,
    console,
    err_console,
    fail,
    print_json,
    released_session_scope,
)
from flows.cli.gate import EXIT_BLOCKED, EXIT_GATE_UNAVAILABLE, resolve_checkpoint
from generation.gate_models import load_clap_embedder, load_gate_embedder, load_wave_16k
from provenance.hashing import sha256_file

EXIT_PROMPT_BLOCKED = 7
EXIT_TAINTED = 8

HELP = (
    "Generate audio from a text prompt, with every safeguard.\n\n"
    "In order: the prompt screen (a prompt naming a party is refused), the taint check (a "
    "checkpoint whose snapshot no longer holds is refused), the CLAP check (the checkpoint's "
    "own CLAP), sampling and Griffin-Lim vocoding, the similarity gate on every clip (against "
    "the checkpoint's training snapshot), then for each allowed clip: audio, a JSON sidecar "
    "(prompt, seed, sampler, checkpoint and CLAP sha256, snapshot digest, gate scores and "
    "verdict, time) and a spectrogram PNG. Every attempt is recorded, allowed or not.\n\n"
    "Every written audio file carries signed Content Credentials (C2PA): that it was made "
    "by a trained model, the checkpoint, snapshot, policy, gate decision, prompt sha256 "
    "and what it was trained on. Keys: `fairchord keys init`, or FAIRCHORD_SIGNING_CERT and "
    "FAIRCHORD_SIGNING_KEY; without keys the files are written unsigned (one warning). "
    "Check a file with `fairchord verify-output`.\n\n"
    "Exit codes:\n"
    "0 every clip written;\n"
    "1 unexpected failure;\n"
    "2 bad input (option, --init-audio, checkpoint id or file);\n"
    "3 database not initialised;\n"
    "5 a clip was blocked by the similarity gate (not written);\n"
    "6 the safeguards could not run (no/mismatched gate index, wrong CLAP, NaN): nothing "
    "written;\n"
    "7 the prompt was blocked: nothing sampled;\n"
    "8 tainted checkpoint refused (--allow-tainted: research runs only)."
)


# The sampler options default to generation.request.DEFAULT_SAMPLING (not imported here:
# it would load torch for every `fairchord` command).
DEFAULTS = "(default: the setting benchmarks/generation_speed.py justifies)"


def parse_interval(text: str) -> tuple[float, float] | None:
    """``--cfg-interval``: ``all`` (guidance at every step) or ``LO,HI``."""
    if text.strip().lower() == "all":
        return None
    try:
        lo, hi = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"cfg interval {text!r} must be 'LO,HI' or 'all'") from None
    return lo, hi


def sampling_options(
    steps: int | None,
    cfg: float | None,
    sampler: str | None,
    cfg_interval: str | None,
    precision: str | None,
) -> dict[str, Any]:
    """The sampler options given on the command line (the request has the defaults)."""
    given: dict[str, Any] = {
        k: v
        for k, v in (("steps", steps), ("cfg", cfg), ("sampler", sampler), ("precision", precision))
        if v is not None
    }
    if cfg_interval is not None:  # 'all' is given too: it means no interval (None)
        given["cfg_interval"] = parse_interval(cfg_interval)
    return given


def register(app: typer.Typer) -> None:
    @app.command("generate", help=HELP)
    def generate_command(
        prompt: str = typer.Argument(..., help="What to generate, in words."),
        seconds: float = typer.Option(
            None, "--seconds", help="Length of each clip (default 10, or the init audio's)."
        ),
        seed: int = typer.Option(
            None, "--seed", help="Seed of the first clip; clip i uses seed + i (default: random)."
        ),
        steps: int = typer.Option(None, "--steps", help=f"Sampler steps {DEFAULTS}."),
        cfg: float = typer.Option(
            None, "--cfg", help=f"Classifier-free guidance scale {DEFAULTS}."
        ),
        sampler: str = typer.Option(
            None, "--sampler", help=f"dpmpp-2m, dpmpp-3m, heun or euler {DEFAULTS}."
        ),
        cfg_interval: str = typer.Option(
            None,
            "--cfg-interval",
            help="Apply guidance only at noise levels LO < sigma <= HI ('LO,HI'; 'all' for "
            f"every step); outside it a step costs one network pass instead of two {DEFAULTS}.",
        ),
        precision: str = typer.Option(
            None,
            "--precision",
            help="Network arithmetic: auto (bfloat16 on CPUs that compute it natively, else "
            f"float32), fp32 or bf16 {DEFAULTS}.",
        ),
        n: int = typer.Option(
            4, "--n", help="Number of clips (variations from consecutive seeds)."
        ),
        checkpoint: int = typer.Option(
            None, "--checkpoint", help="Checkpoint id (default: newest final checkpoint)."
        ),
        out: Path = typer.Option(
            None, "--out", help="Output folder (default: $FAIRCHORD_HOME/generations)."
        ),
        fmt: str = typer.Option("wav", "--format", help="wav or flac (16-bit PCM)."),
        init_audio: Path = typer.Option(
            None, "--init-audio", help="Audio to vary (audio-to-audio); any decodable format."
        ),
        strength: float = typer.Option(
            0.6, "--strength", help="How far to move from --init-audio, in (0, 1]."
        ),
        allow_tainted: bool = typer.Option(
            False,
            "--allow-tainted",
            help="Generate from a tainted checkpoint; only for research-policy runs; audited.",
        ),
        credential_prompt: bool = typer.Option(
            False,
            "--credential-prompt",
            help="Put the prompt itself in the Content Credential (its sha256 always is).",
        ),
        clap: str = typer.Option(
            None, "--clap", help="CLAP checkpoint (default: ours); must be the checkpoint's."
        ),
        json_output: bool = typer.Option(
            False, "--json", help="Print the outcome as one JSON document."
        ),
    ) -> None:
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        from generation.checkpoint_checks import CheckpointInvalid, TaintedCheckpoint
        from generation.credentials import check_signing_keys
        from generation.index import GateUnavailable
        from generation.pipeline import generate
        from generation.request import GenerationRequest
        from provenance.settings import fairchord_home
        from provenance.signing_keys import SigningKeyError, find_signing_keys

        init_wave = None
        init_sha = None
        if init_audio is not None:
            if not init_audio.is_file():
                fail(escape(f"--init-audio {init_audio} is not a file"), EXIT_BAD_INPUT)
            try:
                init_wave = load_wave_16k(str(init_audio))
            except Exception as exc:
                fail(escape(f"cannot decode --init-audio {init_audio}: {exc}"), EXIT_BAD_INPUT)
            init_sha = sha256_file(init_audio)
        if seconds is None:
            seconds = 10.0 if init_wave is None else min(len(init_wave) / 16_000, 120.0)
        try:
            request = GenerationRequest(
                prompt=prompt,
                seconds=seconds,
                seed=secrets.randbelow(2**31) if seed is None else seed,
                **sampling_options(steps, cfg, sampler, cfg_interval, precision),
                n=n,
                out_dir=out if out is not None else fairchord_home() / "generations",
                format=fmt.lower(),
                init_audio=init_wave,
                init_audio_sha256=init_sha,
                strength=strength,
                allow_tainted=allow_tainted,
                credential_prompt=credential_prompt,
            )
        except ValueError as exc:
            fail(escape(str(exc)), EXIT_BAD_INPUT)
        try:
            keys = find_signing_keys()
            if keys is not None:
                check_signing_keys(keys)
        except SigningKeyError as exc:
            fail(escape(f"signing keys: {exc}"), EXIT_BAD_INPUT)
        if keys is None:
            err_console.print(
                "[yellow]warning:[/yellow] no signing keys: the audio is written without "
                "Content Credentials (run `fairchord keys init`, or set "
                "FAIRCHORD_SIGNING_CERT and FAIRCHORD_SIGNING_KEY)",
                highlight=False,
                soft_wrap=True,
            )

        failure: tuple[str, int] | None = None
        # Committed before sampling (``release``), so the sampling holds no transaction,
        # and again at the end: the attempt's rows are kept whatever the outcome.
        with released_session_scope() as session:
            ckpt = resolve_checkpoint(session, checkpoint)
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err_console,
                transient=True,
                disable=json_output,
            ) as bar:
                task = bar.add_task(
                    f"sampling {request.n} clip(s)", total=request.n * request.sampler_steps()
                )
                try:
                    outcome = generate(
                        session,
                        request,
                        checkpoint=ckpt,
                        load_embedder=lambda: load_clap_embedder(clap),
                        load_gate_embedder=load_gate_embedder,
                        on_step=lambda: bar.advance(task),
                        signing_keys=keys,
                        release=session.commit,
                    )
                except TaintedCheckpoint as exc:
                    failure = (f"refused: {exc}", EXIT_TAINTED)
                except CheckpointInvalid as exc:
                    failure = (str(exc), EXIT_BAD_INPUT)
                except GateUnavailable as exc:
                    failure = (
                        f"the safeguards could not run, nothing was written: {exc}",
                        EXIT_GATE_UNAVAILABLE,
                    )
        # The attempt's rows are committed above, whatever the outcome.
        if failure is not None:
            fail(escape(failure[0]), failure[1])

        _report(outcome.to_json(), json_output=json_output, signing=keys is not None)
        if outcome.status == "blocked_prompt":
            raise typer.Exit(EXIT_PROMPT_BLOCKED)
        if outcome.blocked:
            raise typer.Exit(EXIT_BLOCKED)


def _report(doc: dict[str, Any], *, json_output: bool, signing: bool = False) -> None:
    from rich.markup import escape

    if json_output:
        print_json(doc)
    if doc["status"] == "blocked_prompt":
        reasons = escape("; ".join(doc["prompt_screen"].get("reasons", [])))
        err_console.print(
            f"[red]prompt blocked[/red] (generation {doc['generation_ids'][0]}): {reasons}",
            highlight=False,
            soft_wrap=True,
        )
        return
    if doc["tainted_override"]:
        err_console.print(
            "[yellow]warning:[/yellow] generated from a tainted checkpoint (research override, "
            "logged in the audit log)",
            highlight=False,
        )
    for clip in doc["clips"]:
        head = f"clip {clip['index']} (seed {clip['seed']}, generation {clip['generation_id']})"
        credential = clip.get("content_credentials") or {}
        if signing and credential.get("status") == "unsigned":
            err_console.print(
                f"{head}: [yellow]written unsigned[/yellow]: {escape(str(credential.get('note')))}",
                highlight=False,
                soft_wrap=True,
            )
        if clip["verdict"] == "allow":
            if not json_output:
                console.print(
                    f"{head}: allowed, track similarity {clip['track_similarity']:.3f} -> "
                    f"{escape(clip['audio'])}",
                    highlight=False,
                    soft_wrap=True,
                )
        else:
            err_console.print(
                f"{head}: [red]blocked[/red], not written: {escape('; '.join(clip['reasons']))}",
                highlight=False,
                soft_wrap=True,
            )
