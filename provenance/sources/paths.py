"""Where a manifest row may point: inside its source's root, or at a URL of an allowed scheme.

A manifest is input, written by whoever supplied the source. If its ``path``
column were handed to fsspec as is, a row could read any file the process can
(``local:///etc/passwd``), wrap it in a caching or archive layer
(``simplecache::file:///…``, ``zip://…::…``), or make the ingest host fetch a
URL of the row's choosing. So a row's path is classified before anything is
opened:

- a plain path (relative, or absolute inside the root), or a ``file://`` /
  ``local://`` URL of one, is resolved against the root and must stay inside
  it, symlinks included (:func:`provenance.sources.base.resolve_local_path`);
- a URL whose scheme the source's configuration lists in ``allowed_schemes``
  (``--allow-scheme s3``) is passed to fsspec unchanged;
- everything else (another scheme, a chained ``a::b`` URL, a ``file://`` URL
  naming another host) is refused as ``path_escape``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# RFC 3986 scheme, then "://".
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# fsspec chains protocols with "::" ("simplecache::s3://b/k", "zip://x::file:///a.zip").
_CHAIN_HEAD = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*::")
# Schemes that name this machine's files: treated as plain paths, so the root still applies.
LOCAL_SCHEMES = ("file", "local")


@dataclass(frozen=True)
class RowTarget:
    """What a row's path names: a local path to resolve in the root, a remote URL to read,
    or a refusal (``problem`` is the quarantine reason code)."""

    local_path: str | None = None
    remote_url: str | None = None
    problem: str | None = None
    detail: str | None = None


def normalise_schemes(schemes: Iterable[str]) -> tuple[str, ...]:
    """Lower-cased, sorted, unique; raises ``ValueError`` naming a scheme that is not one."""
    out: set[str] = set()
    for scheme in schemes:
        name = scheme.strip().lower().removesuffix("://")
        if not re.fullmatch(r"[a-z][a-z0-9+.\-]*", name):
            raise ValueError(f"{scheme!r} is not a URL scheme (e.g. s3, gs, https)")
        if name in LOCAL_SCHEMES:
            raise ValueError(
                f"scheme {name!r} names local files, which are always read from inside the "
                "source's root; there is nothing to allow"
            )
        out.add(name)
    return tuple(sorted(out))


def classify_row_path(raw: str, *, allowed_schemes: Iterable[str] = ()) -> RowTarget:
    """Decide what ``raw`` (a manifest row's path) may be read as; opens nothing."""
    allowed = set(allowed_schemes)
    if _CHAIN_HEAD.match(raw) or ("::" in raw and _URL.match(raw)):
        return RowTarget(
            problem="path_escape",
            detail=f"path {_short(raw)} is a chained URL; chained URLs are never followed",
        )
    match = _URL.match(raw)
    if match is None:
        return RowTarget(local_path=raw)
    scheme = match.group(1).lower()
    rest = raw[match.end() :]
    if scheme in LOCAL_SCHEMES:
        host, slash, path = rest.partition("/")
        if host.lower() not in ("", "localhost") or not slash:
            return RowTarget(
                problem="path_escape",
                detail=f"path {_short(raw)} names a file on host {host!r}; only local files "
                "inside the source's root are read",
            )
        return RowTarget(local_path="/" + path)
    if scheme not in allowed:
        shown = ", ".join(sorted(allowed)) or "none"
        return RowTarget(
            problem="path_escape",
            detail=f"path {_short(raw)}: scheme {scheme!r} is not allowed for this source "
            f"(allowed: {shown}; an operator may allow one with --allow-scheme)",
        )
    return RowTarget(remote_url=raw)


def _short(text: str, limit: int = 300) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[:limit] + "…"
