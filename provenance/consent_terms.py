"""What every consent file and command shares: the effective-time parser and the purpose check."""

from __future__ import annotations

import datetime as dt
import re

from provenance.models.rights import CONSENT_PURPOSES


def parse_effective_at(value: str) -> dt.datetime:
    """ISO 8601 → an aware UTC datetime; a bare date is midnight UTC; naive means UTC.

    Raises :class:`ValueError` naming ``value`` when it is not an ISO 8601 date or time.
    """
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            parsed = dt.datetime.fromisoformat(text + "T00:00:00")
        else:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"effective_at {value!r} is not an ISO 8601 date or time") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def normalize_purpose(value: str) -> str:
    """``value`` as a consent purpose (case and ``-``/``_`` folded), or :class:`ValueError`."""
    purpose = value.strip().lower().replace("-", "_")
    if purpose not in CONSENT_PURPOSES:
        raise ValueError(f"purpose {purpose!r} is not one of {', '.join(CONSENT_PURPOSES)}")
    return purpose
