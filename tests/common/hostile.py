"""A generator of hostile ingest input: audio files, manifests, sidecars and names.

:func:`build_hostile_batch` writes, under one folder, valid files beside one
instance of every hostile kind, and says what ingestion must make of each
(:class:`~tests.common.hostile_writer.Expect`). Every kind is a small function
registered in :mod:`tests.common.hostile_audio` (audio files) or
:mod:`tests.common.hostile_manifests` (manifests, sidecars and names), so a new
trick is one function. The batch is read as four sources: a CSV manifest, a
JSONL manifest, a folder with sidecars, and a set of manifests that are broken
as a whole.

Valid audio is synthetic music, each file from its own seed, so every valid
file is a recording of its own.
"""

from __future__ import annotations

from pathlib import Path

from provenance.ingest_prepare import IngestLimits
from tests.common.hostile_audio import AUDIO_KINDS
from tests.common.hostile_manifests import MANIFEST_KINDS
from tests.common.hostile_writer import ACCEPTED, BatchWriter, HostileBatch

# The usual test limits; near-duplicate links only for identical fingerprints, so that no two
# valid files (different music) are ever linked and "ingested once" is exact.
BATCH_LIMITS = IngestLimits(
    max_duration_s=6.0, min_duration_s=1.0, max_bytes=1_500_000, near_duplicate_bits=0
)

# Audio files first, then manifests: the order fixes every case's row in the manifests.
KINDS = [*AUDIO_KINDS.writers, *MANIFEST_KINDS.writers]


def build_hostile_batch(base: Path) -> HostileBatch:
    """Write every hostile kind and some valid files under ``base``; return what to expect."""
    w = BatchWriter(base)
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
    for _name, write in KINDS:
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
    return [name for name, _ in KINDS]
