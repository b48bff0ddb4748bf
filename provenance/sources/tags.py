"""Facts a file states about itself: Vorbis comments (Ogg, FLAC, Opus), ID3 (MP3), RIFF INFO.

Read with ``mutagen`` (and soundfile for WAV INFO chunks). Ingestion uses
these only where the manifest, sidecar or dataset row is silent, and records
``tags`` as the fact source.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from provenance.sources.base import clean_text

logger = logging.getLogger(__name__)

_CC_URL = re.compile(
    r"creativecommons\.org/(?:licenses/(?P<kind>[a-z-]+)/(?P<ver>\d\.\d)"
    r"|publicdomain/(?P<pd>zero)/(?P<pdver>\d\.\d))",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class FileTags:
    title: str | None = None
    artists: tuple[str, ...] = ()
    licence: str | None = None


def licence_from_url(url: str) -> str | None:
    """A Creative Commons licence URL → its SPDX id (``by-sa/3.0`` → ``CC-BY-SA-3.0``)."""
    match = _CC_URL.search(url)
    if not match:
        return None
    if match.group("pd"):
        return f"CC0-{match.group('pdver')}"
    return f"CC-{match.group('kind').upper()}-{match.group('ver')}"


def _first(values: object) -> str | None:
    if isinstance(values, list | tuple):
        for v in values:
            text = clean_text(v)
            if text:
                return text
        return None
    return clean_text(values)


def _all(values: object) -> tuple[str, ...]:
    items = values if isinstance(values, list | tuple) else [values]
    out: list[str] = []
    for v in items:
        for part in str(v).split(";"):
            text = clean_text(part)
            if text and text not in out:
                out.append(text)
    return tuple(out)


def read_tags(path: str | Path) -> FileTags:
    """Title, artists and licence from a local file's tags; empty when it has none or
    cannot be parsed (tags never make a file fail ingestion)."""
    try:
        import mutagen
    except ImportError:  # pragma: no cover - mutagen is a declared dependency
        logger.warning("mutagen is not installed: `pip install mutagen`; file tags are ignored")
        return _riff_info(path)
    try:
        audio = mutagen.File(str(path))
    except Exception as exc:
        logger.debug("no readable tags in %s: %s", path, exc)
        audio = None
    if audio is None or audio.tags is None:
        return _riff_info(path)
    tags = audio.tags
    keys = {str(k) for k in tags.keys()}
    if any(k.startswith(("TIT2", "TPE1", "TXXX", "WCOP", "TCOP")) for k in keys):
        return _id3(tags)
    return _vorbis(tags)


def _vorbis(tags: object) -> FileTags:
    fields: dict[str, list[str]] = {}
    for key, value in tags.items():  # type: ignore[attr-defined]
        fields.setdefault(str(key).lower(), []).extend(
            value if isinstance(value, list) else [value]
        )
    licence = _first(fields.get("license") or fields.get("licence") or [])
    if licence and "://" in licence:
        licence = licence_from_url(licence) or licence
    return FileTags(
        title=_first(fields.get("title") or []),
        artists=_all(fields.get("artist") or []),
        licence=licence,
    )


def _id3(tags: object) -> FileTags:
    def text(frame_id: str) -> list[str]:
        out: list[str] = []
        for frame in tags.getall(frame_id):  # type: ignore[attr-defined]
            out.extend(str(t) for t in getattr(frame, "text", []) or [])
            url = getattr(frame, "url", None)
            if url:
                out.append(str(url))
        return out

    licence = _first(text("TXXX:LICENSE") or text("TXXX:LICENCE") or text("TXXX:license"))
    if licence is None:
        for url in text("WCOP"):
            licence = licence_from_url(url)
            if licence:
                break
    if licence and "://" in licence:
        licence = licence_from_url(licence) or licence
    return FileTags(title=_first(text("TIT2")), artists=_all(text("TPE1")), licence=licence)


def _riff_info(path: str | Path) -> FileTags:
    """WAV LIST/INFO strings, which soundfile exposes (title, artist, licence)."""
    try:
        import soundfile as sf

        with sf.SoundFile(str(path)) as f:
            meta = f.copy_metadata()
    except Exception:
        return FileTags()
    return FileTags(
        title=clean_text(meta.get("title")),
        artists=_all(meta["artist"]) if meta.get("artist") else (),
        licence=clean_text(meta.get("license")),
    )
