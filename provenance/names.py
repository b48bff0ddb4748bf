"""Name folding: the identity key for parties and aliases, and the prompt screen's first step."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["fold_case_and_accents", "normalize_name"]

# Anything that is neither a word character nor whitespace, plus the underscore
# (which ``\w`` counts as a word character), becomes a space.
_NON_WORD = re.compile(r"[^\w\s]|_")


def _without_combining_marks(text: str) -> str:
    return "".join(c for c in text if not unicodedata.combining(c))


def fold_case_and_accents(text: str) -> str:
    """``text`` without accents or case: ``"Beyoncé STRAUß"`` → ``"beyonce strauss"``.

    NFKD-decompose and drop combining marks (accents, and every other character with a
    combining class, such as viramas), casefold (so ``ß`` → ``ss``). Punctuation and
    spacing are kept. Folding a string is folding each of its characters in turn.
    """
    unaccented = _without_combining_marks(unicodedata.normalize("NFKD", text))
    # NFKD again after casefold: casefolding can produce new decomposable characters.
    return _without_combining_marks(unicodedata.normalize("NFKD", unaccented.casefold()))


def normalize_name(text: str) -> str:
    """Fold ``text`` to a comparable key.

    :func:`fold_case_and_accents`, then punctuation and symbols become spaces, runs of
    whitespace collapse, and the ends are stripped.
    ``"  Beyoncé-Knowles "`` → ``"beyonce knowles"``.
    """
    return " ".join(_NON_WORD.sub(" ", fold_case_and_accents(text)).split())
