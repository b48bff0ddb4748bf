"""Prompts and names read as tokens of folded letters, plainly and as leet, with suffixes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from generation.ordinary_words import is_english_word, is_ordinary
from generation.text_folding import isolating

__all__ = [
    "POSSESSIVE_SUFFIXES",
    "STYLE_SUFFIXES",
    "Token",
    "has_leet_symbols",
    "ordinary_word",
    "skeleton",
    "split_as",
    "stems",
    "tokens_of",
]

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


def skeleton(text: str) -> str:
    """The leet reading: digits and leet symbols as letters, ``l`` as ``i``; no letter: as is."""
    if not any(c.isalpha() for c in text):
        return text
    return text.translate(_SKELETON)


def ordinary_word(text: str, *, in_prompt: bool) -> bool:
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
class Token:
    text: str  # folded letters and digits (and leet symbols in the leet reading)
    start: int  # span in the original text
    end: int
    skeleton: str
    ordinary: bool  # an ordinary English word (see ordinary_word)
    apostrophe: bool = False  # an apostrophe was dropped inside or right after it
    dotted: bool = False  # a full stop follows it ("D." of "D. Kaufman")


def _token(
    text: str, start: int, end: int, apostrophe: bool = False, dotted: bool = False
) -> Token:
    return Token(
        text, start, end, skeleton(text), ordinary_word(text, in_prompt=True), apostrophe, dotted
    )


def tokens_of(folded: Sequence[tuple[str, int]], *, leet: bool) -> list[Token]:
    """Whole tokens of a folded text; with ``leet``, leet symbols inside words are letters."""
    tokens: list[Token] = []
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


def has_leet_symbols(tokens: Sequence[Token]) -> bool:
    return any(c in _LEET_SYMBOLS for t in tokens for c in t.text)


def stems(text: str, last: str) -> Iterator[tuple[str, str]]:
    """``text`` itself, then ``text`` less each allowed suffix of its last token."""
    yield text, ""
    for suffix in (*POSSESSIVE_SUFFIXES, *STYLE_SUFFIXES):
        if len(last) > len(suffix) and last.endswith(suffix):
            yield text[: -len(suffix)], suffix


def split_as(window: Sequence[Token], suffix: str) -> tuple[str, ...]:
    """The texts of ``window``'s tokens, the last one less ``suffix``."""
    texts = [t.text for t in window]
    if suffix:
        texts[-1] = texts[-1][: -len(suffix)]
    return tuple(texts)
