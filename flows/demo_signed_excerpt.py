"""The demo corpus's signed excerpt: a real track's excerpt, re-encoded to FLAC and signed with
a C2PA "do not train" credential by a development key that stands in for a rights holder.

C2PA signatures are not deterministic, so a sidecar records what was signed (source, span,
sha256) and the file is signed again only when it is missing, changed or no longer validates.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provenance.hashing import sha256_file
from provenance.signing_keys import SigningKeys

if TYPE_CHECKING:
    from flows.demo_corpus import DemoFact

# A development key standing in for a rights holder, not the artist's own.
DEMO_SIGNER_NAME = "demo rights holder (stand-in)"


def excerpt_name(fact: DemoFact) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", fact.file_path.stem.lower()).strip("-")
    return f"{stem}-excerpt.flac"


def _signer_keys(directory: Path) -> SigningKeys:
    """The demo rights holder's development keys in ``directory``, made on first use."""
    from provenance.signing_keys import CHAIN_NAME, KEY_NAME, init_keys, load_keys

    if (directory / KEY_NAME).is_file() and (directory / CHAIN_NAME).is_file():
        return load_keys(directory)
    return init_keys(directory, force=True, signer_name=DEMO_SIGNER_NAME)


def _do_not_train_manifest(fact: DemoFact, start: float, end: float) -> dict[str, Any]:
    """A C2PA manifest for the excerpt: who made the music, under which licence, and a
    training-and-mining assertion refusing AI training (inference and mining allowed)."""
    from provenance.content_credentials import DO_NOT_TRAIN_ASSERTION, IPTC_SOURCE_TYPES

    return {
        "claim_generator_info": [{"name": "fairchord demo corpus", "version": "1"}],
        "title": f"{fact.title} ({start:g}-{end:g} s of {fact.file_path.name})",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": IPTC_SOURCE_TYPES + "digitalCreation",
                        }
                    ]
                },
            },
            DO_NOT_TRAIN_ASSERTION,
            {
                "label": "stds.schema-org.CreativeWork",
                "data": {
                    "@context": "https://schema.org",
                    "@type": "CreativeWork",
                    "author": [{"@type": "Person", "name": fact.artist}],
                    "license": fact.license,
                    "url": fact.source_url,
                },
            },
        ],
    }


def _kept_excerpt(dest: Path, sidecar: Path, wanted: dict[str, Any]) -> str | None:
    """The sha256 of a signed excerpt an earlier build made from the same source and span,
    when its bytes are unchanged and its credential still validates and refuses training."""
    from provenance.content_credentials import read_credential, training_refusal

    if not (dest.is_file() and sidecar.is_file()):
        return None
    try:
        stored = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sha = stored.pop("sha256", None) if isinstance(stored, dict) else None
    if stored != wanted or sha != sha256_file(dest):
        return None
    reading = read_credential(dest)
    return str(sha) if reading is not None and training_refusal(reading) else None


def signed_excerpt(fact: DemoFact, dest: Path, signer_dir: Path) -> str:
    """Decode the fact's excerpt to FLAC and sign it "do not train"; return its sha256. A
    signed excerpt from an earlier build is kept while it still checks out."""
    import soundfile as sf

    from provenance.content_credentials import sign_file

    excerpt = fact.excerpt
    assert excerpt is not None
    start, end = excerpt
    src = fact.file_path
    sidecar = dest.with_name(dest.name + ".excerpt.json")
    wanted = {"source": str(src), "source_sha256": sha256_file(src), "start_s": start, "end_s": end}
    kept = _kept_excerpt(dest, sidecar, wanted)
    if kept is not None:
        return kept
    keys = _signer_keys(signer_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    plain = dest.with_name(f".{dest.name}.{os.getpid()}.plain.flac")
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with sf.SoundFile(src) as audio:
            rate = audio.samplerate
            audio.seek(int(round(start * rate)))
            frames = audio.read(int(round((end - start) * rate)), dtype="float32", always_2d=True)
        sf.write(plain, frames, rate, format="FLAC", subtype="PCM_16")
        sign_file(plain, partial, _do_not_train_manifest(fact, start, end), keys, mime="audio/flac")
        os.replace(partial, dest)
    finally:
        plain.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    sha = sha256_file(dest)
    sidecar.write_text(json.dumps({**wanted, "sha256": sha}, indent=2) + "\n", encoding="utf-8")
    return sha
