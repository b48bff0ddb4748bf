"""The prompt screen: refuse a text prompt that names a party in the provenance database.

Every party (artist, composer, rights holder, …) is screened by its name and by each of
its aliases. A prompt that names one of them is blocked; the result says which party, by
which name, what text matched and how. The rules, in order of application:

**Reading.** Each character is decomposed (NFKD); accents and other combining marks and
invisible format characters (zero-width spaces and joiners, direction marks, soft
hyphens) are dropped; Greek and Cyrillic look-alikes and letters NFKD keeps whole
(``ø ł đ æ œ ı``) become Latin; the rest is casefolded. Fullwidth, circled and
mathematical letters fold to plain ones. Letters and digits form tokens; apostrophes
are dropped inside a token (``McCracken's`` → ``mccrackens``); everything else (spaces,
dots, hyphens, underscores, emoji) separates tokens. Each character of a script written
without spaces (CJK, kana, Hangul, Thai, Lao, Khmer, Myanmar) is a token of its own.
Names and aliases are read the same way. When the prompt has any, a second reading
keeps the leet symbols ``@ $ | !`` inside a word that has a letter (``m@x``, ``$avino``;
not a leading ``@`` handle, not a ``!`` that ends a word).

**Whole tokens.** A name matches a run of consecutive prompt tokens whose characters,
joined, spell it: ``Max McCracken``, ``maxmccracken``, ``Max.Mc-Cracken`` and
``m a x m c c r a c k e n`` all spell ``maxmccracken``. A name never matches part of a
token (``ambiently`` does not name ``Ambient``), except that the last token may carry a
style suffix (``esque``, ``ish``, ``like``, ``style``, ``inspired``) or a possessive
``s``/``es`` (for a one-word name only with an apostrophe: ``Line's`` names "Line",
``lines`` does not). The method reported is

- ``exact``: the tokens are the name's tokens (case, accents and punctuation aside);
  a person is also matched surname first (``Westlund, Mattias``);
- ``spaced``: the same characters split into tokens differently;
- ``leet``: the same once digits and leet symbols are read as letters (``0 o, 1 i,
  2 z, 3 e, 4 a, 5 s, 6 g, 7 t, 8 b, 9 g, @ a, $ s, ! i, | i``, and ``l`` is read as
  ``i`` on both sides, so ``wi11`` spells ``will``); text without a letter is never
  read this way, so ``808`` stays a number;
- ``fuzzy``: within a small edit distance (optimal string alignment: insertions,
  deletions, substitutions, adjacent transpositions) of the leet reading — see
  :func:`name_distance`: names of two or more words 1 from 6 letters and 2 from 10,
  one-word names 1 from 7 letters and 2 from 12. The prompt text must be token for
  token (``Max McCraken``), one token (``maxmccraken``) or spelt out in single
  characters; a misspelling that is also re-spaced across words is not trusted;
- ``style_opt_out``: a surname of a party that opted out of style imitation, alone.

**Ordinary words.** A name or alias with fewer than ``MIN_NAME_CHARS`` letters
(``"AM"``, ``"B"``) is not screened; it is listed in :attr:`PromptScreen.skipped`. A name
with fewer than ``STRONG_NAME_CHARS`` letters, or made only of words from
``generation/data/common_words.txt`` (``"Ambient"``, ``"Tape"``, ``"Blue Note"``), matches
only right after an imitation cue (``in the style of``, ``sounds like``, ``inspired
by``, ``à la`` …: ``CUES_BEFORE``; verbs such as "emulate" are not cues, "emulate tape
warmth" is production language) and never by edit distance. A one-word name with fewer
than ``STRONG_SINGLE_CHARS`` letters that is not a common word (``"Enya"``) matches next
to a cue: after one, or before a style word (``CUES_AFTER``: ``Enya style``, ``Enya
type beat``, ``Enyaesque``). A ``spaced`` or ``fuzzy`` match whose prompt tokens are all
common words (``max stack`` for ``"Maxstack"``) also needs a cue. Ideographic characters
count as two letters for these lengths and are never matched by edit distance.

**Surnames.** The distinctive tokens of a name — for a person every token after the
first (a given name is shared by too many people), for a group or organisation every
token — with at least ``DISTINCTIVE_TOKEN_CHARS`` letters that are not common words
match alone next to a cue (``in the style of Palestrina``, ``McCracken-style``).

**Style-imitation opt-out.** A party whose consent for ``style_imitation`` is
``opted_out`` when the screen is built (an opt-out of ``style_imitation`` or of ``any``,
resolved by :func:`provenance.consent.current_consent`) is screened more aggressively:
its surnames of at least ``OPT_OUT_SURNAME_CHARS`` letters match alone, without a cue —
exactly, spaced, in leet and within the one-word edit distance. Its shorter surnames
and its common-word names still need a cue: a party called "Tape" that opted out does
not block "tape saturation".

**Failing closed.** A prompt longer than ``MAX_PROMPT_CHARS`` characters is blocked
unread; a prompt that is not a string raises ``TypeError``; an empty prompt names nobody
and is allowed. Build the screen once (:meth:`PromptScreen.from_session`) and screen many
prompts: names are precomputed, exact forms are dictionary probes, and the edit
distance is computed only for names of similar length that share an intact piece and
enough letter pairs with the prompt text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

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
    "common_words",
    "record_screen_decision",
    "style_opt_outs",
]

STAGE = "prompt_screen"
STYLE_PURPOSE = "style_imitation"
RULES_VERSION = 1

MAX_PROMPT_CHARS = 4000
MIN_NAME_CHARS = 3  # shorter names and aliases are not screened
STRONG_NAME_CHARS = 4  # shorter names match only after a cue
STRONG_SINGLE_CHARS = 6  # shorter one-word names match only next to a cue
DISTINCTIVE_TOKEN_CHARS = 4  # shorter surname tokens are never matched alone
OPT_OUT_SURNAME_CHARS = 5  # shorter surnames of opted-out parties still need a cue
MAX_DISTANCE = 2  # the largest edit distance name_distance allows

METHODS = ("exact", "spaced", "leet", "fuzzy", "style_opt_out")
_METHOD_RANK = {method: rank for rank, method in enumerate(METHODS)}

# Imitation cues, as token sequences. Verbs such as "emulate" or "imitate" are left out on
# purpose: "emulate tape saturation" is ordinary production language.
CUES_BEFORE: tuple[tuple[str, ...], ...] = (
    ("style", "of"),
    ("styles", "of"),
    ("styled", "after"),
    ("styled", "like"),
    ("vein", "of"),
    ("manner", "of"),
    ("spirit", "of"),
    ("inspired", "by"),
    ("influenced", "by"),
    ("reminiscent", "of"),
    ("a", "la"),
    ("imitation", "of"),
    ("sounds", "like"),
    ("sound", "like"),
    ("sounding", "like"),
    ("homage", "to"),
    ("tribute", "to"),
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
_SKELETON = str.maketrans(
    {
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
        "l": "i",
    }
)
# Letters NFKD leaves whole, and Greek/Cyrillic look-alikes of Latin letters. Looked up
# before casefolding (Greek capital Mu looks like M, small mu like u) and again after.
_TRANSLITERATION = {
    "ø": "o", "Ø": "o", "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "ð": "d", "Ð": "d",
    "þ": "th", "Þ": "th", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ı": "i",
    "ħ": "h", "Ħ": "h", "ŧ": "t", "Ŧ": "t", "ƒ": "f", "ɡ": "g",
    "Α": "a", "α": "a", "Β": "b", "β": "b", "Ε": "e", "ε": "e", "Ζ": "z", "Η": "h",
    "η": "n", "Ι": "i", "ι": "i", "Κ": "k", "κ": "k", "Μ": "m", "μ": "u", "Ν": "n",
    "ν": "v", "Ο": "o", "ο": "o", "Ρ": "p", "ρ": "p", "Τ": "t", "τ": "t", "Υ": "y",
    "υ": "u", "Χ": "x", "χ": "x", "ω": "w",
    "А": "a", "а": "a", "В": "b", "в": "b", "Е": "e", "е": "e", "Ё": "e", "ё": "e",
    "К": "k", "к": "k", "М": "m", "м": "m", "Н": "h", "н": "h", "О": "o", "о": "o",
    "Р": "p", "р": "p", "С": "c", "с": "c", "Т": "t", "т": "t", "У": "y", "у": "y",
    "Х": "x", "х": "x", "І": "i", "і": "i", "Ї": "i", "ї": "i", "Ј": "j", "ј": "j",
    "Ѕ": "s", "ѕ": "s", "ԁ": "d", "һ": "h", "Һ": "h", "ӏ": "l", "Ӏ": "l", "Ԛ": "q",
    "ԛ": "q", "Ԝ": "w", "ԝ": "w",
}  # fmt: skip
_ISOLATING_SCRIPTS = (
    "CJK UNIFIED IDEOGRAPH",
    "CJK COMPATIBILITY IDEOGRAPH",
    "HIRAGANA",
    "KATAKANA",
    "HANGUL",
    "THAI ",
    "LAO ",
    "KHMER ",
    "MYANMAR ",
)


@cache
def common_words() -> frozenset[str]:
    """The ordinary words of music prompts (``generation/data/common_words.txt``)."""
    text = (resources.files("generation") / "data" / "common_words.txt").read_text("utf-8")
    words: set[str] = set()
    for line in text.splitlines():
        for word in line.split("#", 1)[0].split():
            words.add(word.strip().lower())
    return frozenset(words)


@cache
def _common_skeletons() -> frozenset[str]:
    return frozenset(_skeleton(word) for word in common_words())


@cache
def _isolating(char: str) -> bool:
    """A character of a script written without spaces between words."""
    return ord(char) > 0x0E00 and unicodedata.name(char, "").startswith(_ISOLATING_SCRIPTS)


def _skeleton(text: str) -> str:
    """The leet reading: digits and leet symbols as letters, ``l`` as ``i``; no letter: as is."""
    if not any(c.isalpha() for c in text):
        return text
    return text.translate(_SKELETON)


def _letters(text: str) -> int:
    """Letter count for the length rules; an ideographic character counts as two."""
    return sum(2 if _isolating(c) else 1 for c in text)


def _fold(text: str) -> list[tuple[str, int]]:
    """``text`` as folded characters, each with the index of the character it came from."""
    folded: list[tuple[str, int]] = []
    for index, char in enumerate(text):
        for part in unicodedata.normalize("NFKD", char):
            if unicodedata.category(part) in ("Mn", "Me", "Cf"):
                continue
            for lowered in _TRANSLITERATION.get(part, part).casefold():
                for piece in unicodedata.normalize("NFKD", lowered):
                    if unicodedata.category(piece) in ("Mn", "Me", "Cf"):
                        continue
                    for out in _TRANSLITERATION.get(piece, piece):
                        folded.append((out, index))
    return folded


@dataclass(frozen=True)
class _Token:
    text: str  # folded letters and digits (and leet symbols in the leet reading)
    start: int  # span in the original text
    end: int
    skeleton: str
    common: bool  # an ordinary word (see common_words), two letters or more
    apostrophe: bool = False  # an apostrophe was dropped inside or right after it


def _token(text: str, start: int, end: int, apostrophe: bool = False) -> _Token:
    skeleton = _skeleton(text)
    common = len(text) >= 2 and skeleton in _common_skeletons()
    return _Token(text, start, end, skeleton, common, apostrophe)


def _tokens(folded: Sequence[tuple[str, int]], *, leet: bool) -> list[_Token]:
    """Whole tokens of a folded text; with ``leet``, leet symbols inside words are letters."""
    tokens: list[_Token] = []
    chars: list[str] = []
    start = end = 0
    apostrophe = False

    def flush() -> None:
        nonlocal chars, apostrophe
        if chars:
            tokens.append(_token("".join(chars), start, end, apostrophe))
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
        if char.isalnum() and _isolating(char):
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
            flush()
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
    """The span of an imitation cue ending right before token ``i``, if any."""
    for cue in _cue_skeletons("before"):
        n = len(cue)
        if i >= n and tuple(t.skeleton for t in tokens[i - n : i]) == cue:
            return tokens[i - n].start, tokens[i - 1].end
    return None


def _cue_after(tokens: Sequence[_Token], j: int) -> tuple[int, int] | None:
    """The span of a style word starting at token ``j``, if any."""
    for cue in _cue_skeletons("after"):
        n = len(cue)
        if j + n <= len(tokens) and tuple(t.skeleton for t in tokens[j : j + n]) == cue:
            return tokens[j].start, tokens[j + n - 1].end
    return None


def osa_distance(a: str, b: str, limit: int) -> int | None:
    """Optimal string alignment distance between ``a`` and ``b`` if at most ``limit``, else None.

    Only the diagonal band ``|i - j| <= limit`` is computed (cells outside it exceed the
    limit), and the scan stops as soon as a whole row exceeds ``limit``.
    """
    if abs(len(a) - len(b)) > limit:
        return None
    if a == b:
        return 0
    over = limit + 1
    width = len(b)
    before: list[int] = []
    previous = [j if j <= limit else over for j in range(width + 1)]
    for i in range(1, len(a) + 1):
        current = [over] * (width + 1)
        if i <= limit:
            current[0] = i
        row_min = current[0]
        for j in range(max(1, i - limit), min(width, i + limit) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            value = previous[j - 1] + cost
            if previous[j] + 1 < value:
                value = previous[j] + 1
            if current[j - 1] + 1 < value:
                value = current[j - 1] + 1
            if (
                i > 1
                and j > 1
                and a[i - 1] == b[j - 2]
                and a[i - 2] == b[j - 1]
                and before[j - 2] + 1 < value
            ):
                value = before[j - 2] + 1
            current[j] = value
            if value < row_min:
                row_min = value
        if row_min > limit:
            return None
        before, previous = previous, current
    return previous[width] if previous[width] <= limit else None


def name_distance(letters: int, *, single_token: bool) -> int:
    """Edit distance allowed for a name, alias or surname with ``letters`` letters.

    One-word names get less room: a one-word name near an ordinary word is more likely
    than a two-word one.
    """
    if single_token:
        return 2 if letters >= 12 else 1 if letters >= 7 else 0
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


@dataclass
class _Hit:
    entry: _Entry
    method: str
    start: int
    end: int
    distance: int = 0
    cue: tuple[int, int] | None = None

    @property
    def rank(self) -> tuple[int, int]:
        return _METHOD_RANK[self.method], self.start


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
            folded = _fold(written)
            tokens = _tokens(folded, leet=False)
            plain = "".join(t.text for t in tokens)
            letters = _letters(plain)
            if letters < MIN_NAME_CHARS:
                self.skipped.append(
                    (party.party_id, written, f"fewer than {MIN_NAME_CHARS} letters")
                )
                continue
            if letters < STRONG_NAME_CHARS or all(t.common for t in tokens):
                cue = "before"
            elif len(tokens) == 1 and letters < STRONG_SINGLE_CHARS:
                cue = "around"
            else:
                cue = ""
            ideographic = any(_isolating(c) for c in plain)
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
            if len(tokens) < 2:
                continue
            for token in tokens[1:] if person else tokens:
                if (
                    len(token.text) < DISTINCTIVE_TOKEN_CHARS
                    or token.common
                    or _isolating(token.text[0])
                ):
                    continue
                aggressive = party.style_opt_out and len(token.text) >= OPT_OUT_SURNAME_CHARS
                yield _Entry(
                    party,
                    alias,
                    written[token.start : token.end],
                    "surname",
                    (token.text,),
                    token.text,
                    _skeleton(token.text),
                    "" if aggressive else "around",
                    name_distance(len(token.text), single_token=True) if aggressive else 0,
                )

    def _add(self, entry: _Entry) -> None:
        if entry.skeleton == _skeleton(entry.plain):
            self._plain[entry.plain].append(entry)
        self._skeleton[entry.skeleton].append(entry)
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
            "strong_single_chars": STRONG_SINGLE_CHARS,
            "distinctive_token_chars": DISTINCTIVE_TOKEN_CHARS,
            "opt_out_surname_chars": OPT_OUT_SURNAME_CHARS,
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
        folded = _fold(prompt)
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

    def _fuzzy_window(
        self, tokens: list[_Token], i: int, j: int, skeleton: str, best: dict[int, _Hit]
    ) -> None:
        n = len(skeleton)
        if n < 5 or not self._fuzzy:
            return
        if all(t.common for t in tokens[i:j]) and not (
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
            if held is not None and held.rank[0] <= _METHOD_RANK["fuzzy"]:
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
        if suffix in POSSESSIVE_SUFFIXES and len(entry.tokens) == 1 and not window[-1].apostrophe:
            return  # "lines" is not a possessive of "Line"; "Line's" is
        respaced = tuple(map(_skeleton, _split_as(window, suffix))) != tuple(
            map(_skeleton, entry.tokens)
        )
        loose = (respaced or method == "fuzzy") and all(t.common for t in window)
        cue: tuple[int, int] | None = None
        if entry.cue or loose:
            cue = _cue_before(tokens, i)
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
