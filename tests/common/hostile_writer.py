"""The writer every hostile kind writes through, and what ingestion must make of each item.

A kind is a small function that writes its files under the batch folder and adds
its manifest rows, JSONL lines or sidecar cases through :class:`BatchWriter`,
each with an :class:`Expect`. Kinds are gathered, in order, in a :class:`Kinds`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.common.audio import write_music

Q = "quarantined"


@dataclass(frozen=True)
class Expect:
    """What ingestion must make of one item: ``status`` accepted or quarantined, the
    quarantine ``reason`` or the ``flags`` a kept item carries."""

    status: str
    reason: str | None = None
    flags: tuple[str, ...] = ()


ACCEPTED = Expect("accepted")


@dataclass(frozen=True)
class Case:
    kind: str  # e.g. "audio/1hz-wav"
    source: str  # csv | jsonl | folder | whole
    locator: str  # the item's locator in its source (whole: the manifest's file name)
    expect: Expect
    valid_audio: bool = False  # the bytes are a valid file that must be ingested once


@dataclass
class HostileBatch:
    base: Path
    root: Path  # the CSV and JSONL manifests' root
    csv_manifest: Path
    jsonl_manifest: Path
    folder: Path  # a folder source with sidecars
    whole: dict[str, Path] = field(default_factory=dict)  # kind → a manifest broken as a whole
    cases: list[Case] = field(default_factory=list)

    def expected(self, source: str) -> dict[str, Expect]:
        return {c.locator: c.expect for c in self.cases if c.source == source}

    @property
    def kinds(self) -> list[str]:
        return [c.kind for c in self.cases]


class BatchWriter:
    """Collects files, manifest rows and expectations while the kinds write them."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.folder = base / "folder"
        self.root.mkdir(parents=True)
        self.folder.mkdir()
        self.csv_rows: list[bytes] = []
        self.jsonl_lines: list[bytes] = []
        self.cases: list[Case] = []
        self.whole: dict[str, Path] = {}
        self._seed = 1000

    def music(self, path: Path, *, seconds: float = 1.5) -> Path:
        """A valid file of its own music (a fresh seed each time)."""
        self._seed += 1
        return write_music(path, self._seed, seconds=seconds)

    def csv(
        self,
        kind: str,
        path: bytes | str,
        expect: Expect,
        *,
        valid: bool = False,
        locator: str | None = None,
        **facts: str,
    ) -> None:
        raw = path.encode("utf-8", "surrogateescape") if isinstance(path, str) else path
        cells = [raw] + [
            facts.get(k, "").encode() for k in ("title", "artists", "licence", "consent")
        ]
        self.csv_rows.append(b",".join(_csv_cell(c) for c in cells))
        if locator is None:
            locator = self._locator(raw, expect, len(self.csv_rows))
        self.cases.append(Case(kind, "csv", locator, expect, valid_audio=valid))

    def jsonl(self, kind: str, line: bytes, locator: str, expect: Expect, valid: bool = False):
        self.jsonl_lines.append(line)
        self.cases.append(Case(kind, "jsonl", locator, expect, valid_audio=valid))

    def folder_case(self, kind: str, locator: str, expect: Expect, valid: bool = True) -> None:
        self.cases.append(Case(kind, "folder", locator, expect, valid_audio=valid))

    def whole_manifest(self, kind: str, name: str, data: bytes, reason: str) -> None:
        path = self.base / "whole" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        self.whole[kind] = path
        self.cases.append(Case(kind, "whole", name, Expect(Q, reason)))

    @staticmethod
    def _locator(raw: bytes, expect: Expect, row: int) -> str:
        if expect.reason == "malformed_row":
            return f"row {row}"
        from provenance.sources.text import locator_text

        return locator_text(raw.decode("utf-8", "surrogateescape").strip())


def _csv_cell(value: bytes) -> bytes:
    if any(c in value for c in (b",", b'"', b"\n", b"\r")):
        return b'"' + value.replace(b'"', b'""') + b'"'
    return value


KindWriter = Callable[[BatchWriter], None]


class Kinds:
    """Hostile kinds in the order they were registered with ``@kinds.register(name)``."""

    def __init__(self) -> None:
        self.writers: list[tuple[str, KindWriter]] = []

    def register(self, name: str) -> Callable[[KindWriter], KindWriter]:
        def add(fn: KindWriter) -> KindWriter:
            self.writers.append((name, fn))
            return fn

        return add
