"""The prompt screen: refuse a text prompt that names a party in the provenance database.

Every party (artist, composer, rights holder, …) is screened by its name, each alias and
its surnames, however the prompt writes them: re-spaced, in leet, misspelt, in look-alike
letters (folded by :mod:`generation.text_folding`). A name part that is an ordinary word
(judged by :mod:`generation.ordinary_words`) needs an imitation cue or the rest of the
name; any other surname or alias blocks on its own. ``docs/prompt-screen.md`` states the
rules in full; :class:`ScreenResult` says which party was found, by which name, what text
matched and how.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

from rapidfuzz.distance import OSA
from sqlalchemy import select
from sqlalchemy.orm import Session

from generation.ordinary_words import (
    ENGLISH_ZIPF,
    OTHER_LANGUAGES,
    OTHER_ZIPF,
    is_english_word,
    is_ordinary,
)
from generation.text_folding import fold, isolating, letter_count
from provenance.audit_log import append_event
from provenance.consent import ConsentSubject, covering_purposes, current_consent
from provenance.models import ConsentEvent, GateDecision, Party, PartyAlias, utcnow

log = logging.getLogger(__name__)

__all__ = [
    "CUES_AFTER",
    "CUES_BEFORE",
    "MAX_PROMPT_CHARS",
    "PromptScreen",
    "ScreenResult",
    "ScreenedParty",
    "record_screen_decision",
    "style_opt_outs",
]

STAGE = "prompt_screen"
STYLE_PURPOSE = "style_imitation"
RULES_VERSION = 2

MAX_PROMPT_CHARS = 4000
MIN_NAME_CHARS = 3  # shorter names and aliases are not screened
STRONG_NAME_CHARS = 4  # shorter names match only after a cue
DISTINCTIVE_TOKEN_CHARS = 4  # shorter surnames are never matched alone, nor with a cue
MAX_CUE_FILLERS = 2  # words such as "exactly" allowed inside a cue ("sounds exactly like")
MAX_DISTANCE = 2  # the largest edit distance name_distance allows

METHODS = ("exact", "spaced", "leet", "fuzzy", "style_opt_out")
_METHOD_RANK = {method: rank for rank, method in enumerate(METHODS)}

# Imitation and attribution cues, as token sequences. Verbs such as "emulate" or "imitate"
# are left out on purpose: "emulate tape saturation" is ordinary production language.
CUES_BEFORE: tuple[tuple[str, ...], ...] = (
    ("style", "of"),
    ("styles", "of"),
    ("styled", "after"),
    ("styled", "like"),
    ("vein", "of"),
    ("manner", "of"),
    ("mould", "of"),
    ("mold", "of"),
    ("spirit", "of"),
    ("footsteps", "of"),
    ("inspired", "by"),
    ("influenced", "by"),
    ("reminiscent", "of"),
    ("evocative", "of"),
    ("a", "la"),
    ("ala",),
    ("alla",),
    ("imitation", "of"),
    ("pastiche", "of"),
    ("copy", "of"),
    ("clone", "of"),
    ("knockoff", "of"),
    ("signature", "sound", "of"),
    ("sounds", "like"),
    ("sound", "like"),
    ("sounding", "like"),
    ("sing", "like"),
    ("sings", "like"),
    ("play", "like"),
    ("plays", "like"),
    ("playing", "like"),
    ("write", "like"),
    ("writes", "like"),
    ("similar", "to"),
    ("homage", "to"),
    ("tribute", "to"),
    ("channeling",),
    ("channelling",),
    ("song", "by"),
    ("songs", "by"),
    ("track", "by"),
    ("tracks", "by"),
    ("tune", "by"),
    ("piece", "by"),
    ("music", "by"),
    ("composed", "by"),
    ("written", "by"),
    ("produced", "by"),
    ("performed", "by"),
    ("arranged", "by"),
)
# Words allowed inside a cue, between its words: "sounds exactly like", "sound a lot like".
CUE_FILLERS = frozenset(
    "exactly just very much more a lot bit little kind sort of somewhat quite rather "
    "almost really totally precisely heavily strongly closely deeply clearly".split()
)
CUES_AFTER: tuple[tuple[str, ...], ...] = (
    ("style",),
    ("styled",),
    ("esque",),
    ("type", "beat"),
    ("inspired",),
    ("like",),
    ("vibes",),
)
POSSESSIVE_SUFFIXES = ("s", "es")
STYLE_SUFFIXES = ("esque", "ish", "like", "style", "inspired")

_APOSTROPHES = frozenset("'’‘ʼ`´′")
_LEET_SYMBOLS = frozenset("@$|!")
_LEET = {
    "0": "o",
    "1": "i",
    "2": "z",
    "3": "e",
    "4": "a",
    "5": "s",
    "6": "g",
    "7": "t",
    "8": "b",
    "9": "g",
    "@": "a",
    "$": "s",
    "!": "i",
    "|": "i",
}
_LETTERS = str.maketrans(_LEET)  # the leet reading without l → i, to look words up
_SKELETON = str.maketrans({**_LEET, "l": "i"})


def _skeleton(text: str) -> str:
    """The leet reading: digits and leet symbols as letters, ``l`` as ``i``; no letter: as is."""
    if not any(c.isalpha() for c in text):
        return text
    return text.translate(_SKELETON)


def _ordinary(text: str, *, in_prompt: bool) -> bool:
    """An ordinary word of two letters or more, also once read out of leet ("4mbient").

    In a prompt: an ordinary English word; in a name: ordinary in English or a neighbour
    (see :mod:`generation.ordinary_words`).
    """
    if len(text) < 2 or isolating(text[0]):
        return False
    judge = is_english_word if in_prompt else is_ordinary
    if judge(text):
        return True
    letters = text.translate(_LETTERS) if any(c.isalpha() for c in text) else text
    return letters != text and judge(letters)


@dataclass(frozen=True)
class _Token:
    text: str  # folded letters and digits (and leet symbols in the leet reading)
    start: int  # span in the original text
    end: int
    skeleton: str
    ordinary: bool  # an ordinary English word (see _ordinary)
    apostrophe: bool = False  # an apostrophe was dropped inside or right after it
    dotted: bool = False  # a full stop follows it ("D." of "D. Kaufman")


def _token(
    text: str, start: int, end: int, apostrophe: bool = False, dotted: bool = False
) -> _Token:
    return _Token(
        text, start, end, _skeleton(text), _ordinary(text, in_prompt=True), apostrophe, dotted
    )


def _tokens(folded: Sequence[tuple[str, int]], *, leet: bool) -> list[_Token]:
    """Whole tokens of a folded text; with ``leet``, leet symbols inside words are letters."""
    tokens: list[_Token] = []
    chars: list[str] = []
    start = end = 0
    apostrophe = False

    def flush(dotted: bool = False) -> None:
        nonlocal chars, apostrophe
        if chars:
            tokens.append(_token("".join(chars), start, end, apostrophe, dotted))
            chars = []
        apostrophe = False

    chunk_has_alpha = False
    chunk_start = True
    for pos, (char, index) in enumerate(folded):
        if char.isspace():
            flush()
            chunk_start = True
            continue
        if chunk_start:
            chunk_start = False
            chunk_has_alpha = False
            for later, _ in folded[pos:]:
                if later.isspace():
                    break
                if later.isalpha():
                    chunk_has_alpha = True
                    break
        if char in _APOSTROPHES:
            apostrophe = apostrophe or bool(chars)
            continue
        if char.isalnum() and isolating(char):
            flush()
            tokens.append(_token(char, index, index + 1))
            continue
        is_letter = char.isalnum()
        if not is_letter and leet and char in _LEET_SYMBOLS and chunk_has_alpha:
            following = folded[pos + 1][0] if pos + 1 < len(folded) else " "
            if char == "!":
                is_letter = following.isalnum()
            elif char == "@":
                is_letter = bool(chars)  # a leading @ is a handle, not an "a"
            else:
                is_letter = True
        if not is_letter:
            flush(dotted=char == ".")
            continue
        if not chars:
            start = index
        chars.append(char)
        end = index + 1
    flush()
    return tokens


def _has_leet_symbols(tokens: Sequence[_Token]) -> bool:
    return any(c in _LEET_SYMBOLS for t in tokens for c in t.text)


@cache
def _cue_skeletons(where: str) -> tuple[tuple[str, ...], ...]:
    cues = CUES_BEFORE if where == "before" else CUES_AFTER
    return tuple(tuple(_skeleton(word) for word in cue) for cue in cues)


def _cue_before(tokens: Sequence[_Token], i: int) -> tuple[int, int] | None:
    """The span of an imitation cue ending right before token ``i``, if any.

    Up to ``MAX_CUE_FILLERS`` words of ``CUE_FILLERS`` may stand between the cue's words
    ("sounds exactly like"), never between the cue and the name.
    """
    for cue in _cue_skeletons("before"):
        k = i
        for n, word in enumerate(reversed(cue)):
            if n:
                skipped = 0
                while (
                    k > 0
                    and skipped < MAX_CUE_FILLERS
                    and tokens[k - 1].skeleton != word
                    and tokens[k - 1].skeleton in _filler_skeletons()
                ):
                    k, skipped = k - 1, skipped + 1
            if k == 0 or tokens[k - 1].skeleton != word:
                break
            k -= 1
        else:
            return tokens[k].start, tokens[i - 1].end
    return None


@cache
def _filler_skeletons() -> frozenset[str]:
    return frozenset(_skeleton(word) for word in CUE_FILLERS)


def _given_name(tokens: Sequence[_Token], i: int, given: str) -> tuple[int, int] | None:
    """The span of the given name's initial with a full stop right before token ``i``
    ("I. Berlin"), or else of the given name anywhere in the prompt ("Berlin … Irving")."""
    if not given:
        return None
    if i > 0:
        token = tokens[i - 1]
        if token.dotted and token.text == given[0]:
            return token.start, token.end
    skeleton = _skeleton(given)
    for token in tokens:
        if token.skeleton == skeleton:
            return token.start, token.end
    return None


def _cue_after(tokens: Sequence[_Token], j: int) -> tuple[int, int] | None:
    """The span of a style word starting at token ``j``, if any."""
    for cue in _cue_skeletons("after"):
        n = len(cue)
        if j + n <= len(tokens) and tuple(t.skeleton for t in tokens[j : j + n]) == cue:
            return tokens[j].start, tokens[j + n - 1].end
    return None


def osa_distance(a: str, b: str, limit: int) -> int | None:
    """Optimal string alignment distance (rapidfuzz) between ``a`` and ``b`` if <= ``limit``."""
    distance = int(OSA.distance(a, b, score_cutoff=limit))
    return distance if distance <= limit else None


def name_distance(letters: int, *, single_token: bool) -> int:
    """Edit distance allowed for a name, alias or surname with ``letters`` letters.

    One-word names get less room: a one-word name near an ordinary word is more likely
    than a two-word one.
    """
    if single_token:
        return 2 if letters >= 9 else 1 if letters >= 7 else 0
    return 2 if letters >= 10 else 1 if letters >= 6 else 0


def _bigrams(text: str) -> frozenset[str]:
    return frozenset(text[p : p + 2] for p in range(len(text) - 1))


def _pieces(text: str, count: int) -> list[tuple[int, str]]:
    """``text`` cut into ``count`` contiguous pieces of near-equal length, with offsets."""
    size, extra = divmod(len(text), count)
    pieces, offset = [], 0
    for n in range(count):
        length = size + (1 if n < extra else 0)
        pieces.append((offset, text[offset : offset + length]))
        offset += length
    return pieces


@dataclass(frozen=True)
class ScreenedParty:
    """One party as the screen sees it: names, kind, and a style-imitation opt-out if any."""

    party_id: int
    name: str
    kind: str = "person"
    aliases: tuple[str, ...] = ()
    style_opt_out_event_id: int | None = None

    @property
    def style_opt_out(self) -> bool:
        return self.style_opt_out_event_id is not None


@dataclass(frozen=True)
class _Entry:
    party: ScreenedParty
    alias: str | None  # the alias as written, or None for the party's name
    written: str  # the name, alias or surname as written
    via: str  # name | alias | surname
    tokens: tuple[str, ...]
    plain: str
    skeleton: str
    cue: str  # "" (none needed) | "before" | "around"
    max_distance: int
    given: str = ""  # a person's given name: it, or its initial, stands in for a cue


@dataclass
class _Hit:
    entry: _Entry
    method: str
    start: int
    end: int
    distance: int = 0
    cue: tuple[int, int] | None = None

    @property
    def rank(self) -> tuple[int, int, int]:
        # the whole name or an alias says more than a surname; then the surer method
        return int(self.entry.via == "surname"), _METHOD_RANK[self.method], self.start


@dataclass
class ScreenResult:
    verdict: str  # "allow" | "block"
    reasons: list[str]  # one line per party named
    # party_id, name, alias, matched_text, method (exact|spaced|leet|fuzzy|style_opt_out),
    # via (name|alias|surname), span, distance, cue
    matches: list[dict[str, Any]]
    prompt_sha256: str | None = None
    rules: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class PromptScreen:
    """Screen prompts against a fixed set of parties; build once, screen many prompts."""

    def __init__(self, parties: Iterable[ScreenedParty]) -> None:
        self.parties: dict[int, ScreenedParty] = {}
        # (party_id, name as written, reason) for names too short to screen.
        self.skipped: list[tuple[int, str, str]] = []
        self._plain: dict[str, list[_Entry]] = defaultdict(list)
        # names that block alone, by their leet reading with doubled letters made single
        self._squeezed: dict[str, list[_Entry]] = defaultdict(list)
        self._skeleton: dict[str, list[_Entry]] = defaultdict(list)
        self._fuzzy: list[_Entry] = []
        self._grams: list[frozenset[str]] = []
        # (name length, piece, offset) -> indexes into _fuzzy, for the pigeonhole filter
        # (see _add); name length -> piece lengths
        self._pieces: dict[tuple[int, str, int], list[int]] = defaultdict(list)
        self._piece_sizes: dict[int, set[int]] = defaultdict(set)
        self._fuzzy_min, self._fuzzy_max = 10**6, 0
        self._max_len = 0
        seen: set[tuple[int, str, str, str]] = set()
        for party in parties:
            if party.party_id in self.parties:
                raise ValueError(f"party {party.party_id} given twice")
            self.parties[party.party_id] = party
            for entry in self._entries(party):
                kind = "surname" if entry.via == "surname" else "name"
                key = (party.party_id, kind, entry.plain, entry.skeleton)
                if key in seen:
                    continue
                seen.add(key)
                self._add(entry)
        self._names = sum(len(v) for v in self._plain.values())
        self.style_opt_outs = sorted(p.party_id for p in self.parties.values() if p.style_opt_out)

    # -- building -------------------------------------------------------------------------

    def _entries(self, party: ScreenedParty) -> Iterator[_Entry]:
        person = party.kind in ("person", "unknown")
        labels: list[tuple[str, str | None]] = [(party.name, None)]
        labels.extend((alias, alias) for alias in party.aliases)
        for written, alias in labels:
            folded = fold(written)
            tokens = _tokens(folded, leet=False)
            plain = "".join(t.text for t in tokens)
            letters = letter_count(plain)
            if letters < MIN_NAME_CHARS:
                self.skipped.append(
                    (party.party_id, written, f"fewer than {MIN_NAME_CHARS} letters")
                )
                continue
            # A name of ordinary words ("Blue Note", "Tape") says little without a cue;
            # any other name or alias ("Maxstack", "Enya"), and a person's full name
            # ("Irving Berlin"), blocks alone.
            ordinary = all(_ordinary(t.text, in_prompt=False) for t in tokens)
            full_name = person and len(tokens) >= 2
            cue = "before" if letters < STRONG_NAME_CHARS or (ordinary and not full_name) else ""
            ideographic = any(isolating(c) for c in plain)
            distance = (
                0
                if cue or ideographic
                else name_distance(len(plain), single_token=len(tokens) == 1)
            )
            via = "name" if alias is None else "alias"
            texts = tuple(t.text for t in tokens)
            leet_tokens = _tokens(folded, leet=True)
            skeletons = {_skeleton(plain), _skeleton("".join(t.text for t in leet_tokens))}
            for skeleton in sorted(skeletons):
                yield _Entry(
                    party, alias, written, via, texts, plain, skeleton, cue, distance,
                )  # fmt: skip
            if person and len(tokens) >= 2 and not cue:
                flipped = (*texts[1:], texts[0])
                yield _Entry(
                    party, alias, written, via, flipped, "".join(flipped),
                    _skeleton("".join(flipped)), "", distance,
                )  # fmt: skip
            if len(tokens) >= 2:
                yield from self._surnames(party, alias, written, tokens, person=person)

    @staticmethod
    def _surnames(
        party: ScreenedParty,
        alias: str | None,
        written: str,
        tokens: Sequence[_Token],
        *,
        person: bool,
    ) -> Iterator[_Entry]:
        """Surname entries: for a person every token after the first and the whole surname
        ("Aubry-Carlson"), for a group or organisation every token.

        A surname that is not an ordinary word blocks alone, within the one-word edit
        distance. A person's ordinary-word surname ("Berlin") needs a cue before it or the
        initial of the given name ("I. Berlin"); an opted-out party's, a cue either side.
        A group's ordinary words are never matched alone ("Blue" of "Blue Note").
        """
        parts = list(tokens[1:] if person else tokens)
        runs: list[Sequence[_Token]] = [[token] for token in parts]
        if person and len(parts) >= 2:
            runs.append(parts)
        given = tokens[0].text if person else ""
        for run in runs:
            texts = tuple(t.text for t in run)
            plain = "".join(texts)
            if letter_count(plain) < DISTINCTIVE_TOKEN_CHARS or isolating(plain[0]):
                continue
            if all(_ordinary(t.text, in_prompt=False) for t in run):
                if not person:
                    continue
                cue = "around" if party.style_opt_out else "before"
                distance = 0
            else:
                cue = ""
                distance = name_distance(len(plain), single_token=True)
            yield _Entry(
                party, alias, written[run[0].start : run[-1].end], "surname", texts, plain,
                _skeleton(plain), cue, distance, given,
            )  # fmt: skip

    def _add(self, entry: _Entry) -> None:
        if entry.skeleton == _skeleton(entry.plain):
            self._plain[entry.plain].append(entry)
        self._skeleton[entry.skeleton].append(entry)
        if not entry.cue:
            self._squeezed[_squeeze(entry.skeleton)].append(entry)
        self._max_len = max(self._max_len, len(entry.plain), len(entry.skeleton))
        if entry.max_distance > 0:
            # Pigeonhole filter: an edit (a transposition across a cut included) breaks at
            # most two pieces, so within distance k one of 2k+1 pieces survives intact,
            # shifted by at most k.
            idx = len(self._fuzzy)
            self._fuzzy.append(entry)
            self._grams.append(_bigrams(entry.skeleton))
            self._fuzzy_min = min(self._fuzzy_min, len(entry.skeleton))
            self._fuzzy_max = max(self._fuzzy_max, len(entry.skeleton))
            for offset, piece in _pieces(entry.skeleton, 2 * entry.max_distance + 1):
                self._pieces[(len(entry.skeleton), piece, offset)].append(idx)
                self._piece_sizes[len(entry.skeleton)].add(len(piece))

    @classmethod
    def from_session(cls, session: Session, *, at: dt.datetime | None = None) -> PromptScreen:
        """Every party with its aliases, and the style-imitation opt-outs in force at ``at``."""
        at = at or utcnow()
        if at.tzinfo is None:
            raise ValueError(f"at {at.isoformat()} is naive; give a timezone-aware UTC time")
        aliases: dict[int, list[str]] = defaultdict(list)
        for party_id, alias in session.execute(
            select(PartyAlias.party_id, PartyAlias.alias).order_by(PartyAlias.id)
        ):
            aliases[party_id].append(alias)
        opted_out = style_opt_outs(session, at=at)
        parties = [
            ScreenedParty(
                party_id=party_id,
                name=name,
                kind=kind,
                aliases=tuple(aliases.get(party_id, ())),
                style_opt_out_event_id=opted_out.get(party_id),
            )
            for party_id, name, kind in session.execute(
                select(Party.id, Party.name, Party.kind).order_by(Party.id)
            )
        ]
        screen = cls(parties)
        log.info(
            "prompt screen: %d parties, %d names, %d skipped, %d style-imitation opt-outs",
            len(screen.parties),
            screen._names,
            len(screen.skipped),
            len(screen.style_opt_outs),
        )
        return screen

    def rules(self) -> dict[str, Any]:
        """The rule constants and the size of what was screened, stored with each decision."""
        return {
            "version": RULES_VERSION,
            "max_prompt_chars": MAX_PROMPT_CHARS,
            "min_name_chars": MIN_NAME_CHARS,
            "strong_name_chars": STRONG_NAME_CHARS,
            "distinctive_token_chars": DISTINCTIVE_TOKEN_CHARS,
            "max_cue_fillers": MAX_CUE_FILLERS,
            "ordinary_zipf": {"en": ENGLISH_ZIPF, **dict.fromkeys(OTHER_LANGUAGES, OTHER_ZIPF)},
            "fuzzy_distance": {"words_6_to_9": 1, "words_10": 2, "word_7_to_11": 1, "word_12": 2},
            "parties": len(self.parties),
            "names": self._names,
            "skipped_names": len(self.skipped),
            "style_opt_outs": len(self.style_opt_outs),
        }

    # -- screening ------------------------------------------------------------------------

    def screen(self, prompt: str) -> ScreenResult:
        """Allow or block ``prompt``; a block names every party found, one reason each."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
        digest = hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()
        if len(prompt) > MAX_PROMPT_CHARS:
            return ScreenResult(
                verdict="block",
                reasons=[
                    f"prompt is {len(prompt)} characters; the screen reads at most "
                    f"{MAX_PROMPT_CHARS}"
                ],
                matches=[],
                prompt_sha256=digest,
                rules=self.rules(),
            )
        folded = fold(prompt)
        best: dict[int, _Hit] = {}
        plain_tokens = _tokens(folded, leet=False)
        self._scan(plain_tokens, best, plain=True)
        leet_tokens = _tokens(folded, leet=True)
        if _has_leet_symbols(leet_tokens):
            self._scan(leet_tokens, best, plain=False)
        hits = sorted(best.values(), key=lambda h: (h.start, h.entry.party.party_id))
        matches = [self._describe(prompt, hit) for hit in hits]
        return ScreenResult(
            verdict="block" if hits else "allow",
            reasons=[self._reason(match, hit) for match, hit in zip(matches, hits, strict=True)],
            matches=matches,
            prompt_sha256=digest,
            rules=self.rules(),
        )

    def _scan(self, tokens: list[_Token], best: dict[int, _Hit], *, plain: bool) -> None:
        if not self._skeleton:
            return
        limit = self._max_len + max(len(s) for s in STYLE_SUFFIXES) + 2
        for i in range(len(tokens)):
            text = ""
            for j in range(i + 1, len(tokens) + 1):
                text += tokens[j - 1].text
                if len(text) > limit:
                    break
                window = tokens[i:j]
                for stem, suffix in _stems(text, window[-1].text):
                    if plain:
                        for entry in self._plain.get(stem, ()):
                            method = (
                                "exact" if _split_as(window, suffix) == entry.tokens else "spaced"
                            )
                            self._consider(tokens, i, j, entry, method, 0, suffix, best)
                    for entry in self._skeleton.get(_skeleton(stem), ()):
                        self._consider(tokens, i, j, entry, "leet", 0, suffix, best)
                self._fuzzy_window(tokens, i, j, _skeleton(text), best)
                self._doubled_letters(tokens, i, j, _skeleton(text), best)

    def _fuzzy_window(
        self, tokens: list[_Token], i: int, j: int, skeleton: str, best: dict[int, _Hit]
    ) -> None:
        n = len(skeleton)
        if n < 5 or not self._fuzzy:
            return
        if all(t.ordinary for t in tokens[i:j]) and not (
            _cue_before(tokens, i) or _cue_after(tokens, j)
        ):
            return  # ordinary words re-spelt never match without a cue
        if n < self._fuzzy_min - MAX_DISTANCE or n > self._fuzzy_max + MAX_DISTANCE:
            return
        candidates: set[int] = set()
        for length in range(n - MAX_DISTANCE, n + MAX_DISTANCE + 1):
            for size in self._piece_sizes.get(length, ()):
                for p in range(n - size + 1):
                    piece = skeleton[p : p + size]
                    for offset in range(max(0, p - MAX_DISTANCE), p + MAX_DISTANCE + 1):
                        found = self._pieces.get((length, piece, offset))
                        if found:
                            candidates.update(found)
        grams = _bigrams(skeleton)
        window = tokens[i:j]
        spelled_out = all(len(t.text) == 1 for t in window)
        for idx in sorted(candidates):
            entry = self._fuzzy[idx]
            # Count filter: an edit removes at most three of the name's letter pairs (a
            # transposition of "ab" in "xaby" changes xa, ab and by).
            if len(grams & self._grams[idx]) < len(self._grams[idx]) - 3 * entry.max_distance:
                continue
            held = best.get(entry.party.party_id)
            if held is not None and held.rank[:2] <= (
                int(entry.via == "surname"),
                _METHOD_RANK["fuzzy"],
            ):
                continue
            distance = osa_distance(skeleton, entry.skeleton, entry.max_distance)
            if distance is None:
                continue
            if len(window) == len(entry.tokens):
                distance = _tokenwise_distance(window, entry.tokens, entry.max_distance)
            elif len(window) > 1 and not spelled_out:
                continue  # re-spaced and misspelt at once: too loose to trust
            if distance:
                self._consider(tokens, i, j, entry, "fuzzy", distance, "", best)

    def _doubled_letters(
        self, tokens: list[_Token], i: int, j: int, skeleton: str, best: dict[int, _Hit]
    ) -> None:
        """A name that blocks alone, written with letters doubled or made single at any
        distance ("savinno", "mcrackenn"), token for token or in one token."""
        squeezed = _squeeze(skeleton)
        if len(squeezed) < DISTINCTIVE_TOKEN_CHARS:
            return
        for entry in self._squeezed.get(squeezed, ()):
            if skeleton == entry.skeleton or (j - i > 1 and j - i != len(entry.tokens)):
                continue
            distance = osa_distance(skeleton, entry.skeleton, MAX_DISTANCE)
            if distance is not None:
                self._consider(tokens, i, j, entry, "fuzzy", distance, "", best)

    def _consider(
        self,
        tokens: list[_Token],
        i: int,
        j: int,
        entry: _Entry,
        method: str,
        distance: int,
        suffix: str,
        best: dict[int, _Hit],
    ) -> None:
        window = tokens[i:j]
        if suffix and not window[-1].apostrophe:
            if window[-1].ordinary:
                return  # an ordinary word is not a name plus a suffix ("lines", "english")
            if suffix in POSSESSIVE_SUFFIXES and entry.cue and len(entry.tokens) == 1:
                return  # an ordinary-word name takes a possessive only with an apostrophe
        respaced = tuple(map(_skeleton, _split_as(window, suffix))) != tuple(
            map(_skeleton, entry.tokens)
        )
        loose = (respaced or method == "fuzzy") and all(t.ordinary for t in window)
        cue: tuple[int, int] | None = None
        if entry.cue or loose:
            cue = _cue_before(tokens, i) or _given_name(tokens, i, entry.given)
            if cue is None and (entry.cue == "around" or (loose and entry.via == "surname")):
                cue = _cue_after(tokens, j)
                if cue is None and suffix in STYLE_SUFFIXES:
                    cue = (window[-1].end - len(suffix), window[-1].end)
            if cue is None:
                return
        if entry.via == "surname" and entry.party.style_opt_out and not entry.cue:
            method = "style_opt_out"
        hit = _Hit(entry, method, window[0].start, window[-1].end, distance, cue)
        held = best.get(entry.party.party_id)
        if held is None or hit.rank < held.rank:
            best[entry.party.party_id] = hit

    # -- reporting ------------------------------------------------------------------------

    @staticmethod
    def _describe(prompt: str, hit: _Hit) -> dict[str, Any]:
        entry = hit.entry
        return {
            "party_id": entry.party.party_id,
            "name": entry.party.name,
            "alias": entry.alias,
            "matched_text": prompt[hit.start : hit.end],
            "method": hit.method,
            "via": entry.via,
            "written": entry.written,
            "span": [hit.start, hit.end],
            "distance": hit.distance,
            "cue": prompt[hit.cue[0] : hit.cue[1]] if hit.cue else None,
        }

    @staticmethod
    def _reason(match: dict[str, Any], hit: _Hit) -> str:
        text = f'names party {match["party_id"]} "{match["name"]}"'
        if match["via"] == "alias":
            text += f' by alias "{match["alias"]}"'
        elif match["via"] == "surname":
            text += f' by surname "{match["written"]}"'
        detail = [hit.method]
        if hit.method == "fuzzy":
            detail.append(f"distance {hit.distance}")
        if hit.method == "style_opt_out":
            detail.append("the party opted out of style imitation")
        elif match["cue"]:
            detail.append(f'after cue "{match["cue"]}"')
        return f'{text} (matched "{match["matched_text"]}"; {", ".join(detail)})'


