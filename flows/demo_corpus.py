"""The demo corpus: 30 real, attributed, licensed files from Debian packages and the music21
corpus, gathered into one folder with a manifest the ingest flow reads.

The facts (artist, licence, where each fact comes from, the decision a
commercial policy must reach) live in ``provenance/data/demo_manifest.csv``,
the project's own copy. :func:`build_demo_corpus` locates the Debian files
(failing with the package to install when one is absent), copies them under
the corpus folder, renders the six music21 scores to WAV with fluidsynth
(cached), and writes ``manifest.csv`` with the columns the manifest adapter
reads (``path, title, artists, licence, consent, source_url``) followed by
the remaining facts.

One row carries Content Credentials: its ``credential`` is ``do_not_train`` and its
path names an excerpt of a Debian file (``<file>#<start>-<end>`` in seconds). That
excerpt is decoded to FLAC and signed with a C2PA manifest whose training-and-mining
assertion refuses AI training, by a development key standing in for a rights holder
(made once in ``<corpus>/c2pa-signer/`` and reused). C2PA signatures are not
deterministic, so the signed file is made once and kept while its source, its excerpt
and its credential still check out. Ingest turns the credential into an opt-out, and
every policy excludes the file.

Artists: only named people are credited. A credit such as ``traditional
(Essen collection; …)`` names nobody, so its ``artists`` cell is empty (the
full credit is kept in ``artist_credit``); ``Name (Alias)`` credits ``Name``
and records ``Alias`` in ``artist_aliases``; a parenthesised note that is not
a single word (``(encoding John Miller 2000)``) is not an artist.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from flows.demo_signed_excerpt import excerpt_name, signed_excerpt
from provenance.hashing import sha256_file
from provenance.settings import fairchord_home

logger = logging.getLogger(__name__)

DEMO_ROWS = 30
DEMO_MANIFEST_NAME = "manifest.csv"
DEBIAN_PREFIX = "debian:"
SCORE_SOURCE_PREFIX = "music21-corpus"
# Columns the ingest manifest adapter reads, then every remaining fact.
MANIFEST_COLUMNS = (
    "path",
    "title",
    "artists",
    "licence",
    "consent",
    "source_url",
    "artist_aliases",
    "artist_credit",
    "source",
    "original_path",
    "sha256",
    "license_note",
    "duration_s",
    "format",
    "attribution_source",
    "expected_commercial_decision",
    "credential",
)
FACT_COLUMNS = (
    "source",
    "path",
    "artist",
    "license",
    "license_note",
    "title",
    "duration_s",
    "format",
    "attribution_source",
    "expected_commercial_decision",
)
# Optional facts column: "do_not_train" signs the file with a credential that says so.
CREDENTIAL_COLUMN = "credential"
DO_NOT_TRAIN = "do_not_train"
CREDENTIAL_DIR = "c2pa"
SIGNER_DIR = "c2pa-signer"
MUSIC21_CORPUS_URL = "https://github.com/cuthbertLab/music21/blob/master/music21/corpus/"
DEBIAN_PACKAGE_URL = "https://packages.debian.org/"

Progress = Callable[[str, int, int], None]  # (what is being done, done, total)


class DemoCorpusError(RuntimeError):
    """The demo corpus cannot be built."""


class MissingDebianPackageError(DemoCorpusError):
    """Files or tools of the demo corpus are absent; ``packages`` are the Debian packages."""

    def __init__(self, packages: Sequence[str], detail: str) -> None:
        self.packages = tuple(packages)
        names = " ".join(self.packages)
        super().__init__(
            f"missing Debian package{'s' if len(self.packages) > 1 else ''} {names} ({detail}); "
            f"install with: apt-get install -y --no-install-recommends {names}"
        )


@dataclass(frozen=True)
class DemoFact:
    """One row of ``provenance/data/demo_manifest.csv``."""

    source: str
    path: str
    artist: str
    license: str
    license_note: str
    title: str
    duration_s: float
    format: str
    attribution_source: str
    expected_commercial_decision: str
    credential: str = ""  # "" or DO_NOT_TRAIN

    @property
    def file_path(self) -> Path:
        """The Debian file itself (a signed excerpt's path without its ``#start-end``)."""
        return Path(self.path.partition("#")[0])

    @property
    def excerpt(self) -> tuple[float, float] | None:
        """``(start, end)`` seconds of a signed excerpt, else None."""
        if not self.credential:
            return None
        spec = self.path.partition("#")[2]
        start, _, end = spec.partition("-")
        try:
            bounds = float(start), float(end)
        except ValueError:
            raise DemoCorpusError(
                f"demo fact {self.path!r}: a signed excerpt's path ends in #<start>-<end> seconds"
            ) from None
        if not 0 <= bounds[0] < bounds[1]:
            raise DemoCorpusError(f"demo fact {self.path!r}: excerpt {spec!r} is empty")
        return bounds

    @property
    def debian_package(self) -> str | None:
        if self.source.startswith(DEBIAN_PREFIX):
            return self.source.removeprefix(DEBIAN_PREFIX).strip()
        return None

    @property
    def is_score(self) -> bool:
        return self.source.startswith(SCORE_SOURCE_PREFIX)

    @property
    def expected_eligible(self) -> bool:
        """True when a commercial policy must include the file."""
        word = self.expected_commercial_decision.split()[0].lower()
        if word not in ("include", "exclude"):
            raise ValueError(
                f"expected_commercial_decision {self.expected_commercial_decision!r} starts "
                "with neither 'include' nor 'exclude'"
            )
        return word == "include"

    @property
    def source_url(self) -> str:
        if self.debian_package:
            return DEBIAN_PACKAGE_URL + self.debian_package
        return MUSIC21_CORPUS_URL + self.path.partition("#")[0]


def demo_facts_path() -> Path:
    """The packaged facts file (``provenance/data/demo_manifest.csv``)."""
    return Path(str(resources.files("provenance") / "data" / "demo_manifest.csv"))


def load_demo_facts(path: Path | None = None) -> list[DemoFact]:
    """Every row of the facts file, in order."""
    text = (path or demo_facts_path()).read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in FACT_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DemoCorpusError(f"demo facts file lacks column(s) {', '.join(missing)}")
    facts = []
    for row in reader:
        v = {c: (row[c] or "").strip() for c in FACT_COLUMNS}
        credential = (row.get(CREDENTIAL_COLUMN) or "").strip()
        if credential not in ("", DO_NOT_TRAIN):
            raise DemoCorpusError(
                f"demo fact {v['path']!r}: credential {credential!r} unknown; "
                f"allowed: '' or {DO_NOT_TRAIN!r}"
            )
        facts.append(
            DemoFact(
                source=v["source"],
                path=v["path"],
                artist=v["artist"],
                license=v["license"],
                license_note=v["license_note"],
                title=v["title"],
                duration_s=float(v["duration_s"]),
                format=v["format"],
                attribution_source=v["attribution_source"],
                expected_commercial_decision=v["expected_commercial_decision"],
                credential=credential,
            )
        )
        if credential and (facts[-1].debian_package is None or facts[-1].excerpt is None):
            raise DemoCorpusError(
                f"demo fact {v['path']!r}: a signed excerpt comes from a Debian file "
                f"('{DEBIAN_PREFIX}<package>', path '<file>#<start>-<end>')"
            )
    return facts


_PARENTHESISED = re.compile(r"^(?P<name>[^()]*?)\s*\((?P<inner>[^()]*)\)\s*$")


def named_artists(credit: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """An artist credit → (named people, their aliases); see the module docstring."""
    credit = credit.strip()
    if not credit or credit.lower().startswith(("traditional", "anonymous", "unknown")):
        return (), ()
    match = _PARENTHESISED.match(credit)
    if match is None:
        return (credit,), ()
    name, inner = match.group("name").strip(), match.group("inner").strip()
    if not name:
        return (), ()
    aliases = (inner,) if inner and " " not in inner and ";" not in inner else ()
    return (name,), aliases


def default_demo_dir() -> Path:
    return fairchord_home() / "corpus" / "demo"


def missing_requirements(facts: Sequence[DemoFact], *, soundfont: Path) -> list[tuple[str, str]]:
    """``(Debian package, what is missing)`` for every absent file or tool, package order kept."""
    from flows.render_scores import FLUIDSYNTH_PACKAGE, SOUNDFONT_PACKAGE

    missing: dict[str, str] = {}
    for fact in facts:
        package = fact.debian_package
        if package and not fact.file_path.is_file() and package not in missing:
            missing[package] = f"{fact.file_path} not found"
    if any(f.is_score for f in facts):
        if shutil.which("fluidsynth") is None:
            missing[FLUIDSYNTH_PACKAGE] = "no fluidsynth executable"
        if not soundfont.is_file():
            missing[SOUNDFONT_PACKAGE] = f"{soundfont} not found"
    return list(missing.items())


def check_requirements(facts: Sequence[DemoFact], *, soundfont: Path) -> None:
    """Raise :class:`MissingDebianPackageError` naming every absent package at once."""
    missing = missing_requirements(facts, soundfont=soundfont)
    if missing:
        raise MissingDebianPackageError(
            [package for package, _ in missing], "; ".join(what for _, what in missing)
        )


def _copy_verified(src: Path, dest: Path) -> str:
    """Copy ``src`` to ``dest`` unless an identical copy is there; return its sha256."""
    want = sha256_file(src)
    if dest.is_file() and dest.stat().st_size == src.stat().st_size and sha256_file(dest) == want:
        return want
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(src, partial)
        got = sha256_file(partial)
        if got != want:
            raise DemoCorpusError(f"copy of {src} changed while copying ({want} → {got})")
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return want


def _manifest_row(fact: DemoFact, relative: str, sha256: str) -> dict[str, str]:
    artists, aliases = named_artists(fact.artist)
    return {
        "path": relative,
        "title": fact.title,
        "artists": "; ".join(artists),
        "licence": fact.license,
        "consent": "",
        "source_url": fact.source_url,
        "artist_aliases": "; ".join(aliases),
        "artist_credit": fact.artist,
        "source": fact.source,
        "original_path": fact.path,
        "sha256": sha256,
        "license_note": fact.license_note,
        "duration_s": f"{fact.duration_s:g}",
        "format": fact.format,
        "attribution_source": fact.attribution_source,
        "expected_commercial_decision": fact.expected_commercial_decision,
        "credential": fact.credential,
    }


def build_demo_corpus(
    dest: Path | str | None = None,
    *,
    soundfont: Path | None = None,
    facts: Sequence[DemoFact] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Build the demo corpus in ``dest`` (default ``$FAIRCHORD_HOME/corpus/demo``) and return
    the path of its ``manifest.csv`` (paths relative to ``dest``).

    Debian files are copied to ``dest/debian/<package>/``; scores are rendered to
    ``dest/scores/<corpus path>[-N].wav`` and reused on the next build when nothing they
    depend on changed. Safe to run again: unchanged files are neither copied nor rendered.
    Raises :class:`MissingDebianPackageError` before touching anything when a package is
    absent.
    """
    from flows.render_scores import DEFAULT_SOUNDFONT, ScoreRef, render_score

    soundfont = soundfont or DEFAULT_SOUNDFONT
    facts = list(facts) if facts is not None else load_demo_facts()
    if not facts:
        raise DemoCorpusError("no demo facts to build a corpus from")
    check_requirements(facts, soundfont=soundfont)
    root = Path(dest).expanduser() if dest is not None else default_demo_dir()
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()

    rows: list[dict[str, str]] = []
    for number, fact in enumerate(facts, start=1):
        if progress is not None:
            verb = "rendering" if fact.is_score else "signing" if fact.credential else "copying"
            progress(f"{verb} {fact.path}", number - 1, len(facts))
        if fact.credential:
            relative = f"{CREDENTIAL_DIR}/{fact.debian_package}/{excerpt_name(fact)}"
            sha = signed_excerpt(fact, root / relative, root / SIGNER_DIR)
        elif fact.debian_package:
            src = Path(fact.path)
            relative = f"debian/{fact.debian_package}/{src.name}"
            sha = _copy_verified(src, root / relative)
        elif fact.is_score:
            ref = ScoreRef.parse(fact.path)
            relative = f"scores/{ref.wav_name()}"
            rendered = render_score(str(ref), root / relative, soundfont=soundfont)
            sha = rendered.sha256
        else:
            raise DemoCorpusError(
                f"demo fact {fact.path!r} has source {fact.source!r}; expected "
                f"'{DEBIAN_PREFIX}<package>' or '{SCORE_SOURCE_PREFIX} …'"
            )
        rows.append(_manifest_row(fact, relative, sha))
    if progress is not None:
        progress("writing manifest", len(facts), len(facts))

    manifest = root / DEMO_MANIFEST_NAME
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    partial = manifest.with_name(f".{manifest.name}.{os.getpid()}.tmp")
    partial.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(partial, manifest)
    logger.info("demo corpus: %d files, manifest %s", len(rows), manifest)
    return manifest


DO_NOT_TRAIN_HEADER = "party,sha256,source_url,purpose,reason\n"


def ensure_consent_list(home: Path | None = None) -> Path:
    """The home's do-not-train list (``consent/do-not-train.csv``), created with only its
    header when missing, so the example schedule's consent sync has a file to read."""
    from provenance.settings import fairchord_home

    path = (home or fairchord_home()) / "consent" / "do-not-train.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DO_NOT_TRAIN_HEADER, encoding="utf-8")
    return path


def read_demo_manifest(manifest: Path) -> list[dict[str, str]]:
    """The rows of a built corpus's manifest."""
    with open(manifest, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))
