"""A tiny recorded corpus: four one-segment tone recordings by two artists, one CC-BY-NC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from provenance.db import make_engine, session_factory
from provenance.licences import record_licence
from provenance.models import Recording
from provenance.object_store import default_object_store
from provenance.parties import add_credit, get_or_create_party

# (title, artist, licence, tone Hz): 6 s each, one segment each.
TONE_CORPUS = [
    ("a", "Ada Tone", "CC-BY-4.0", 220.0),
    ("b", "Ada Tone", "CC0-1.0", 330.0),
    ("c", "Ben Drone", "CC-BY-SA-4.0", 1320.0),
    ("d", "Ben Drone", "CC-BY-NC-4.0", 1760.0),  # non-commercial: not trained on
]


def seed_tone_corpus(url: str, folder: Path) -> dict[str, int]:
    """Store and record the corpus in the database at ``url``; title → recording id."""
    ids = {}
    store = default_object_store()
    rate = 22_050
    t = np.arange(6 * rate) / rate
    engine = make_engine(url)
    try:
        with session_factory(engine).begin() as session:
            for title, artist, licence, freq in TONE_CORPUS:
                rng = np.random.default_rng(int(freq))
                wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
                path = folder / f"{title}.wav"
                sf.write(path, wave.astype(np.float32), rate)
                sha, uri = store.put_file(str(path))
                rec = Recording(
                    sha256=sha, size_bytes=path.stat().st_size, title=title, object_uri=uri
                )
                session.add(rec)
                session.flush()
                party = get_or_create_party(session, artist)
                add_credit(session, recording_id=rec.id, party_id=party.id)
                record_licence(session, recording_id=rec.id, declared=licence, asserted_by="test")
                ids[title] = rec.id
    finally:
        engine.dispose()
    return ids
