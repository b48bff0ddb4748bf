"""A generator of hostile ingest input: audio files, manifests, sidecars and names.

:func:`build_hostile_batch` writes, under one folder, valid files beside one
instance of every hostile kind below, and says what ingestion must make of
each (:class:`Expect`). Every kind is written by a small function registered
with :func:`kind`, so a new trick is one function. The batch is read as four
sources: a CSV manifest, a JSONL manifest, a folder with sidecars, and a set
of manifests that are broken as a whole.

Valid audio is synthetic music, each file from its own seed, so every valid
file is a recording of its own.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from provenance.ingest_prepare import IngestLimits
from tests.common.audio import synth_music, write_music

Q = "quarantined"

# The usual test limits; near-duplicate links only for identical fingerprints, so that no two
# valid files (different music) are ever linked and "ingested once" is exact.
BATCH_LIMITS = IngestLimits(
    max_duration_s=6.0, min_duration_s=1.0, max_bytes=1_500_000, near_duplicate_bits=0
)


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


class _Writer:
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


# --------------------------------------------------------------------------- WAV crafting


def wav_bytes(
    *,
    rate: int = 22050,
    channels: int = 1,
    bits: int = 16,
    format_tag: int = 1,
    frames: int = 22050,
    declared_data_bytes: int | None = None,
    data: bytes | None = None,
) -> bytes:
    """A RIFF/WAVE file whose header says exactly what the arguments say (true or not)."""
    block = channels * bits // 8
    if data is None:
        rng = np.random.default_rng(frames + rate)
        samples = (rng.standard_normal(frames * channels) * 3000).astype("<i2")
        data = samples.tobytes()
    size = len(data) if declared_data_bytes is None else declared_data_bytes
    fmt = struct.pack("<HHIIHH", format_tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data"
    body += struct.pack("<I", size & 0xFFFFFFFF) + data
    return b"RIFF" + struct.pack("<I", len(body) & 0xFFFFFFFF) + body


# --------------------------------------------------------------------------- the kinds

_KINDS: list[tuple[str, Callable[[_Writer], None]]] = []


def kind(name: str) -> Callable[[Callable[[_Writer], None]], Callable[[_Writer], None]]:
    def register(fn: Callable[[_Writer], None]) -> Callable[[_Writer], None]:
        _KINDS.append((name, fn))
        return fn

    return register


def _audio(w: _Writer, name: str, data: bytes, expect: Expect, kind_name: str) -> None:
    (w.root / name).write_bytes(data)
    w.csv(kind_name, name, expect)


@kind("audio/zero-length")
def _zero(w: _Writer) -> None:
    _audio(w, "zero.wav", b"", Expect(Q, "zero_bytes"), "audio/zero-length")


@kind("audio/truncated-flac")
def _truncated(w: _Writer) -> None:
    full = w.music(w.base / "whole.flac", seconds=2.0).read_bytes()
    _audio(
        w,
        "cut.flac",
        full[: len(full) // 2],
        Expect(Q, "truncated_or_corrupt"),
        "audio/truncated-flac",
    )


@kind("audio/corrupt-format-tag")
def _format_tag(w: _Writer) -> None:
    data = wav_bytes(format_tag=0x0161)  # WMA inside a WAV header
    _audio(w, "wma.wav", data, Expect(Q, "unsupported_codec"), "audio/corrupt-format-tag")


@kind("audio/1hz-wav")
def _one_hz(w: _Writer) -> None:
    # 8 KB of samples at 1 Hz: "4000 s of audio" that once took 773 MB to refuse.
    data = wav_bytes(rate=1, frames=4000)
    _audio(w, "1hz.wav", data, Expect(Q, "implausible_sample_rate"), "audio/1hz-wav")


@kind("audio/3999hz-wav")
def _low_rate(w: _Writer) -> None:
    data = wav_bytes(rate=3999, frames=8000)
    _audio(w, "3999hz.wav", data, Expect(Q, "implausible_sample_rate"), "audio/3999hz-wav")


@kind("audio/1mhz-wav")
def _high_rate(w: _Writer) -> None:
    data = wav_bytes(rate=1_000_000, frames=4000)
    _audio(w, "1mhz.wav", data, Expect(Q, "implausible_sample_rate"), "audio/1mhz-wav")


@kind("audio/rate-zero")
def _rate_zero(w: _Writer) -> None:
    data = wav_bytes(rate=0, frames=4000)
    _audio(w, "rate0.wav", data, Expect(Q, "impossible_header"), "audio/rate-zero")


@kind("audio/zero-channels")
def _zero_channels(w: _Writer) -> None:
    data = wav_bytes(channels=0, frames=4000, data=b"\x00\x01" * 4000)
    _audio(w, "ch0.wav", data, Expect(Q, "impossible_header"), "audio/zero-channels")


@kind("audio/200-channels")
def _many_channels(w: _Writer) -> None:
    data = wav_bytes(channels=200, frames=200)
    _audio(w, "ch200.wav", data, Expect(Q, "too_many_channels"), "audio/200-channels")


@kind("audio/huge-declared-length")
def _huge_length(w: _Writer) -> None:
    # The data chunk claims 2 GB; 1.5 s are there.
    pcm = (synth_music(7, seconds=1.5)[:, 0] * 20000).astype("<i2").tobytes()
    data = wav_bytes(frames=0, data=pcm, declared_data_bytes=0x7FFFFFF0)
    _audio(
        w, "huge-length.wav", data, Expect(Q, "truncated_or_corrupt"), "audio/huge-declared-length"
    )


@kind("audio/header-only")
def _header_only(w: _Writer) -> None:
    data = wav_bytes(frames=0, data=b"", declared_data_bytes=44100)
    _audio(w, "header-only.wav", data, Expect(Q, "truncated_or_corrupt"), "audio/header-only")


@kind("audio/nan-floats")
def _nan(w: _Writer) -> None:
    music = synth_music(8, seconds=1.5)
    music[100:200] = np.nan
    sf.write(w.root / "nan.wav", music, 22050, subtype="FLOAT")
    w.csv("audio/nan-floats", "nan.wav", Expect(Q, "truncated_or_corrupt"))


@kind("audio/inf-floats")
def _inf(w: _Writer) -> None:
    music = synth_music(9, seconds=1.5)
    music[50, 1] = np.inf
    sf.write(w.root / "inf.wav", music, 22050, subtype="FLOAT")
    w.csv("audio/inf-floats", "inf.wav", Expect(Q, "truncated_or_corrupt"))


@kind("audio/text-named-flac")
def _wrong_ext_text(w: _Writer) -> None:
    _audio(w, "notes.flac", b"liner notes\n" * 50, Expect(Q, "not_audio"), "audio/text-named-flac")


@kind("audio/ogg-named-wav")
def _wrong_ext_ogg(w: _Writer) -> None:
    # Real audio under the wrong extension: the container is read from the bytes.
    w.music(w.root / "really-ogg.ogg")
    os.rename(w.root / "really-ogg.ogg", w.root / "really-ogg.wav")
    w.csv("audio/ogg-named-wav", "really-ogg.wav", ACCEPTED, valid=True)


@kind("audio/html-polyglot")
def _polyglot(w: _Writer) -> None:
    # A page that is also a WAV further in: not audio from its first byte.
    data = b"<html><script>alert(1)</script>" + wav_bytes()
    _audio(w, "page.wav", data, Expect(Q, "not_audio"), "audio/html-polyglot")


@kind("audio/gif-polyglot")
def _gif(w: _Writer) -> None:
    data = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;" + wav_bytes()
    _audio(w, "image.mp3", data, Expect(Q, "not_audio"), "audio/gif-polyglot")


@kind("audio/id3-only")
def _id3_only(w: _Writer) -> None:
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10
    _audio(w, "tag-only.mp3", tag, Expect(Q, "truncated_or_corrupt"), "audio/id3-only")


@kind("audio/random-bytes")
def _random(w: _Writer) -> None:
    data = np.random.default_rng(3).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    _audio(w, "noise.ogg", data, Expect(Q, "not_audio"), "audio/random-bytes")


@kind("audio/silence")
def _silence(w: _Writer) -> None:
    sf.write(w.root / "silent.flac", np.zeros((22050 * 2, 2), np.float32), 22050)
    w.csv("audio/silence", "silent.flac", Expect(Q, "all_silence"))


@kind("audio/too-long-by-header")
def _too_long(w: _Writer) -> None:
    data = wav_bytes(rate=8000, frames=8000 * 20)  # 20 s against a 6 s limit
    _audio(w, "long.wav", data, Expect(Q, "too_long"), "audio/too-long-by-header")


@kind("audio/too-large")
def _too_large(w: _Writer) -> None:
    data = wav_bytes(rate=48000, channels=2, frames=48000 * 10)  # 1.9 MB > 1.5 MB
    _audio(w, "big.wav", data, Expect(Q, "too_large"), "audio/too-large")


@kind("file/fifo")
def _fifo(w: _Writer) -> None:
    os.mkfifo(w.root / "fifo.wav")
    os.mkfifo(w.root / "fifo2.wav")
    w.csv("file/fifo", "fifo.wav", Expect(Q, "unreadable"))
    w.csv(
        "file/fifo-local-url",
        f"local://{w.root / 'fifo2.wav'}",
        Expect(Q, "unreadable"),
        locator="fifo2.wav",
    )


@kind("file/folder")
def _folder(w: _Writer) -> None:
    (w.root / "folder.wav").mkdir()
    w.csv("file/folder", "folder.wav", Expect(Q, "unreadable"))


@kind("file/symlink-out")
def _symlink_out(w: _Writer) -> None:
    (w.root / "passwd.wav").symlink_to("/etc/passwd")
    w.csv("file/symlink-out", "passwd.wav", Expect(Q, "symlink_escape"))


@kind("file/symlink-loop")
def _loop(w: _Writer) -> None:
    (w.root / "loop-a.wav").symlink_to(w.root / "loop-b.wav")
    (w.root / "loop-b.wav").symlink_to(w.root / "loop-a.wav")
    w.csv("file/symlink-loop", "loop-a.wav", Expect(Q, "unreadable"))


@kind("manifest/path-tricks")
def _paths(w: _Writer) -> None:
    escape = Expect(Q, "path_escape")
    for trick in (
        "../outside.wav",
        "/etc/passwd",
        "sub/../../outside.wav",
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "file://otherhost/etc/passwd",
        "local:///etc/passwd",
        "simplecache::file:///etc/passwd",
        "zip://x.wav::file:///tmp/a.zip",
        "nosuch://x.wav",
        "http://127.0.0.1:9/x.wav",
        "memory://x.wav",
        "~/x.wav",
        "ok\x00.wav",
    ):
        w.csv(f"manifest/path:{trick!r}", trick, escape)


@kind("manifest/missing-and-odd-paths")
def _odd(w: _Writer) -> None:
    missing = Expect(Q, "missing_file")
    w.csv("manifest/missing", "missing.wav", missing)
    w.csv("manifest/percent-encoded", "%2e%2e/outside.wav", missing)
    w.csv("manifest/newline-in-path", "a\nb.wav", missing)
    w.csv("manifest/escape-in-path", "\x1b[31mred.wav", missing)
    w.csv("manifest/long-path", "d/" * 3000 + "x.wav", Expect(Q, "unreadable"))
    w.csv("manifest/non-utf8-path", b"caf\xe9.wav", Expect(Q, "non_utf8_name"))


@kind("manifest/giant-field")
def _giant(w: _Writer) -> None:
    w.music(w.root / "giant-field.flac")
    # Over the CSV field limit (131072): the row is malformed, its neighbours are not.
    w.csv(
        "manifest/giant-field", "giant-field.flac", Expect(Q, "malformed_row"), title="t" * 200_000
    )


@kind("manifest/no-path")
def _no_path(w: _Writer) -> None:
    w.csv("manifest/no-path", "   ", Expect(Q, "malformed_row"), title="no path here")


@kind("manifest/duplicate-row")
def _dup(w: _Writer) -> None:
    w.music(w.root / "twice.flac")
    w.csv("manifest/duplicate-row (first)", "twice.flac", ACCEPTED, valid=True)
    w.csv(
        "manifest/duplicate-row",
        "twice.flac",
        Expect(Q, "duplicate_manifest_row"),
        locator=f"twice.flac#row={len(w.csv_rows) + 1}",
    )


@kind("name/hostile-credits")
def _names(w: _Writer) -> None:
    unparsed = Expect("accepted", flags=("unparseable_artist",))
    names: list[tuple[str, str, Expect]] = [
        ("name/punctuation-only", "!!!", unparsed),
        ("name/sql-injection", "Robert'); DROP TABLE parties;--", unparsed),
        ("name/homoglyph", "Мattias Westlund", ACCEPTED),  # Cyrillic М
        ("name/rtl-override", "\u202eevil\u202c Artist", ACCEPTED),
        ("name/zero-width-only", "\u200b\u200d\ufeff", unparsed),
        ("name/markup", "[bold red]Boss[/] <script>alert(1)</script>", ACCEPTED),
        ("name/very-long", "A" * 600, unparsed),
        ("name/terminal-escape", "\x1b[2J\x1b[31mRed", ACCEPTED),
        ("name/empty", "", ACCEPTED),
        ("name/separators-only", ";;; ;", ACCEPTED),
        ("name/formula", '=HYPERLINK("http://evil.example","x")', ACCEPTED),
    ]
    for kind_name, artist, expect in names:
        n = len(w.cases)
        w.music(w.root / f"named-{n}.flac")
        w.csv(kind_name, f"named-{n}.flac", expect, artists=artist, valid=True)


@kind("name/hostile-titles-and-facts")
def _titles(w: _Writer) -> None:
    rows: list[tuple[str, dict[str, str], Expect]] = [
        ("title/sql", {"title": "'; DELETE FROM recordings; --"}, ACCEPTED),
        (
            "title/oversized",
            {"title": "long " * 2_000},
            Expect("accepted", flags=("oversized_fact",)),
        ),
        ("title/control-chars", {"title": "bell\x07 nul-free \x1b]0;owned\x07"}, ACCEPTED),
        (
            "licence/garbage",
            {"licence": "GPL-ish (c) nobody; " * 50},
            Expect("accepted", flags=("unparseable_licence",)),
        ),
        (
            "consent/garbage",
            {"consent": "maybe:karaoke"},
            Expect("accepted", flags=("unparseable_consent",)),
        ),
    ]
    for kind_name, facts, expect in rows:
        n = len(w.cases)
        w.music(w.root / f"fact-{n}.flac")
        w.csv(kind_name, f"fact-{n}.flac", expect, valid=True, **facts)


@kind("jsonl/hostile-lines")
def _jsonl(w: _Writer) -> None:
    malformed = Expect(Q, "malformed_row")
    n0 = len(w.jsonl_lines)

    def row(kind_name: str, line: bytes, locator: str, expect: Expect, valid: bool = False):
        w.jsonl(kind_name, line, locator, expect, valid)

    w.music(w.root / "json-valid.flac")
    row(
        "jsonl/valid-after-bom",
        json.dumps({"path": "json-valid.flac"}).encode(),
        "json-valid.flac",
        ACCEPTED,
        True,
    )
    row("jsonl/not-json", b"{path: nope", f"row {n0 + 2}", malformed)
    row("jsonl/array", b'["json-valid.flac"]', f"row {n0 + 3}", malformed)
    row("jsonl/depth-bomb", b"[" * 100_000 + b"]" * 100_000, f"row {n0 + 4}", malformed)
    row("jsonl/huge-integer", b'{"path": 1' + b"0" * 5000 + b"}", f"row {n0 + 5}", malformed)
    row(
        "jsonl/lone-surrogate",
        b'{"path": "\\ud800.wav"}',
        "\\ud800.wav",
        Expect(Q, "non_utf8_name"),
    )
    row("jsonl/path-is-number", b'{"path": 12345}', "12345", Expect(Q, "missing_file"))
    w.music(w.root / "json-nul.flac")
    row(
        "jsonl/nul-in-title",
        b'{"path": "json-nul.flac", "title": "a\\u0000b", "artist": "x\\u0000y"}',
        "json-nul.flac",
        ACCEPTED,
        True,
    )
    w.music(w.root / "json-nested.flac")
    row(
        "jsonl/nested-facts",
        json.dumps(
            {"path": "json-nested.flac", "artists": [{"name": "A"}, ["B"]], "title": {"x": 1}}
        ).encode(),
        "json-nested.flac",
        ACCEPTED,
        True,
    )
    row("jsonl/null-path", b'{"path": null, "title": "t"}', f"row {n0 + 10}", malformed)


@kind("sidecar/hostile-sidecars")
def _sidecars(w: _Writer) -> None:
    flagged = Expect("accepted", flags=("unreadable_sidecar",))
    outside = w.base / "outside.json"
    outside.write_text(json.dumps({"artist": "Leaked Secret"}))
    sidecars: list[tuple[str, Callable[[Path], None], Expect]] = [
        ("sidecar/not-json", lambda p: p.write_text("{artist: nope"), flagged),
        ("sidecar/array", lambda p: p.write_text('["a"]'), flagged),
        ("sidecar/depth-bomb", lambda p: p.write_text("[" * 100_000 + "]" * 100_000), flagged),
        (
            "sidecar/oversized",
            lambda p: p.write_text(json.dumps({"title": "x" * (2 * 1024**2)})),
            flagged,
        ),
        ("sidecar/not-utf8", lambda p: p.write_bytes(b'{"artist": "caf\xe9"}'), flagged),
        ("sidecar/symlink-out", lambda p: p.symlink_to(outside), flagged),
        ("sidecar/fifo", lambda p: os.mkfifo(p), ACCEPTED),
        (
            "sidecar/hostile-names",
            lambda p: p.write_text(
                json.dumps({"artist": "!!!; Real Name", "title": "\x00\x1b[1mT"})
            ),
            Expect("accepted", flags=("unparseable_artist",)),
        ),
    ]
    for i, (kind_name, write, expect) in enumerate(sidecars):
        audio = w.music(w.folder / f"side-{i}.flac")
        write(audio.with_name(audio.name + ".json"))
        w.folder_case(kind_name, audio.name, expect)


@kind("manifest/whole-file")
def _whole(w: _Writer) -> None:
    header = "path,title\nsome.wav,x\n"
    w.whole_manifest("whole/utf16", "utf16.csv", header.encode("utf-16"), "unreadable")
    w.whole_manifest(
        "whole/header-only", "header-only.csv", b"\xef\xbb\xbfpath,title\r\n\r\n", "empty_manifest"
    )
    w.whole_manifest("whole/binary", "binary.csv", bytes(range(256)) * 20, "unreadable")
    w.whole_manifest("whole/no-path-column", "nopath.csv", b"title,artist\nx,y\n", "unreadable")
    w.whole_manifest("whole/empty-jsonl", "empty.jsonl", b"\n\n  \n", "empty_manifest")


def build_hostile_batch(base: Path) -> HostileBatch:
    """Write every hostile kind and some valid files under ``base``; return what to expect."""
    w = _Writer(base)
    w.music(base / "outside.wav")
    for name in ("valid-1.flac", "valid-2.ogg", "valid-3.wav"):
        w.music(w.root / name)
        w.csv(
            "valid",
            name,
            ACCEPTED,
            valid=True,
            title="A fine title",
            artists="Ann; Bob",
            licence="CC-BY-4.0",
        )
    for _name, write in _KINDS:
        write(w)
    csv_manifest = w.root / "manifest.csv"
    csv_manifest.write_bytes(
        b"path,title,artists,licence,consent\n" + b"\n".join(w.csv_rows) + b"\n"
    )
    jsonl_manifest = w.root / "manifest.jsonl"
    jsonl_manifest.write_bytes(b"\xef\xbb\xbf" + b"\n".join(w.jsonl_lines) + b"\n")
    return HostileBatch(
        base=base,
        root=w.root,
        csv_manifest=csv_manifest,
        jsonl_manifest=jsonl_manifest,
        folder=w.folder,
        whole=w.whole,
        cases=w.cases,
    )


def kind_names() -> list[str]:
    """The registered kind families (each writes one or more cases)."""
    return [name for name, _ in _KINDS]