def _stems(text: str, last: str) -> Iterator[tuple[str, str]]:
    """``text`` itself, then ``text`` less each allowed suffix of its last token."""
    yield text, ""
    for suffix in (*POSSESSIVE_SUFFIXES, *STYLE_SUFFIXES):
        if len(last) > len(suffix) and last.endswith(suffix):
            yield text[: -len(suffix)], suffix


def _tokenwise_distance(window: Sequence[_Token], names: Sequence[str], limit: int) -> int | None:
    """Sum of per-token distances between a window and a name of as many tokens, if <= limit."""
    total = 0
    for token, name in zip(window, names, strict=True):
        distance = osa_distance(token.skeleton, _skeleton(name), limit - total)
        if distance is None:
            return None
        total += distance
    return total


def _squeeze(text: str) -> str:
    """``text`` with each run of one letter written once ("savinno" → "savino")."""
    return "".join(c for n, c in enumerate(text) if n == 0 or c != text[n - 1])


def _split_as(window: Sequence[_Token], suffix: str) -> tuple[str, ...]:
    texts = [t.text for t in window]
    if suffix:
        texts[-1] = texts[-1][: -len(suffix)]
    return tuple(texts)


def style_opt_outs(session: Session, *, at: dt.datetime) -> dict[int, int]:
    """Party id → deciding consent event id, for parties opted out of style imitation at ``at``."""
    candidates = session.execute(
        select(ConsentEvent.party_id)
        .where(
            ConsentEvent.party_id.is_not(None),
            ConsentEvent.purpose.in_(covering_purposes(STYLE_PURPOSE)),
            ConsentEvent.effective_at <= at,
        )
        .distinct()
    ).scalars()
    opted_out: dict[int, int] = {}
    for party_id in sorted(p for p in candidates if p is not None):
        state = current_consent(session, ConsentSubject("party", party_id), STYLE_PURPOSE, at=at)
        if state.state == "opted_out" and state.event_id is not None:
            opted_out[party_id] = state.event_id
    return opted_out


def record_screen_decision(
    session: Session, generation_id: int | None, result: ScreenResult
) -> GateDecision:
    """Append one prompt-screen decision (allow or block) with its matches + an audit event."""
    if result.verdict not in ("allow", "block"):
        raise ValueError(f"verdict {result.verdict!r} is not one of allow, block")
    row = GateDecision(
        generation_id=generation_id,
        stage=STAGE,
        verdict=result.verdict,
        reasons=list(result.reasons),
        scores={
            "matches": [dict(m) for m in result.matches],
            "prompt_sha256": result.prompt_sha256,
        },
        nearest=[],
        thresholds=dict(result.rules),
    )
    session.add(row)
    session.flush()
    append_event(
        session,
        "gate.decided",
        entity="gate_decision",
        entity_id=row.id,
        payload={
            "generation_id": generation_id,
            "stage": STAGE,
            "verdict": result.verdict,
            "party_ids": [m["party_id"] for m in result.matches],
            "methods": [m["method"] for m in result.matches],
            "prompt_sha256": result.prompt_sha256,
        },
    )
    return row
