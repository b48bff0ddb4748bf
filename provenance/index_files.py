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
# The fingerprint table: a folder of hash partitions named by its manifest's sha256
# (``generation.fingerprint_store``). The manifest lists every file under "files" as
# {"sha256", "bytes", "rows"}; the thresholds record the layout and the manifest digest.
FINGERPRINTS_DIR = "fingerprints"
FINGERPRINTS_MANIFEST = "manifest.json"
FINGERPRINTS_LAYOUT = "partitioned"
# Indexes calibrated before the partitioned layout keep one in-memory table file.
FINGERPRINTS_FILE = "fingerprints.npz"
ARTIST_MODEL_FILE = "artist_model.npz"
MELODY_FILE = "melody.npz"


def combined_sha256(vectors_sha: str, ids_sha: str) -> str:
    """The index identity: a digest over the two content files' digests."""
    text = f"{VECTORS_FILE}:{vectors_sha}\n{IDS_FILE}:{ids_sha}\n"
    return hashlib.sha256(text.encode()).hexdigest()
