"""Render symbolic scores from the music21 corpus to audio: music21 → MIDI → fluidsynth.

A score is named by its music21 corpus path, optionally with ``#N`` for the
N-th tune of a multi-tune file (an opus such as an ABC songbook):
``essenFolksong/altdeu10.abc#2``, ``palestrina/Agnus_01.krn``.

Renders are cached: beside each WAV a ``.render.json`` sidecar records a key
over everything the audio depends on (the score file's bytes, the tune, the
music21 and fluidsynth versions, the soundfont's sha256, the sample rate) and
the WAV's sha256. A render whose sidecar matches is reused; anything else is
rendered again, to a temporary name renamed into place when complete.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.child_processes import die_with_parent
from provenance.hashing import sha256_file

logger = logging.getLogger(__name__)

DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
SOUNDFONT_PACKAGE = "timgm6mb-soundfont"
FLUIDSYNTH_PACKAGE = "fluidsynth"
RENDER_TIMEOUT_S = 600.0


class RenderError(RuntimeError):
    """A score could not be rendered."""


class MissingRenderToolError(RenderError):
    """fluidsynth or the soundfont is not installed; ``package`` names the Debian package."""

    def __init__(self, message: str, *, package: str) -> None:
        super().__init__(message)
        self.package = package


@dataclass(frozen=True)
class ScoreRef:
    """A music21 corpus path and, for a multi-tune file, the 1-based tune number."""

    corpus_path: str
    tune: int | None = None

    @classmethod
    def parse(cls, reference: str) -> ScoreRef:
        path, sep, number = reference.strip().partition("#")
        if not path:
            raise ValueError(f"score reference {reference!r} has no corpus path")
        if not sep:
            return cls(path)
        if not number.isdigit() or int(number) < 1:
            raise ValueError(
                f"score reference {reference!r}: tune {number!r} must be a positive integer "
                "(#1 is the first tune of the file)"
            )
        return cls(path, int(number))

    def __str__(self) -> str:
        return self.corpus_path if self.tune is None else f"{self.corpus_path}#{self.tune}"

    def wav_name(self) -> str:
        """A relative file name for its render: ``essenFolksong/altdeu10-2.wav``."""
        stem = re.sub(r"\.[A-Za-z0-9]+$", "", self.corpus_path)
        return f"{stem}-{self.tune}.wav" if self.tune is not None else f"{stem}.wav"


@dataclass(frozen=True)
class RenderedScore:
    reference: str
    path: Path
    sha256: str
    duration_s: float
    sample_rate: int
    cached: bool


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def _file_sha256(path: Path) -> str:
    st = path.stat()
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


def fluidsynth_executable() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise MissingRenderToolError(
            "fluidsynth is not installed (Debian package fluidsynth): "
            "sudo apt-get install -y --no-install-recommends fluidsynth",
            package=FLUIDSYNTH_PACKAGE,
        )
    return exe


@functools.lru_cache(maxsize=1)
def fluidsynth_version() -> str:
    out = subprocess.run(
        [fluidsynth_executable(), "--version"], capture_output=True, text=True, timeout=30
    ).stdout
    match = re.search(r"version\s+(\S+)", out)
    return match.group(1) if match else out.strip().splitlines()[0] if out.strip() else "unknown"


def check_soundfont(soundfont: Path) -> None:
    if not soundfont.is_file():
        hint = (
            f" (Debian package {SOUNDFONT_PACKAGE}): sudo apt-get install -y "
            f"--no-install-recommends {SOUNDFONT_PACKAGE}"
            if soundfont == DEFAULT_SOUNDFONT
            else ""
        )
        raise MissingRenderToolError(
            f"soundfont {soundfont} does not exist{hint}", package=SOUNDFONT_PACKAGE
        )


def corpus_file(ref: ScoreRef) -> Path:
    """The score's file inside the installed music21 corpus."""
    from music21 import corpus

    try:
        found = corpus.getWork(ref.corpus_path)
    except Exception as exc:  # music21 raises its own CorpusException
        raise RenderError(f"{ref}: not in the music21 corpus ({exc})") from exc
    path = Path(found[0] if isinstance(found, list) else found)
    if not path.is_file():
        raise RenderError(f"{ref}: music21 corpus file {path} is missing")
    return path


@functools.lru_cache(maxsize=4)
def _parse(corpus_path: str) -> Any:
    """A music21 corpus file, parsed once per process: the demo renders four tunes of one
    opus, and parsing the opus is most of a render's time."""
    from music21 import corpus

    return corpus.parse(corpus_path)


