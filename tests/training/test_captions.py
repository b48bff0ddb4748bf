"""Descriptors and captions: right words for known signals, and never a party's name."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import Session

from flows.demo_corpus import demo_facts_path
from provenance.features import banned_names
from provenance.models import Credit, Party, PartyAlias, Recording
from training.captions import (
    ClapTagger,
    NameFilter,
    build_caption,
    descriptor_phrases,
    load_vocabulary,
    tag_phrases,
)
from training.descriptors import compute_descriptors
from training.featurizer import RecordingJob, featurize_recording
from training.mel import log_mel

SR = 16000
DEMO_MANIFEST = demo_facts_path()  # the packaged copy of the demo corpus facts


def chord_with_clicks(
    *, bpm: float, freqs: tuple[float, ...], level: float = 0.1, clicks: bool = True
) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(int(10.24 * SR)) / SR
    wave = sum(level * np.sin(2 * np.pi * f * t) for f in freqs)
    for start in np.arange(0, 10.24, 60 / bpm) if clicks else []:
        i = int(start * SR)
        n = min(400, len(t) - i)
        wave[i : i + n] += 0.5 * rng.standard_normal(n) * np.exp(-np.arange(n) / 80)
    return np.asarray(wave, dtype=np.float32)


def test_descriptors_of_a_known_signal() -> None:
    wave = chord_with_clicks(bpm=72, freqs=(220.0, 261.63, 329.63))  # A minor triad
    d = compute_descriptors(wave, log_mel(wave))
    assert d.tempo_bpm == pytest.approx(72, abs=2)
    assert (d.key, d.mode) == ("A", "minor")
    words = descriptor_phrases(d)
    assert words[0] == "slow tempo (72 bpm)"
    assert "A minor" in words
    pure = chord_with_clicks(bpm=72, freqs=(220.0, 261.63, 329.63), clicks=False)
    assert "dark timbre" in descriptor_phrases(compute_descriptors(pure, log_mel(pure)))
    major = chord_with_clicks(bpm=128, freqs=(261.63, 329.63, 392.0))  # C major
    d2 = compute_descriptors(major, log_mel(major))
    assert (d2.key, d2.mode) == ("C", "major")
    assert d2.tempo_bpm == pytest.approx(128, abs=3)


def test_silence_and_loudness_words() -> None:
    silent = np.zeros(int(10.24 * SR), np.float32)
    d = compute_descriptors(silent, log_mel(silent))
    assert d.silent and descriptor_phrases(d) == ["silence"]
    t = np.arange(int(10.24 * SR)) / SR
    quiet = (0.01 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    loud = (0.9 * np.sign(np.sin(2 * np.pi * 300 * t))).astype(np.float32)
    assert "very quiet" in descriptor_phrases(compute_descriptors(quiet, log_mel(quiet)))
    loud_words = descriptor_phrases(compute_descriptors(loud, log_mel(loud)))
    assert "very loud" in loud_words
    assert "steady dynamics" in loud_words


def test_partial_window_ignores_padding() -> None:
    wave = chord_with_clicks(bpm=100, freqs=(440.0,))
    padded = wave.copy()
    padded[SR * 4 :] = 0
    d = compute_descriptors(padded, log_mel(padded), valid_samples=SR * 4)
    assert d.duration_s == pytest.approx(4.0)
    assert d.rms_dbfs > -30


def test_tag_phrases_drop_whole_phrases_that_name_someone() -> None:
    names = NameFilter.from_names(["Jane Dóe", "JD"])
    tags = ["Orchestral; in the style of jane doe", "strings / J.D. remix", "Piano", "a b c d e"]
    assert tag_phrases(tags, names) == ["orchestral", "strings", "piano"]
    # Word boundaries: a name inside another word is not a match.
    assert tag_phrases(["jdazz"], names) == ["jdazz"]


def test_build_caption_methods_and_name_scrub() -> None:
    wave = chord_with_clicks(bpm=72, freqs=(220.0, 261.63, 329.63))
    d = compute_descriptors(wave, log_mel(wave))
    plain = build_caption(d)
    assert plain.method == "descriptors" and "A minor" in plain.text
    tagged = build_caption(d, tags=["Ambient, Harp"], banned_names=["Someone Else"])
    assert tagged.method == "descriptors+tags" and tagged.text.startswith("ambient, harp, ")
    # A party whose alias is an ordinary caption word still never shows up.
    scrubbed = build_caption(d, tags=["ambient"], banned_names=["Ambient", "a minor"])
    assert "ambient" not in scrubbed.text.lower() and "a minor" not in scrubbed.text.lower()
    assert scrubbed.method == "descriptors"
    # A name split across two phrases is caught too.
    spanning = build_caption(d, tags=["harp"], banned_names=["harp slow"])
    assert "harp" not in spanning.text


class FakeEmbedder:
    """Text and audio embeddings on a 512-d basis: 'harp' and 'calm' match the audio."""

    def __init__(self) -> None:
        self.vocab = [t for _, t in load_vocabulary()]

    def embed_text(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 512), np.float32)
        for i, _ in enumerate(texts):
            out[i, i] = 1.0
        return out

    def embed_audio_clip(self, wave_16k: np.ndarray) -> np.ndarray:
        v = np.zeros(512, np.float32)
        v[self.vocab.index("harp")] = 0.8
        v[self.vocab.index("calm")] = 0.6
        v[self.vocab.index("folk")] = 0.3
        return v


def test_clap_tags_from_the_shipped_vocabulary() -> None:
    vocab = load_vocabulary()
    assert {c for c, _ in vocab} == {"genre", "instrument", "mood"}
    tagger = ClapTagger(FakeEmbedder())
    wave = chord_with_clicks(bpm=72, freqs=(220.0,))
    assert tagger.tags(wave) == ["folk", "harp", "calm"]
    d = compute_descriptors(wave, log_mel(wave))
    cap = build_caption(d, tags=["orchestral"], clap_tags=tagger.tags(wave), banned_names=["Folk"])
    assert cap.method == "descriptors+tags+clap"
    assert "folk" not in cap.text and "harp" in cap.text


def _demo_rows() -> list[dict[str, str]]:
    with DEMO_MANIFEST.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.skipif(not DEMO_MANIFEST.exists(), reason="demo corpus manifest not on this machine")
@pytest.mark.parametrize(
    "files", [4, pytest.param(None, marks=pytest.mark.slow, id="all")], ids=["4-files", "all"]
)
def test_no_party_name_leaks_into_demo_captions(session: Session, files: int | None) -> None:
    """Every demo artist is a party (plus aliases); manifest genre text that names them is
    passed as tags; no caption of the demo files may contain any name or alias."""
    rows = [r for r in _demo_rows() if r["artist"] and Path(r["path"]).exists()]
    if not rows:
        pytest.skip("demo audio not installed")
    parties: dict[str, Party] = {}
    for r in rows:
        name = r["artist"]
        if name in parties:
            continue
        party = Party(name=name, normalized_name=name.casefold(), kind="person")
        session.add(party)
        session.flush()
        surname = name.split()[-1].strip("()")
        session.add(PartyAlias(party_id=party.id, alias=surname, normalized_alias=surname.lower()))
        parties[name] = party
    session.flush()
    names = banned_names(session)
    assert "Maxstack" in {n.strip("()") for n in names}

    # Quick variant: the shortest file of 4 artists; the slow one: every credited file.
    # Each file gets hostile genre text naming its artist.
    if files is None:
        chosen = rows
    else:
        shortest: dict[str, dict[str, str]] = {}
        for r in rows:
            if r["artist"] not in shortest or float(r["duration_s"]) < float(
                shortest[r["artist"]]["duration_s"]
            ):
                shortest[r["artist"]] = r
        chosen = sorted(shortest.values(), key=lambda r: float(r["duration_s"]))[:files]
    name_filter = NameFilter.from_names(names)
    captions: list[str] = []
    for i, r in enumerate(chosen):
        rec = Recording(sha256=f"{i:064x}", size_bytes=1, status="accepted", object_uri=r["path"])
        session.add(rec)
        session.flush()
        session.add(Credit(recording_id=rec.id, party_id=parties[r["artist"]].id, role="artist"))
        artist = r["artist"]
        tags = (
            f"orchestral; {artist} style",
            f"fantasy by {artist.upper()}",
            f"{artist.split()[-1]} soundtrack",
            r["title"],
        )
        features = featurize_recording(
            RecordingJob(rec.id, rec.sha256, r["path"], tags=tags), banned_names=name_filter
        )
        captions += features.batch.column("caption").to_pylist()
    assert captions
    for caption in captions:
        assert not name_filter.mentions_name(caption), caption
        lowered = caption.lower()
        for name in names:
            assert name.lower().strip("()") not in lowered, (name, caption)
    assert any("orchestral" in c for c in captions)
