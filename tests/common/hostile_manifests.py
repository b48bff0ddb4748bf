"""Hostile manifests for the ingest batch: path tricks, malformed CSV rows and JSONL lines,
hostile names, titles and facts, broken sidecars, and manifests broken as a whole."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from tests.common.hostile_writer import ACCEPTED, BatchWriter, Expect, Kinds, Q

MANIFEST_KINDS = Kinds()


@MANIFEST_KINDS.register("manifest/path-tricks")
def _paths(w: BatchWriter) -> None:
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


@MANIFEST_KINDS.register("manifest/missing-and-odd-paths")
def _odd(w: BatchWriter) -> None:
    missing = Expect(Q, "missing_file")
    w.csv("manifest/missing", "missing.wav", missing)
    w.csv("manifest/percent-encoded", "%2e%2e/outside.wav", missing)
    w.csv("manifest/newline-in-path", "a\nb.wav", missing)
    w.csv("manifest/escape-in-path", "\x1b[31mred.wav", missing)
    w.csv("manifest/long-path", "d/" * 3000 + "x.wav", Expect(Q, "unreadable"))
    w.csv("manifest/non-utf8-path", b"caf\xe9.wav", Expect(Q, "non_utf8_name"))


@MANIFEST_KINDS.register("manifest/giant-field")
def _giant(w: BatchWriter) -> None:
    w.music(w.root / "giant-field.flac")
    # Over the CSV field limit (131072): the row is malformed, its neighbours are not.
    w.csv(
        "manifest/giant-field", "giant-field.flac", Expect(Q, "malformed_row"), title="t" * 200_000
    )


@MANIFEST_KINDS.register("manifest/no-path")
def _no_path(w: BatchWriter) -> None:
    w.csv("manifest/no-path", "   ", Expect(Q, "malformed_row"), title="no path here")


@MANIFEST_KINDS.register("manifest/duplicate-row")
def _dup(w: BatchWriter) -> None:
    w.music(w.root / "twice.flac")
    w.csv("manifest/duplicate-row (first)", "twice.flac", ACCEPTED, valid=True)
    w.csv(
        "manifest/duplicate-row",
        "twice.flac",
        Expect(Q, "duplicate_manifest_row"),
        locator=f"twice.flac#row={len(w.csv_rows) + 1}",
    )


@MANIFEST_KINDS.register("name/hostile-credits")
def _names(w: BatchWriter) -> None:
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


@MANIFEST_KINDS.register("name/hostile-titles-and-facts")
def _titles(w: BatchWriter) -> None:
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


@MANIFEST_KINDS.register("jsonl/hostile-lines")
def _jsonl(w: BatchWriter) -> None:
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


@MANIFEST_KINDS.register("sidecar/hostile-sidecars")
def _sidecars(w: BatchWriter) -> None:
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


@MANIFEST_KINDS.register("manifest/whole-file")
def _whole(w: BatchWriter) -> None:
    header = "path,title\nsome.wav,x\n"
    w.whole_manifest("whole/utf16", "utf16.csv", header.encode("utf-16"), "unreadable")
    w.whole_manifest(
        "whole/header-only", "header-only.csv", b"\xef\xbb\xbfpath,title\r\n\r\n", "empty_manifest"
    )
    w.whole_manifest("whole/binary", "binary.csv", bytes(range(256)) * 20, "unreadable")
    w.whole_manifest("whole/no-path-column", "nopath.csv", b"title,artist\nx,y\n", "unreadable")
    w.whole_manifest("whole/empty-jsonl", "empty.jsonl", b"\n\n  \n", "empty_manifest")
