"""Content Credentials test helpers: sign an audio file with a C2PA manifest that says
"do not train" or "a trained model made this", and damage a signed WAV's audio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from provenance.content_credentials import (
    DO_NOT_TRAIN_ASSERTION,
    IPTC_SOURCE_TYPES,
    mime_for,
    sign_file,
)
from provenance.signing_keys import SigningKeys

DO_NOT_TRAIN = DO_NOT_TRAIN_ASSERTION


def created(source_type: str) -> dict[str, Any]:
    """A ``c2pa.actions`` assertion whose ``c2pa.created`` action has this IPTC source type."""
    return {
        "label": "c2pa.actions",
        "data": {
            "actions": [
                {"action": "c2pa.created", "digitalSourceType": IPTC_SOURCE_TYPES + source_type}
            ]
        },
    }


def sign_audio(src: Path, dest: Path, keys: SigningKeys, *assertions: dict[str, Any]) -> Path:
    """Write ``src`` to ``dest`` with a signed manifest holding ``assertions`` (a
    ``c2pa.created`` action of ``digitalCreation`` comes first unless one is given)."""
    if not any(a["label"] == "c2pa.actions" for a in assertions):
        assertions = (created("digitalCreation"), *assertions)
    mime = mime_for(src)
    assert mime is not None, src
    manifest = {
        "claim_generator_info": [{"name": "fairchord-tests", "version": "1"}],
        "title": dest.name,
        "assertions": list(assertions),
    }
    sign_file(src, dest, manifest, keys, mime=mime)
    return dest


def flip_wav_sample_byte(path: Path) -> Path:
    """Change one byte of a WAV's sample data: the audio still decodes, the credential's hash
    binding no longer matches."""
    data = bytearray(path.read_bytes())
    start = data.index(b"data") + 8
    data[start + 1001] ^= 0x55
    path.write_bytes(bytes(data))
    return path
