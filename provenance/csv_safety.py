"""CSV cells a spreadsheet will show as text instead of running as a formula.

Stored text (titles, artist names, licences, evidence) comes from manifests and
registries we do not control. A cell such as ``=HYPERLINK("http://evil…")`` or
``+cmd|' /C calc'!A0`` is a formula to Excel, LibreOffice and Google Sheets, so
every CSV the project writes passes its rows through :func:`safe_row`, which
prefixes such strings with ``'`` (OWASP, "CSV Injection").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# A string that is only a number (e.g. "-0.125", "+3e-4") cannot carry a formula;
# left alone, a spreadsheet still reads it as the number it is.
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: Any) -> Any:
    """``value`` as a CSV cell: a string a spreadsheet would read as a formula gets a ``'``.

    Non-strings (numbers, ``None``) are returned as they are.
    """
    if (
        isinstance(value, str)
        and value.startswith(FORMULA_PREFIXES)
        and not _PLAIN_NUMBER.fullmatch(value)
    ):
        return "'" + value
    return value


def safe_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``csv.DictWriter`` row with every cell passed through :func:`safe_cell`."""
    return {key: safe_cell(value) for key, value in row.items()}
