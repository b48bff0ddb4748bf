"""What every source adapter yields (:class:`SourceItem`) and how a source is opened.

An adapter lists a source's items in a stable order. Items it already knows
to be unusable (a path escaping the root, a missing file, a repeated manifest
row, a name that is not UTF-8) carry a ``problem`` reason code instead of a
readable ``uri``; ingestion quarantines them without touching any bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from provenance.models.rights import CONSENT_PURPOSES
from provenance.sources.text import clean_text, has_surrogates, printable_name

__all__ = ["clean_text", "has_surrogates", "printable_name"]  # re-exported for older imports

# Field names a manifest, sidecar or dataset row may use for each fact (first match wins).
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "path": ("path", "uri", "file", "file_name", "filename"),
    "title": ("title", "name"),
    "artists": ("artists", "artist"),
    "licence": ("licence", "license", "spdx", "licence_spdx", "license_spdx"),
    "consent": ("consent",),
    "source_url": ("source_url", "url"),
}
# Names never treated as audio candidates in a folder.
METADATA_FILES = ("metadata.csv", "metadata.jsonl")


class SourceError(ValueError):
    """A source that cannot be read at all (its items are not even listable)."""

    reason_code = "unreadable"


class EmptyManifestError(SourceError):
    """A manifest with no data rows: nothing to ingest, and almost certainly a mistake."""

    reason_code = "empty_manifest"


@dataclass(frozen=True)
class SourceItem:
    """One file a source offers, with whatever facts the source states about it.

    ``fact_sources`` names where each fact came from (``manifest``, ``sidecar``,
    ``dataset``, ``tags``), keyed by ``title``, ``artists``, ``licence``,
    ``consent``, ``source_url``.
    """

    locator: str  # stable identity inside the source: relative path, or split/row
    uri: str | None  # local path or fsspec URI of the bytes; None when ``problem`` is set
    title: str | None = None
    artists: tuple[str, ...] = ()
    licence: str | None = None
    consent: str | None = None
    source_url: str | None = None
    fact_sources: Mapping[str, str] = field(default_factory=dict)
    problem: str | None = None  # quarantine reason code decided by the adapter
    problem_detail: str | None = None
    flags: tuple[str, ...] = ()  # kept, but something about its facts was off (see FLAGS)

    def with_facts(self, **facts: Any) -> SourceItem:
        return replace(self, **facts)


class SourceAdapter(Protocol):
    """A readable source. ``uri`` identifies it in the ``sources`` table."""

    kind: str
    uri: str

    @property
    def config(self) -> dict[str, Any]: ...

    def items(self) -> Iterator[SourceItem]:
        """Every item, in a stable order (sorted by locator within the source's structure)."""
        ...


def split_artists(value: Any) -> tuple[str, ...]:
    """``"A; B"`` or ``["A", "B"]`` → ``("A", "B")``, blanks dropped, order and case kept."""
    if value is None:
        return ()
    parts = value if isinstance(value, list | tuple) else str(value).split(";")
    return tuple(p for p in (clean_text(str(x)) for x in parts) if p)


def pick(row: Mapping[str, Any], fact: str) -> Any:
    """The first non-blank value among ``fact``'s aliases in ``row`` (case-insensitive keys)."""
    lowered = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    for name in FIELD_ALIASES[fact]:
        value = lowered.get(name)
        if value is not None and (not isinstance(value, str) or value.strip()):
            return value
    return None


def facts_from_row(row: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """SourceItem fields (title, artists, licence, consent, source_url, fact_sources) from a
    manifest row, sidecar or dataset row; ``origin`` is recorded as each fact's source."""
    facts: dict[str, Any] = {}
    sources: dict[str, str] = {}
    title = clean_text(pick(row, "title"))
    if title:
        facts["title"], sources["title"] = title, origin
    artists = split_artists(pick(row, "artists"))
    if artists:
        facts["artists"], sources["artists"] = artists, origin
    for name in ("licence", "consent", "source_url"):
        value = clean_text(pick(row, name))
        if value:
            facts[name], sources[name] = value, origin
    facts["fact_sources"] = sources
    return facts


def is_within(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def resolve_local_path(root: Path, raw: str) -> tuple[Path | None, str | None, str | None]:
    """Resolve a manifest path against ``root`` (already resolved).

    Returns ``(real_path, None, None)`` or ``(None, reason_code, detail)`` with
    reason ``non_utf8_name``, ``path_escape`` (the path itself leaves the root),
    ``symlink_escape`` (a symlink on the way leads out), ``missing_file``, or
    ``unreadable`` (a name too long for the file system, a symlink loop).
    """
    if has_surrogates(raw):
        return None, "non_utf8_name", f"path {_shown(printable_name(raw))} is not valid UTF-8"
    if "\x00" in raw:
        return None, "path_escape", f"path {_shown(raw)} contains a NUL byte"
    given = Path(raw).expanduser() if raw.startswith("~") else Path(raw)
    lexical = Path(os.path.normpath(given if given.is_absolute() else root / given))
    if not is_within(lexical, root):
        return None, "path_escape", f"path {_shown(raw)} resolves outside the root {root}"
    try:
        real = lexical.resolve()
        if not is_within(real, root):
            return (
                None,
                "symlink_escape",
                f"path {_shown(raw)} follows a symlink to {_shown(str(real))}, outside the "
                f"root {root}",
            )
        if not real.exists():
            what = "a dangling symlink" if os.path.lexists(lexical) else "no such file"
            return None, "missing_file", f"path {_shown(raw)}: {what}"
    except (OSError, RuntimeError) as exc:  # ENAMETOOLONG, ELOOP (RuntimeError before 3.13)
        return None, "unreadable", f"path {_shown(raw)}: {type(exc).__name__}: {exc}"[:1000]
    return real, None, None


def _shown(text: str, limit: int = 300) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[:limit] + "…"


def open_source(
    source_uri: str,
    *,
    manifest: str | None = None,
    root: str | None = None,
    allowed_schemes: Iterable[str] = (),
) -> SourceAdapter:
    """The adapter for ``source_uri``.

    ``allowed_schemes`` lists the URL schemes a manifest's rows may name besides paths
    inside the root (``("s3", "https")``); none by default.

    - ``manifest`` given: that CSV/JSONL manifest, its paths relative to ``source_uri``.
    - ``source_uri`` is a ``.csv``/``.jsonl`` file: a manifest, paths relative to its
      folder (or ``root``).
    - a folder written by ``Dataset.save_to_disk`` (``dataset_info.json`` or
      ``dataset_dict.json``): a Hugging Face dataset with an Audio column.
    - a folder with ``metadata.csv``/``metadata.jsonl``: an ``audiofolder``.
    - any other folder (local path or fsspec URI): every file, with optional sidecars.
    """
    from provenance.sources.folder import FolderSource
    from provenance.sources.hf_dataset import HFDatasetSource, is_saved_dataset
    from provenance.sources.manifest import ManifestSource

    schemes = tuple(allowed_schemes)
    if manifest is not None:
        return ManifestSource(manifest, root=root or source_uri, allowed_schemes=schemes)
    lowered = source_uri.lower()
    if lowered.endswith((".csv", ".jsonl", ".ndjson")):
        return ManifestSource(source_uri, root=root, allowed_schemes=schemes)
    if "://" not in source_uri or source_uri.startswith("file://"):
        local = Path(source_uri.removeprefix("file://")).expanduser()
        if not local.exists():
            raise SourceError(f"source {source_uri!r} does not exist")
        if local.is_dir():
            if is_saved_dataset(local):
                return HFDatasetSource(str(local))
            for name in METADATA_FILES:
                if (local / name).is_file():
                    return ManifestSource(
                        str(local / name),
                        root=str(local),
                        kind="audiofolder",
                        allowed_schemes=schemes,
                    )
        elif local.is_file():
            raise SourceError(
                f"source {source_uri!r} is a file; give a folder, a dataset folder, or a "
                ".csv/.jsonl manifest"
            )
    return FolderSource(source_uri)


_CONSENT_WORDS = {
    "opt_in": "opt_in",
    "optin": "opt_in",
    "yes": "opt_in",
    "true": "opt_in",
    "granted": "opt_in",
    "opt_out": "opt_out",
    "optout": "opt_out",
    "no": "opt_out",
    "false": "opt_out",
    "withdrawn": "opt_out",
    "denied": "opt_out",
}


def parse_consent(value: str) -> list[tuple[str, str]]:
    """A manifest consent cell → ``[(action, purpose)]``.

    Grammar: ``;``-separated claims, each ``ACTION`` or ``ACTION:PURPOSE`` with
    ACTION ``opt_in``/``opt_out`` (also ``opt-in``, ``yes``/``no``) and PURPOSE
    one of ``any`` (default), ``training``, ``commercial_training``,
    ``style_imitation``. Blank → no claim. Anything else raises ``ValueError``.
    """
    claims: list[tuple[str, str]] = []
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        word, _, purpose = part.partition(":")
        action = _CONSENT_WORDS.get(word.strip().lower().replace("-", "_").replace(" ", "_"))
        purpose = purpose.strip().lower().replace("-", "_") or "any"
        if action is None:
            raise ValueError(
                f"consent {value!r}: {word.strip()!r} is not an action; use opt_in or opt_out"
            )
        if purpose not in CONSENT_PURPOSES:
            raise ValueError(
                f"consent {value!r}: purpose {purpose!r} is not one of "
                + ", ".join(CONSENT_PURPOSES)
            )
        if (action, purpose) not in claims:
            claims.append((action, purpose))
    return claims
