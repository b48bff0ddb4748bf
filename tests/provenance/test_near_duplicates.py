"""Near-duplicate links need a duration match, a close fingerprint *and* a fine spectral
match: a held chord and a held tone are not linked; re-encodes, gain changes and small
crops of the same music still are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audio_match import DEFAULT_MIN_CORRELATION, profile_of_wave, profile_similarity
from provenance.audio_probe import DEFAULT_NEAR_DUPLICATE_BITS, fingerprint_distance, probe_audio
from provenance.ingest_prepare import IngestLimits
from provenance.ingest_record import ingest_item
from provenance.ingest_runs import get_or_create_source
from provenance.models import Recording
from provenance.near_duplicates import duplicate_evidence
from provenance.object_store import ObjectStore
from provenance.sources import open_source
from tests.common.audio import synth_music

SR = 22050
LIMITS = IngestLimits(max_duration_s=10.0, min_duration_s=1.0, max_bytes=5_000_000)


def held(freqs: list[float], *, seconds: float = 4.0) -> np.ndarray:
    """A held note or chord: equal-amplitude sines, no change over time."""
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)).astype(np.float32)


C_MAJOR = [261.63, 329.63, 392.0]


def _ingest_folder(session: Session, folder: Path, store: ObjectStore) -> dict[str, Recording]:
    """Ingest a folder's files in name order; the recordings by file name."""
    adapter = open_source(str(folder))
    source = get_or_create_source(session, adapter)
    outcomes = {}
    for item in sorted(adapter.items(), key=lambda i: i.locator):
        outcome = ingest_item(session, store, source, None, item, LIMITS)
        assert outcome.recording_id is not None, outcome
        outcomes[item.locator] = session.get(Recording, outcome.recording_id)
    return outcomes


def test_held_chord_and_tone_pass_the_coarse_steps_but_not_the_fine_one() -> None:
    chord, tone = held(C_MAJOR), held([440.0])
    fp_chord = probe_fingerprint(chord)
    fp_tone = probe_fingerprint(tone)
    # The coarse fingerprint alone would link them: this is the false match to prevent.
    assert fingerprint_distance(fp_chord, fp_tone) <= DEFAULT_NEAR_DUPLICATE_BITS
    match = profile_similarity(
        profile_of_wave(chord, sample_rate=SR), profile_of_wave(tone, sample_rate=SR), max_lag_s=1
    )
    assert match.correlation < 0.5


def probe_fingerprint(wave: np.ndarray) -> str:
    import io

    buf = io.BytesIO()
    sf.write(buf, wave, SR, format="WAV", subtype="PCM_16")
    buf.seek(0)
    fingerprint = probe_audio(buf).fingerprint
    assert fingerprint is not None
    return fingerprint


@pytest.mark.parametrize(
    ("first", "second"),
    [(C_MAJOR, [440.0]), (C_MAJOR, [261.63]), ([440.0], [261.63]), (C_MAJOR, [220.0, 261.63])],
    ids=["chord-vs-A4", "chord-vs-its-root", "A4-vs-C4", "C-major-vs-A-minor-dyad"],
)
def test_different_held_sounds_are_not_linked(
    session: Session, tmp_path: Path, first: list[float], second: list[float]
) -> None:
    folder = tmp_path / "held"
    folder.mkdir()
    sf.write(folder / "a.wav", held(first), SR, subtype="PCM_16")
    sf.write(folder / "b.flac", held(second), SR, subtype="PCM_16")
    recordings = _ingest_folder(session, folder, ObjectStore(str(tmp_path / "objects")))
    b = recordings["b.flac"]
    assert b.duplicate_of_id is None
    # The evidence says why: the coarse steps matched, the fine comparison did not.
    (evidence,) = duplicate_evidence(session, b)
    assert evidence.bits <= DEFAULT_NEAR_DUPLICATE_BITS
    assert evidence.correlation is not None and evidence.correlation < DEFAULT_MIN_CORRELATION


def _variants(wave: np.ndarray) -> dict[str, tuple[np.ndarray, str, str]]:
    """name → (audio, format, subtype) of copies that are the same recording.

    Crops longer than a few milliseconds are not here: the fingerprint's time slices are
    fractions of the whole clip, so a crop moves every slice and fails the coarse step
    (``benchmarks/near_duplicate_eval.py`` measures this).
    """
    return {
        "b-reencoded.mp3": (wave, "MP3", "MPEG_LAYER_III"),
        "c-vorbis.ogg": (wave, "OGG", "VORBIS"),
        "d-quieter.flac": (wave * 0.5, "FLAC", "PCM_16"),
        "e-louder.flac": (np.clip(wave * 1.4, -1, 1), "FLAC", "PCM_16"),
        "f-quieter-mp3.mp3": (wave * 0.3, "MP3", "MPEG_LAYER_III"),
        "g-trimmed.wav": (wave[int(0.01 * SR) : -int(0.01 * SR)], "WAV", "PCM_16"),
    }


def test_true_near_duplicates_still_link(session: Session, tmp_path: Path) -> None:
    folder = tmp_path / "copies"
    folder.mkdir()
    original = synth_music(41, seconds=6.0)
    sf.write(folder / "a-original.flac", original, SR, subtype="PCM_16")
    for name, (wave, fmt, subtype) in _variants(original).items():
        sf.write(folder / name, wave, SR, format=fmt, subtype=subtype)
    sf.write(folder / "h-other-music.flac", synth_music(42, seconds=6.0), SR, subtype="PCM_16")
    recordings = _ingest_folder(session, folder, ObjectStore(str(tmp_path / "objects")))
    root = recordings["a-original.flac"]
    assert root.duplicate_of_id is None
    for name in _variants(original):
        assert recordings[name].duplicate_of_id == root.id, name
    assert recordings["h-other-music.flac"].duplicate_of_id is None
    linked = session.scalars(select(Recording.id).where(Recording.duplicate_of_id == root.id))
    assert len(list(linked)) == len(_variants(original))


def test_a_held_sound_still_links_to_its_own_reencode(session: Session, tmp_path: Path) -> None:
    """Little change over time is no reason to refuse a real copy."""
    folder = tmp_path / "held-copies"
    folder.mkdir()
    chord = held(C_MAJOR)
    sf.write(folder / "a.wav", chord, SR, subtype="PCM_16")
    sf.write(folder / "b.ogg", chord * 0.7, SR, format="OGG", subtype="VORBIS")
    recordings = _ingest_folder(session, folder, ObjectStore(str(tmp_path / "objects")))
    assert recordings["b.ogg"].duplicate_of_id == recordings["a.wav"].id


def test_an_unreadable_object_is_no_evidence(session: Session, tmp_path: Path) -> None:
    """A missing original object means no fine comparison, so no link (the copy stays)."""
    music = synth_music(43, seconds=4.0)
    first_folder, second_folder = tmp_path / "first", tmp_path / "second"
    first_folder.mkdir()
    second_folder.mkdir()
    sf.write(first_folder / "a.flac", music, SR, subtype="PCM_16")
    sf.write(second_folder / "b.ogg", music, SR, format="OGG", subtype="VORBIS")
    store = ObjectStore(str(tmp_path / "objects"))
    first = _ingest_folder(session, first_folder, store)["a.flac"]
    store.delete(first.sha256)
    second = _ingest_folder(session, second_folder, store)["b.ogg"]
    assert second.duplicate_of_id is None
    (evidence,) = duplicate_evidence(session, second)
    assert evidence.bits <= DEFAULT_NEAR_DUPLICATE_BITS and evidence.correlation is None
