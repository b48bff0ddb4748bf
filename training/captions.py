"""Captions in words, built so that they can never carry a party's name.

A caption conditions the diffusion model, so a name in it would teach the
model to imitate that person on request. Captions are made of three kinds of
phrase, and the caption method records which were used:

- ``descriptors``: words for the acoustic descriptors (tempo, key, loudness,
  brightness, percussion, dynamics) — a fixed vocabulary;
- ``tags``: genre / instrument words from a manifest or file tags, with every
  phrase that mentions a banned name dropped;
- ``clap``: zero-shot tags from :data:`VOCABULARY_PATH` scored by a CLAP
  embedder (optional).

Whatever the source, the finished caption is scrubbed once more against the
banned names (word-boundary match on normalised text), so no phrase that
contains a name survives.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from provenance.names import normalize_name
from training.descriptors import Descriptors

logger = logging.getLogger(__name__)

VOCABULARY_PATH = Path(__file__).with_name("data") / "clap_vocabulary.txt"
CAPTION_METHODS = (
    "descriptors",
    "descriptors+tags",
    "descriptors+clap",
    "descriptors+tags+clap",
)
_TAG_SPLIT = re.compile(r"[,;/|\n]+|\s+-\s+")
_SINGLE_LETTER_RUN = re.compile(r"(?<!\S)\w(?: \w)+(?!\S)")
MAX_TAG_WORDS = 4
MAX_TAGS = 6


class TextAudioEmbedder(Protocol):
    """The part of the CLAP embedder (training/clap_embedder.py) captions use."""

    def embed_text(self, texts: list[str]) -> np.ndarray: ...

    def embed_audio_clip(self, wave_16k: np.ndarray) -> np.ndarray: ...


# --- descriptor words ------------------------------------------------------


def _band(value: float, bands: Sequence[tuple[float, str]], last: str) -> str:
    for limit, word in bands:
        if value < limit:
            return word
    return last


def descriptor_phrases(d: Descriptors) -> list[str]:
    """Words for the descriptors, e.g. ``["slow tempo (72 bpm)", "A minor", "quiet", ...]``."""
    if d.silent:
        return ["silence"]
    phrases: list[str] = []
    if d.tempo_bpm is not None and d.tempo_confidence >= 0.1:
        speed = _band(
            d.tempo_bpm,
            ((66, "very slow"), (90, "slow"), (115, "moderate"), (140, "fast")),
            "very fast",
        )
        phrases.append(f"{speed} tempo ({round(d.tempo_bpm)} bpm)")
    else:
        phrases.append("free tempo")
    if d.key is not None and d.mode is not None and d.key_confidence >= 0.5:
        phrases.append(f"{d.key} {d.mode}")
    phrases.append(
        _band(
            d.rms_dbfs,
            ((-36, "very quiet"), (-26, "quiet"), (-16, "medium loudness"), (-10, "loud")),
            "very loud",
        )
    )
    if d.centroid_hz is not None:
        phrases.append(
            _band(
                d.centroid_hz,
                ((900, "dark timbre"), (1600, "warm timbre"), (2600, "bright timbre")),
                "very bright timbre",
            )
        )
    phrases.append(
        _band(
            d.onset_rate,
            # Bands set on the demo corpus, whose onset rates span about 1.5-11 per second.
            ((1.5, "no percussion"), (3.5, "sparse percussion"), (7.0, "steady percussion")),
            "busy percussion",
        )
    )
    phrases.append(
        _band(
            d.dynamic_range_db, ((6.0, "steady dynamics"), (14.0, "moderate dynamics")), "dynamic"
        )
    )
    return phrases


# --- name filtering --------------------------------------------------------


@dataclass(frozen=True)
class NameFilter:
    """Banned names (party names and aliases), normalised, matched on word boundaries."""

    pattern: re.Pattern[str] | None

    @classmethod
    def from_names(cls, banned_names: Iterable[str]) -> NameFilter:
        normalised = {normalize_name(n) for n in banned_names}
        normalised.discard("")
        if not normalised:
            return cls(None)
        # Longest first so "john smith band" wins over "john smith".
        alternatives = "|".join(re.escape(n) for n in sorted(normalised, key=len, reverse=True))
        return cls(re.compile(rf"(?:(?<=\s)|^)(?:{alternatives})(?=\s|$)"))

    def mentions_name(self, text: str) -> bool:
        if self.pattern is None:
            return False
        normalised = normalize_name(text)
        if self.pattern.search(normalised) is not None:
            return True
        # Initials written with dots or spaces ("J.D.", "j d") also match "jd".
        joined = _SINGLE_LETTER_RUN.sub(lambda m: m.group(0).replace(" ", ""), normalised)
        return joined != normalised and self.pattern.search(joined) is not None

    def scrub(self, phrases: Sequence[str]) -> list[str]:
        """Drop every phrase that contains a name, also names that span two phrases."""
        kept = [p for p in phrases if not self.mentions_name(p)]
        if self.pattern is None:
            return kept
        while True:
            spans: list[tuple[int, int]] = []
            pos = 0
            for p in kept:
                n = normalize_name(p)
                spans.append((pos, pos + len(n)))
                pos += len(n) + 1
            joined = " ".join(normalize_name(p) for p in kept)
            match = self.pattern.search(joined)
            if match is None:
                return kept
            kept = [
                p
                for p, (a, b) in zip(kept, spans, strict=True)
                if b <= match.start() or a >= match.end()
            ]


def tag_phrases(tags: Iterable[str], name_filter: NameFilter) -> list[str]:
    """Genre / instrument phrases from free tag text, normalised, names and their phrases dropped.

    A tag like ``"orchestral, in the style of Jane Doe"`` gives ``["orchestral"]``: the
    phrase that held the name goes whole, not just the name.
    """
    out: list[str] = []
    for tag in tags:
        if not tag:
            continue
        for raw in _TAG_SPLIT.split(tag):
            phrase = normalize_name(raw)
            if not phrase or name_filter.mentions_name(phrase):
                continue
            words = phrase.split()
            if len(words) > MAX_TAG_WORDS or not all(w.isalpha() for w in words):
                continue
            if phrase not in out:
                out.append(phrase)
    return out[:MAX_TAGS]


# --- CLAP zero-shot tags ---------------------------------------------------


@lru_cache(maxsize=4)
def load_vocabulary(path: Path = VOCABULARY_PATH) -> tuple[tuple[str, str], ...]:
    """(category, term) pairs from the shipped vocabulary file."""
    pairs: list[tuple[str, str]] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        category, sep, term = line.partition(":")
        if not sep or not term.strip():
            raise ValueError(f"{path}:{lineno}: expected '<category>: <term>', got {line!r}")
        pairs.append((category.strip(), term.strip()))
    return tuple(pairs)


_PROMPTS = {"genre": "{} music", "instrument": "the sound of {}", "mood": "{} music"}


class ClapTagger:
    """Zero-shot tags: the vocabulary terms whose text embedding is nearest a clip's audio one."""

    def __init__(
        self,
        embedder: TextAudioEmbedder,
        *,
        vocabulary: Sequence[tuple[str, str]] | None = None,
        per_category: dict[str, int] | None = None,
        margin: float = 0.05,
    ) -> None:
        self.embedder = embedder
        self.vocabulary = tuple(vocabulary if vocabulary is not None else load_vocabulary())
        self.per_category = per_category or {"genre": 1, "instrument": 2, "mood": 1}
        self.margin = margin
        prompts = [_PROMPTS.get(c, "{}").format(t) for c, t in self.vocabulary]
        self._text = np.asarray(embedder.embed_text(prompts), dtype=np.float32)
        self._categories = np.array([c for c, _ in self.vocabulary])

    def tags(self, wave_16k: np.ndarray) -> list[str]:
        audio = np.asarray(self.embedder.embed_audio_clip(wave_16k), dtype=np.float32).reshape(-1)
        sims = self._text @ audio
        chosen: list[str] = []
        for category, k in self.per_category.items():
            idx = np.nonzero(self._categories == category)[0]
            if len(idx) == 0:
                continue
            cat_sims = sims[idx]
            floor = float(np.median(cat_sims)) + self.margin
            for j in np.argsort(-cat_sims)[:k]:
                if cat_sims[j] >= floor:
                    chosen.append(self.vocabulary[idx[j]][1])
        return chosen


