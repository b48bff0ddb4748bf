"""Ingestion fixtures: limits for tiny synthetic files, a corpus with every quarantine case
beside valid files, and a snapshot of everything ingestion writes."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.ingest_prepare import IngestLimits
from provenance.models import (
    AuditEvent,
    ConsentEvent,
    Credit,
    LicenceAssertion,
    Party,
    QuarantineItem,
    Recording,
    Sighting,
)
from tests.common.audio import synth_music, write_music

# Limits small enough for tiny synthetic files: 1-6 s, under 1.5 MB.
TEST_LIMITS = IngestLimits(max_duration_s=6.0, min_duration_s=1.0, max_bytes=1_500_000)


@dataclass
class BadCorpus:
    root: Path
    manifest: Path
    empty_manifest: Path
    # locator → (outcome status, reason code or None, flags)
    expected: dict[str, tuple[str, str | None, tuple[str, ...]]]


def build_bad_corpus(base: Path) -> BadCorpus:
    """Every quarantine case beside valid files, described by one CSV manifest."""
    root = base / "corpus"
    root.mkdir(parents=True)
    write_music(root / "good1.wav", 11, seconds=3.0)
    write_music(root / "good2.flac", 12, seconds=3.0)
    write_music(root / "good3.ogg", 13, seconds=3.0)
    write_music(root / "good4.mp3", 14, seconds=3.0)
    write_music(root / "badlicence.ogg", 15, seconds=2.0)
    write_music(root / "good2-reencoded.mp3", 12, seconds=3.0)  # same music as good2
    (root / "copy-of-good1.wav").write_bytes((root / "good1.wav").read_bytes())

    (root / "zero.wav").write_bytes(b"")
    cut = (root / "good2.flac").read_bytes()
    (root / "cut.flac").write_bytes(cut[: len(cut) // 2])
    (root / "notes.wav").write_text("liner notes, not audio\n" * 40)
    wav = bytearray((root / "good1.wav").read_bytes())
    wav[20:22] = struct.pack("<H", 0x0161)
    (root / "wma.wav").write_bytes(bytes(wav))
    wav = bytearray((root / "good1.wav").read_bytes())
    wav[24:28] = struct.pack("<I", 0)
    (root / "rate0.wav").write_bytes(bytes(wav))
    write_music(root / "long.ogg", 16, seconds=8.0)
    sf.write(root / "big.wav", synth_music(17, seconds=5.0, sr=48000), 48000, subtype="FLOAT")
    write_music(root / "short.ogg", 18, seconds=0.4)
    sf.write(root / "silent.flac", np.zeros((22050 * 2, 2), np.float32), 22050)
    (root / "folder.wav").mkdir()
    write_music(base / "outside.wav", 19, seconds=2.0)
    (root / "link-out.wav").symlink_to(base / "outside.wav")

    rows = [
        "good1.wav,Good One,Ann; Bob,GPL-2.0-or-later,opt_in:training,https://example.org/1",
        "good2.flac,Good Two,Cy,CC-BY-SA-3.0,,",
        "good3.ogg,Good Three,Dee,CC0-1.0,opt_out,",
        "good4.mp3,Good Four,Eve,MIT,,",
        "badlicence.ogg,Odd Licence,Fay,this is not a licence (c) me,,",
        "good2-reencoded.mp3,Good Two (MP3),Cy,CC-BY-SA-3.0,,",
        "copy-of-good1.wav,Copy,Ann,GPL-2.0-or-later,,",
        "zero.wav,,,,,",
        "cut.flac,,,,,",
        "notes.wav,,,,,",
        "wma.wav,,,,,",
        "rate0.wav,,,,,",
        "long.ogg,,,,,",
        "big.wav,,,,,",
        "short.ogg,,,,,",
        "silent.flac,,,,,",
        "folder.wav,,,,,",
        "../outside.wav,,,,,",
        "link-out.wav,,,,,",
        "missing.wav,,,,,",
        "good1.wav,Good One again,,,,",
    ]
    text = "path,title,artists,licence,consent,source_url\n" + "\n".join(rows) + "\n"
    manifest = root / "manifest.csv"
    manifest.write_bytes(text.encode() + b"caf\xe9.wav,,,,,\n")
    empty = root / "empty.csv"
    empty.write_text("path,title,artists,licence\n")

    q = "quarantined"
    expected: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
        "good1.wav": ("accepted", None, ()),
        "good2.flac": ("accepted", None, ()),
        "good3.ogg": ("accepted", None, ()),
        "good4.mp3": ("accepted", None, ()),
        "badlicence.ogg": ("accepted", None, ("unparseable_licence",)),
        "good2-reencoded.mp3": ("near_duplicate", None, ()),
        "copy-of-good1.wav": ("duplicate", None, ()),
        "zero.wav": (q, "zero_bytes", ()),
        "cut.flac": (q, "truncated_or_corrupt", ()),
        "notes.wav": (q, "not_audio", ()),
        "wma.wav": (q, "unsupported_codec", ()),
        "rate0.wav": (q, "impossible_header", ()),
        "long.ogg": (q, "too_long", ()),
        "big.wav": (q, "too_large", ()),
        "short.ogg": (q, "too_short", ()),
        "silent.flac": (q, "all_silence", ()),
        "folder.wav": (q, "unreadable", ()),
        "../outside.wav": (q, "path_escape", ()),
        "link-out.wav": (q, "symlink_escape", ()),
        "missing.wav": (q, "missing_file", ()),
        "good1.wav#row=21": (q, "duplicate_manifest_row", ()),
        "caf\\xe9.wav": (q, "non_utf8_name", ()),
    }
    return BadCorpus(root=root, manifest=manifest, empty_manifest=empty, expected=expected)


def db_snapshot(session: Session) -> dict[str, Any]:
    """Everything ingestion writes, without ids, run ids and timestamps."""
    sha_of = dict(session.execute(select(Recording.id, Recording.sha256)).all())
    recs = sorted(
        (
            r.sha256,
            r.status,
            r.reason_code,
            r.codec,
            r.object_uri,
            sha_of.get(r.duplicate_of_id) if r.duplicate_of_id else None,
            r.pcm_fingerprint,
        )
        for r in session.scalars(select(Recording))
    )
    sightings = sorted(
        (sha_of[s.recording_id], s.locator) for s in session.scalars(select(Sighting))
    )
    quarantine = sorted((q.locator, q.reason_code) for q in session.scalars(select(QuarantineItem)))
    party_name = dict(session.execute(select(Party.id, Party.name)).all())
    credits = sorted(
        (sha_of[c.recording_id], party_name[c.party_id], c.role, c.fact_source)
        for c in session.scalars(select(Credit))
    )
    licences = sorted(
        (sha_of[a.recording_id], a.declared, a.concluded, a.fact_source)
        for a in session.scalars(select(LicenceAssertion))
    )
    consent = sorted(
        (sha_of[c.recording_id] if c.recording_id else None, c.action, c.purpose, c.origin)
        for c in session.scalars(select(ConsentEvent))
    )
    audit = sorted(
        (e.action, e.entity)
        for e in session.scalars(select(AuditEvent))
        if not e.action.startswith("ingest.run_")
    )
    return {
        "recordings": recs,
        "sightings": sightings,
        "quarantine": quarantine,
        "credits": credits,
        "licences": licences,
        "consent": consent,
        "audit": audit,
        "parties": sorted(party_name.values()),
    }
