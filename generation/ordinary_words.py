"""Is a word ordinary? Judged by its Zipf frequency in ``wordfreq``'s word lists.

A name part that is an ordinary word ("Berlin", "Tape", "Stack") says little on its own:
the prompt screen matches it only with a cue or with the rest of the name. A name part is
ordinary (:func:`is_ordinary`) when its Zipf frequency (log10 of its count per billion
words) is at least ``ENGLISH_ZIPF`` in English or at least ``OTHER_ZIPF`` in one of
``OTHER_LANGUAGES``: names come from everywhere, and the other languages get a higher bar
because surnames borrow frequency in every language (``Kaufman``, ``Reilly`` and
``Carlson`` are 2.5–3.4 everywhere). A word of a prompt is judged in the prompt's language,
English (:func:`is_english_word`): "kaufmann" is a German word, but in an English prompt it
is a misspelt surname. ``docs/prompt-screen.md`` gives the figures behind the thresholds.
"""

from __future__ import annotations

from functools import cache

__all__ = [
    "ENGLISH_ZIPF",
    "OTHER_LANGUAGES",
    "OTHER_ZIPF",
    "is_english_word",
    "is_ordinary",
    "zipf",
]

ENGLISH_ZIPF = 3.5  # "ambient" 3.6, "chords" 3.5 are ordinary; "carlson" 3.4 is not
OTHER_ZIPF = 4.0  # "kaufmann" (de) 4.1 and "berlin" are ordinary; "domina" (es, it) 3.8 is not
OTHER_LANGUAGES = ("de", "fr", "es", "it", "nl", "pt", "sv")


@cache
def zipf(word: str, language: str) -> float:
    """Zipf frequency of ``word`` (already folded to lower case) in ``language``."""
    from wordfreq import zipf_frequency

    return float(zipf_frequency(word, language))


@cache
def is_english_word(word: str) -> bool:
    """Whether ``word`` (folded, one token) is an ordinary word of English."""
    return zipf(word, "en") >= ENGLISH_ZIPF


@cache
def is_ordinary(word: str) -> bool:
    """Whether ``word`` (folded, one token) is an ordinary word of English or a neighbour."""
    if is_english_word(word):
        return True
    return any(zipf(word, language) >= OTHER_ZIPF for language in OTHER_LANGUAGES)
