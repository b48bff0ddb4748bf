"""Name normalisation: the identity key for parties, aliases and prompt screening."""

from __future__ import annotations

import re
import unicodedata

# Anything that is neither a word character nor whitespace, plus the underscore
# (which ``\w`` counts as a word character), becomes a space.
_NON_WORD = re.compile(r"[^\w\s]|_")


def normalize_name(text: str) -> str:
    """Fold ``text`` to a comparable key.

    NFKD-decompose and drop combining marks (accents), casefold (so ``ß`` → ``ss``),
    turn punctuation and symbols into spaces, collapse runs of whitespace, strip.
    ``"  Beyoncé-Knowles "`` → ``"beyonce knowles"``.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    unaccented = "".join(c for c in decomposed if not unicodedata.combining(c))
    # NFKD again after casefold: casefolding can produce new decomposable characters.
    folded = unicodedata.normalize("NFKD", unaccented.casefold())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return " ".join(_NON_WORD.sub(" ", folded).split())
