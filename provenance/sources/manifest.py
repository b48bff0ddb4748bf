"""A CSV or JSONL manifest: one row per file with path/uri, title, artists (``;``-separated),
licence, consent and source url.

Local paths are resolved against the root (the manifest's folder unless
given) and must stay inside it, symlinks included. A root that is a bucket
prefix (``s3://bucket/prefix``, or the folder of an ``s3://`` manifest) takes
paths relative to it under the same rules, judged on the key's text
(:mod:`provenance.sources.prefix_paths`). A URL is read only when
its scheme is among the source's ``allowed_schemes`` (none by default); any
other URL, and any chained one, is quarantined as ``path_escape``
(:mod:`provenance.sources.paths`). A path listed twice is reported as
``duplicate_manifest_row`` (the first row wins). A row that cannot be parsed
(bad JSON, a field over the CSV field limit, no path) is ``malformed_row``;
the rows around it are read as usual. A manifest with no data row raises
:class:`EmptyManifestError`; one over :data:`MAX_MANIFEST_BYTES` raises
:class:`SourceError`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import fsspec

from provenance.sources.base import (
    EmptyManifestError,
    SourceError,
    SourceItem,
    clean_text,
    facts_from_row,
    pick,
    resolve_local_path,
)
from provenance.sources.paths import classify_row_path, normalise_schemes
from provenance.sources.prefix_paths import resolve_prefix_path
from provenance.sources.text import locator_text

# A manifest is read whole; a bigger one is refused rather than read into memory.
MAX_MANIFEST_BYTES = 256 * 1024**2


class ManifestSource:
    def __init__(
        self,
        manifest: str,
        *,
        root: str | None = None,
        kind: str = "manifest",
        allowed_schemes: Iterable[str] = (),
    ) -> None:
        self.kind = kind
        self.manifest = manifest
        try:
            self.allowed_schemes = normalise_schemes(allowed_schemes)
        except ValueError as exc:
            raise SourceError(str(exc)) from exc
        fs, path = fsspec.core.url_to_fs(manifest)
        if not fs.isfile(path):
            raise SourceError(f"manifest {manifest!r} does not exist or is not a file")
        self._fs, self._path = fs, path
        is_local = "://" not in manifest or manifest.startswith("file://")
        self.uri = str(Path(path).resolve()) if is_local else manifest
        # A bucket prefix as the root: the given one, else a remote manifest's folder.
        self.prefix: tuple[Any, str] | None = None
        remote_root = root if root is not None and _is_remote(root) else None
        if root is None and not is_local and manifest.lower().startswith("s3://"):
            remote_root = manifest.rsplit("/", 1)[0]
        if remote_root is not None:
            root_fs, root_path = fsspec.core.url_to_fs(remote_root)
            if not root_path.strip("/") or not root_fs.isdir(root_path):
                raise SourceError(f"manifest root {remote_root!r} is not a folder")
            self.prefix = (root_fs, root_path.rstrip("/"))
            self.root = Path("/nonexistent-root")
        elif root is not None:
            self.root = Path(root.removeprefix("file://")).expanduser().resolve()
        else:
            self.root = Path(self.uri).parent if is_local else Path("/nonexistent-root")
        if self.prefix is None and is_local and not self.root.is_dir():
            raise SourceError(f"manifest root {str(self.root)!r} is not a folder")

    @property
    def root_uri(self) -> str:
        if self.prefix is not None:
            return str(self.prefix[0].unstrip_protocol(self.prefix[1]))
        return str(self.root)

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"manifest": self.uri, "root": self.root_uri}
        if self.allowed_schemes:
            config["allowed_schemes"] = list(self.allowed_schemes)
        return config

    def rows(self) -> list[tuple[int, dict[str, Any] | None, str | None]]:
        """``(row number, row or None, error)`` for every data row (1-based, header excluded)."""
        size = self._fs.size(self._path)
        if size is not None and size > MAX_MANIFEST_BYTES:
            raise SourceError(
                f"manifest {self.uri} is {size} bytes; at most {MAX_MANIFEST_BYTES} are read "
                "(split it into several manifests)"
            )
        with self._fs.open(self._path, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        text = raw.decode("utf-8-sig", "surrogateescape")
        if self._path.lower().endswith((".jsonl", ".ndjson")):
            return _jsonl_rows(text)
        return _csv_rows(text, self.uri)

    def items(self) -> Iterator[SourceItem]:
        rows = self.rows()
        if not any(row is not None or error for _, row, error in rows):
            raise EmptyManifestError(f"manifest {self.uri} has no data rows: nothing to ingest")
        seen: dict[str, int] = {}
        for number, row, error in rows:
            if row is None:
                yield SourceItem(
                    locator=f"row {number}",
                    uri=None,
                    problem="malformed_row",
                    problem_detail=error,
                )
                continue
            try:
                yield self._item(number, row, seen)
            except (OSError, RuntimeError, ValueError) as exc:  # never one row for the rest
                yield SourceItem(
                    locator=f"row {number}",
                    uri=None,
                    problem="malformed_row",
                    problem_detail=f"row {number}: {type(exc).__name__}: {exc}"[:1000],
                )

    def _item(self, number: int, row: dict[str, Any], seen: dict[str, int]) -> SourceItem:
        raw = pick(row, "path")
        facts = facts_from_row(row, "manifest")
        if raw is None or not str(raw).strip():
            return SourceItem(
                locator=f"row {number}",
                uri=None,
                problem="malformed_row",
                problem_detail=f"row {number} has no path (columns: path, uri, file, file_name)",
            )
        raw = str(raw).strip()
        target = classify_row_path(raw, allowed_schemes=self.allowed_schemes)
        uri: str | None = None
        problem, detail = target.problem, target.detail
        locator = locator_text(raw)
        inside = self.prefix is not None and raw.startswith(self.root_uri + "/")
        if self.prefix is not None and (target.local_path is not None or inside):
            # Under a bucket prefix: the same rules, judged on the key's text.
            fs, root_path = self.prefix
            uri, problem, detail = resolve_prefix_path(
                fs, root_path, raw if inside else str(target.local_path)
            )
            if uri is not None:
                locator = locator_text(uri.removeprefix(self.root_uri + "/"))
        elif target.remote_url is not None:
            uri = target.remote_url
        elif target.local_path is not None:
            real, problem, detail = resolve_local_path(self.root, target.local_path)
            if real is not None:
                locator = locator_text(real.relative_to(self.root).as_posix())
                uri = str(real)
        if locator in seen:
            return SourceItem(
                locator=f"{locator}#row={number}",
                uri=None,
                problem="duplicate_manifest_row",
                problem_detail=f"row {number} repeats row {seen[locator]} ({locator})",
                **{k: v for k, v in facts.items() if k != "fact_sources"},
            )
        seen[locator] = number
        if problem is not None:
            return SourceItem(locator=locator, uri=None, problem=problem, problem_detail=detail)
        return SourceItem(locator=locator, uri=uri, **facts)


def _is_remote(location: str) -> bool:
    return "://" in location and not location.lower().startswith(("file://", "local://"))


def _csv_rows(text: str, name: str) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        if reader.fieldnames is None:
            return []
    except csv.Error as exc:
        raise SourceError(f"manifest {name}: the header row is not CSV: {exc}") from exc
    fields = [clean_text(f) or "" for f in reader.fieldnames]
    if not any(f.lower() in ("path", "uri", "file", "file_name", "filename") for f in fields):
        raise SourceError(
            f"manifest {name} has no path column (one of path, uri, file, file_name); "
            f"columns: {', '.join(fields)}"
        )
    out: list[tuple[int, dict[str, Any] | None, str | None]] = []
    number = 0
    while True:
        number += 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field over the field size limit; the reader goes on
            out.append((number, None, f"row {number} is not CSV: {exc}"))
            continue
        values = {k: v for k, v in row.items() if k is not None}
        if not any((v or "").strip() for v in values.values() if isinstance(v, str)):
            continue  # a blank line is not a row
        out.append((number, values, None))
    return out


def _jsonl_rows(text: str) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    out: list[tuple[int, dict[str, Any] | None, str | None]] = []
    number = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        number += 1
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as exc:
            out.append((number, None, f"line {number} is not JSON: {type(exc).__name__}"[:300]))
            continue
        if not isinstance(row, dict):
            out.append((number, None, f"line {number} is not a JSON object"))
            continue
        out.append((number, row, None))
    return out