def write_midi(ref: ScoreRef, midi_path: Path) -> None:
    """Parse the score with music21 (the N-th tune of an opus) and write it as MIDI."""
    from music21 import stream

    parsed = _parse(ref.corpus_path)
    if isinstance(parsed, stream.Opus):
        scores = list(parsed.scores)
        if ref.tune is None:
            raise RenderError(
                f"{ref.corpus_path} holds {len(scores)} tunes; name one as "
                f"{ref.corpus_path}#N (1..{len(scores)})"
            )
        if ref.tune > len(scores):
            raise RenderError(
                f"{ref}: the file holds {len(scores)} tunes; tune must be 1..{len(scores)}"
            )
        score = scores[ref.tune - 1]
    else:
        if ref.tune not in (None, 1):
            raise RenderError(f"{ref}: {ref.corpus_path} holds one piece; drop #{ref.tune}")
        score = parsed
    score.write("midi", fp=str(midi_path))


def render_midi(midi_path: Path, wav_path: Path, *, soundfont: Path, sample_rate: int) -> None:
    """fluidsynth, non-interactive, no audio driver, rendering to a 16-bit WAV file."""
    command = [
        fluidsynth_executable(),
        "-ni",
        "-F",
        str(wav_path),
        "-r",
        str(sample_rate),
        str(soundfont),
        str(midi_path),
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=RENDER_TIMEOUT_S,
            preexec_fn=die_with_parent(),
        )
    except subprocess.TimeoutExpired as exc:
        raise RenderError(f"fluidsynth took over {RENDER_TIMEOUT_S:.0f} s on {midi_path}") from exc
    if done.returncode != 0 or not wav_path.is_file() or wav_path.stat().st_size <= 44:
        tail = (done.stderr or done.stdout or "").strip()[-500:]
        raise RenderError(f"fluidsynth failed on {midi_path} (exit {done.returncode}): {tail}")


def render_key(ref: ScoreRef, *, soundfont: Path, sample_rate: int) -> dict[str, str | int]:
    """Everything a render's bytes depend on."""
    import music21

    return {
        "reference": str(ref),
        "score_sha256": _file_sha256(corpus_file(ref)),
        "music21": str(music21.__version__),
        "fluidsynth": fluidsynth_version(),
        "soundfont_sha256": _file_sha256(soundfont),
        "sample_rate": sample_rate,
    }


def _sidecar(wav_path: Path) -> Path:
    return wav_path.with_name(wav_path.name + ".render.json")


def _cached_render(wav_path: Path, key: dict[str, str | int]) -> str | None:
    """The WAV's sha256 when a complete render with this key is already there."""
    sidecar = _sidecar(wav_path)
    if not (wav_path.is_file() and sidecar.is_file()):
        return None
    try:
        recorded = json.loads(sidecar.read_text())
    except ValueError:
        return None
    if recorded.get("key") != key:
        return None
    sha = sha256_file(wav_path)
    return sha if sha == recorded.get("sha256") else None


def render_score(
    reference: str,
    wav_path: Path,
    *,
    soundfont: Path = DEFAULT_SOUNDFONT,
    sample_rate: int = 44100,
) -> RenderedScore:
    """Render ``reference`` to ``wav_path`` (reusing a matching earlier render)."""
    import soundfile as sf

    if sample_rate not in (22050, 32000, 44100, 48000, 96000):
        raise ValueError(
            f"sample_rate {sample_rate} is not one of 22050, 32000, 44100, 48000, 96000"
        )
    ref = ScoreRef.parse(reference)
    check_soundfont(soundfont)
    fluidsynth_executable()
    key = render_key(ref, soundfont=soundfont, sample_rate=sample_rate)
    cached = True
    sha = _cached_render(wav_path, key)
    if sha is None:
        cached = False
        wav_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="fairchord-render-") as tmp:
            midi = Path(tmp) / "score.mid"
            write_midi(ref, midi)
            partial = wav_path.with_name(f".{wav_path.name}.{os.getpid()}.tmp.wav")
            try:
                render_midi(midi, partial, soundfont=soundfont, sample_rate=sample_rate)
                sha = sha256_file(partial)
                os.replace(partial, wav_path)
            finally:
                partial.unlink(missing_ok=True)
        sidecar = _sidecar(wav_path)
        tmp_sidecar = sidecar.with_name(sidecar.name + ".tmp")
        tmp_sidecar.write_text(json.dumps({"key": key, "sha256": sha}, indent=2, sort_keys=True))
        os.replace(tmp_sidecar, sidecar)
        logger.info("rendered %s to %s", ref, wav_path)
    info = sf.info(str(wav_path))
    return RenderedScore(
        reference=str(ref),
        path=wav_path,
        sha256=sha,
        duration_s=float(info.duration),
        sample_rate=int(info.samplerate),
        cached=cached,
    )