# --- the caption -----------------------------------------------------------


@dataclass(frozen=True)
class Caption:
    text: str
    method: str
    phrases: tuple[str, ...]


def build_caption(
    descriptors: Descriptors,
    *,
    banned_names: Iterable[str] | NameFilter = (),
    tags: Iterable[str] = (),
    clap_tags: Iterable[str] = (),
) -> Caption:
    """A caption from descriptors, optional manifest tags and optional CLAP tags, names removed."""
    name_filter = (
        banned_names
        if isinstance(banned_names, NameFilter)
        else NameFilter.from_names(banned_names)
    )
    tag_part = tag_phrases(tags, name_filter)
    clap_part = [t for t in tag_phrases(clap_tags, name_filter) if t not in tag_part]
    phrases: list[str] = []
    for phrase in [*tag_part, *clap_part, *descriptor_phrases(descriptors)]:
        if phrase not in phrases:
            phrases.append(phrase)
    kept = name_filter.scrub(phrases)
    method = "descriptors"
    if any(p in kept for p in tag_part):
        method += "+tags"
    if any(p in kept for p in clap_part):
        method += "+clap"
    return Caption(text=", ".join(kept), method=method, phrases=tuple(kept))


def caption_record(caption: Caption) -> dict[str, Any]:
    return {"caption": caption.text, "caption_method": caption.method}
