"""Paths under a bucket prefix (``s3://bucket/prefix``), with the rules of a local folder.

An object store has no folders and no symlinks: a key is a string, and
``a/../b`` is a key of its own that a client may normalise into ``b``, outside
the folder it was listed in, or into another prefix altogether. So a path
under a prefix is judged by its text alone: it must be relative, made of
non-empty segments none of which is ``.`` or ``..``, without NUL bytes or
backslashes. A path that breaks a rule is ``path_escape``, as a local path
leaving its root is; one that names no object is ``missing_file``.
"""

from __future__ import annotations

from typing import Any

from provenance.sources.text import has_surrogates, printable_name


def key_problem(relative: str) -> str | None:
    """Why ``relative`` (a path below a prefix) may not be read, or ``None``."""
    if has_surrogates(relative):
        return f"path {printable_name(relative)!r} is not valid UTF-8"
    if "\x00" in relative or "\\" in relative:
        return f"path {_shown(relative)} contains a NUL byte or a backslash"
    if relative.startswith(("/", "~")):
        return f"path {_shown(relative)} is absolute; paths are relative to the prefix"
    segments = relative.split("/")
    if any(s in ("", ".", "..") for s in segments):
        return f"path {_shown(relative)} has an empty, '.' or '..' segment"
    return None


def resolve_prefix_path(fs: Any, root: str, raw: str) -> tuple[str | None, str | None, str | None]:
    """Resolve a manifest path against the prefix ``root`` (``bucket/prefix`` on ``fs``).

    Returns ``(url, None, None)`` or ``(None, reason_code, detail)`` with reason
    ``path_escape`` (a rule above is broken) or ``missing_file``. A full URL of an object
    inside the prefix is taken as its relative path."""
    root = root.rstrip("/")
    full = str(fs.unstrip_protocol(root))
    relative = raw.removeprefix(full + "/") if raw.startswith(full + "/") else raw
    problem = key_problem(relative)
    if problem is not None:
        return None, "path_escape", f"{problem} (prefix {full})"
    path = f"{root}/{relative}"
    if not fs.isfile(path):
        return None, "missing_file", f"path {_shown(raw)}: no such object under {full}"
    return str(fs.unstrip_protocol(path)), None, None


def _shown(text: str, limit: int = 300) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[:limit] + "…"
