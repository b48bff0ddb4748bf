"""A folder of audio files (local path or any fsspec URI), with optional ``NAME.json`` sidecars.

A sidecar next to ``song.ogg`` is ``song.ogg.json`` or ``song.json``; it holds
the same fields as a manifest row (title, artists, licence, consent,
source_url). Hidden files, sidecars and ``metadata.csv/jsonl`` are not items.
Locally, symlinks that lead out of the folder are reported, not followed; under
a bucket prefix, a key with an empty, ``.`` or ``..`` segment is reported as
``path_escape`` (:mod:`provenance.sources.prefix_paths`). A
sidecar that cannot be used (not JSON, not an object, over
:data:`MAX_SIDECAR_BYTES`, a symlink out of the folder) is ignored and the
item is flagged ``unreadable_sidecar``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from provenance.sources.base import (
    METADATA_FILES,
    SourceError,
    SourceItem,
    facts_from_row,
    has_surrogates,
    is_within,
    printable_name,
)
from provenance.sources.prefix_paths import key_problem
from provenance.sources.text import locator_text

logger = logging.getLogger(__name__)

# A sidecar holds a few facts; anything bigger is not read.
MAX_SIDECAR_BYTES = 1024**2
SIDECAR_FLAG = "unreadable_sidecar"


class FolderSource:
    kind = "folder"

    def __init__(self, root_uri: str) -> None:
        fs, root = fsspec.core.url_to_fs(root_uri)
        self.fs = fs
        self.local = isinstance(fs, LocalFileSystem)
        if self.local:
            self.root = Path(root).resolve()
            self.uri = str(self.root)
        else:
            self.root = Path(root)
            self.uri = str(fs.unstrip_protocol(root.rstrip("/")))
        if not fs.isdir(str(self.root) if self.local else root):
            raise SourceError(f"source folder {root_uri!r} does not exist or is not a folder")
        self._root_str = root.rstrip("/")

    @property
    def config(self) -> dict[str, Any]:
        return {"root": self.uri}

    def items(self) -> Iterator[SourceItem]:
        if self.local:
            yield from self._local_items()
        else:
            yield from self._remote_items()

    # ------------------------------------------------------------------ local
    def _local_items(self) -> Iterator[SourceItem]:
        entries: list[tuple[str, Path]] = []  # (relative posix, path)
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            here = Path(dirpath)
            keep_dirs = []
            for d in sorted(dirnames):
                full = here / d
                if d.startswith("."):
                    continue
                if full.is_symlink():
                    entries.append((self._rel(full), full))  # judged below, never walked
                    continue
                keep_dirs.append(d)
            dirnames[:] = keep_dirs
            names = set(filenames)
            for name in sorted(filenames):
                if name.startswith(".") or _is_sidecar(name, names) or name in METADATA_FILES:
                    continue
                entries.append((self._rel(here / name), here / name))
        for rel, path in sorted(entries, key=lambda e: e[0]):
            try:
                yield self._local_item(rel, path)
            except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
                yield SourceItem(
                    locator=locator_text(rel),
                    uri=None,
                    problem="unreadable",
                    problem_detail=f"{type(exc).__name__}: {exc}"[:1000],
                )

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _local_item(self, rel: str, path: Path) -> SourceItem:
        if has_surrogates(rel):
            return SourceItem(
                locator=locator_text(rel),
                uri=None,
                problem="non_utf8_name",
                problem_detail=f"file name {printable_name(rel)!r} is not valid UTF-8"[:1000],
            )
        rel = locator_text(rel)
        if path.is_symlink():
            real = path.resolve()
            if not is_within(real, self.root):
                return SourceItem(
                    locator=rel,
                    uri=None,
                    problem="symlink_escape",
                    problem_detail=f"{rel} is a symlink to {locator_text(str(real))}, outside "
                    "the folder",
                )
            if not real.exists():
                return SourceItem(
                    locator=rel,
                    uri=None,
                    problem="missing_file",
                    problem_detail=f"{rel} is a dangling symlink",
                )
            if real.is_dir():
                return SourceItem(
                    locator=rel,
                    uri=None,
                    problem="symlink_escape",
                    problem_detail=f"{rel} is a symlinked folder; symlinked folders are not "
                    "followed",
                )
            path = real
        facts = self._sidecar_facts(path)
        return SourceItem(locator=rel, uri=str(path), **facts)

    def _sidecar_facts(self, path: Path) -> dict[str, Any]:
        for candidate in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
            if candidate == path or not candidate.is_file():
                continue
            try:
                if not is_within(candidate.resolve(), self.root):
                    raise ValueError("the sidecar is a symlink out of the folder")
                if candidate.stat().st_size > MAX_SIDECAR_BYTES:
                    raise ValueError(f"the sidecar is over {MAX_SIDECAR_BYTES} bytes")
                row = json.loads(candidate.read_text(encoding="utf-8"))
            except (ValueError, OSError, RuntimeError, RecursionError) as exc:
                logger.warning("ignoring unreadable sidecar %s: %s", candidate, type(exc).__name__)
                return {"flags": (SIDECAR_FLAG,)}
            if not isinstance(row, dict):
                logger.warning("ignoring sidecar %s: not a JSON object", candidate)
                return {"flags": (SIDECAR_FLAG,)}
            return facts_from_row(row, "sidecar")
        return {}

    # ------------------------------------------------------------------ fsspec
    def _remote_items(self) -> Iterator[SourceItem]:
        paths = sorted(str(p) for p in self.fs.find(self._root_str, withdirs=False))
        names_by_dir: dict[str, set[str]] = {}
        for p in paths:
            d, _, n = p.rpartition("/")
            names_by_dir.setdefault(d, set()).add(n)
        for p in paths:
            d, _, name = p.rpartition("/")
            rel = p[len(self._root_str) + 1 :]
            if name.startswith(".") or name in METADATA_FILES or _is_sidecar(name, names_by_dir[d]):
                continue
            problem = key_problem(rel)
            if problem is not None:  # a key such as "a/../b" is never read
                yield SourceItem(
                    locator=locator_text(rel),
                    uri=None,
                    problem="path_escape",
                    problem_detail=f"{problem} (folder {self.uri})"[:1000],
                )
                continue
            facts: dict[str, Any] = {}
            stem = name.rsplit(".", 1)[0]
            for side in (f"{d}/{name}.json", f"{d}/{stem}.json"):
                if side != p and side.rpartition("/")[2] in names_by_dir[d]:
                    try:
                        with self.fs.open(side, "rb") as f:
                            row = json.loads(f.read(MAX_SIDECAR_BYTES + 1).decode("utf-8"))
                        if not isinstance(row, dict):
                            raise ValueError("not a JSON object")
                        facts = facts_from_row(row, "sidecar")
                    except (ValueError, OSError, RecursionError) as exc:
                        logger.warning("ignoring unreadable sidecar %s: %s", side, exc)
                        facts = {"flags": (SIDECAR_FLAG,)}
                    break
            yield SourceItem(
                locator=locator_text(rel), uri=str(self.fs.unstrip_protocol(p)), **facts
            )


def _is_sidecar(name: str, siblings: set[str]) -> bool:
    """``x.ogg.json`` beside ``x.ogg``, or ``x.json`` beside some ``x.<ext>``."""
    if not name.lower().endswith(".json"):
        return False
    base = name[:-5]
    if base in siblings:
        return True
    return any(s != name and s.rsplit(".", 1)[0] == base for s in siblings)
