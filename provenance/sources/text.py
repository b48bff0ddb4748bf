"""Text from a source made safe to store: every fact and locator ingestion writes passes here.

Sources say what they like: file names that are not UTF-8, JSON with lone
surrogates (``"\\ud800"``), NUL and other control characters, megabytes in
one field. PostgreSQL refuses NUL in text and JSON, and its unique indexes
refuse keys over about 2.7 kB; SQLite stores anything. So that both engines
keep the same rows, and a stored value can never drive a terminal:

- undecodable bytes and lone surrogates become ``\\xNN`` / ``\\uDNNN`` escapes;
- control characters become a space in facts (titles, names) and an escape
  in locators (which must stay distinct and stable);
- a locator longer than :data:`MAX_LOCATOR_BYTES` keeps its start and gains a
  hash of the whole, so it stays unique and the same on every rerun.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

# Locators are unique keys in PostgreSQL btree indexes (limit ~2704 bytes per row).
MAX_LOCATOR_BYTES = 1024


def has_surrogates(text: str) -> bool:
    """True for a str holding surrogates: decoded with surrogateescape from bytes that are
    not UTF-8, or a JSON string with a lone ``\\uD8xx``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _escape_surrogate(c: str) -> str:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: one undecodable byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def printable_name(text: str) -> str:
    """``text`` with its surrogates written as escapes (``\\xNN`` for undecodable bytes)."""
    if not has_surrogates(text):
        return text
    return "".join(_escape_surrogate(c) if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def _is_control(c: str) -> bool:
    return unicodedata.category(c) == "Cc"


def clean_text(value: Any) -> str | None:
    """A stripped string, or None when blank. Surrogates become escapes and control
    characters (NUL, ESC, newlines, …) become spaces."""
    if value is None:
        return None
    text = printable_name(str(value))
    if any(_is_control(c) for c in text):
        text = "".join(" " if _is_control(c) else c for c in text)
    text = text.strip()
    return text or None


def locator_text(raw: str) -> str:
    """A locator that both engines store and index: escapes for surrogates and control
    characters, and at most :data:`MAX_LOCATOR_BYTES` UTF-8 bytes (a longer one keeps its
    start and ends with ``…#sha256=`` and 16 hex digits of the whole)."""
    text = printable_name(raw)
    if any(_is_control(c) for c in text):
        text = "".join(repr(c)[1:-1] if _is_control(c) else c for c in text)
    encoded = text.encode("utf-8")
    if len(encoded) <= MAX_LOCATOR_BYTES:
        return text
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    suffix = f"…#sha256={digest}"
    keep = MAX_LOCATOR_BYTES - len(suffix.encode("utf-8"))
    return encoded[:keep].decode("utf-8", "ignore") + suffix


def fit_text(text: str | None, max_chars: int) -> tuple[str | None, bool]:
    """``(text cut to max_chars, whether it was cut)``; a cut text ends with ``…``."""
    if text is None or len(text) <= max_chars:
        return text, False
    return text[: max_chars - 1] + "…", True
