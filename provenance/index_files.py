"""The file names inside a gate index folder and the digest that names the index.

The gate (``generation.index``) writes these files and the audit
(``provenance.audit.integrity``) re-hashes them; both take the names from here,
so the record never needs the gate's code to check what the gate stored.
"""

from __future__ import annotations

import hashlib

VECTORS_FILE = "vectors.faiss"
IDS_FILE = "ids.json"
META_FILE = "meta.json"
FINGERPRINTS_FILE = "fingerprints.npz"
ARTIST_MODEL_FILE = "artist_model.npz"
MELODY_FILE = "melody.npz"


def combined_sha256(vectors_sha: str, ids_sha: str) -> str:
    """The index identity: a digest over the two content files' digests."""
    text = f"{VECTORS_FILE}:{vectors_sha}\n{IDS_FILE}:{ids_sha}\n"
    return hashlib.sha256(text.encode()).hexdigest()
