"""A CSV or JSONL manifest: one row per file with path/uri, title, artists (``;``-separated),
licence, consent and source url.

Local paths are resolved against the root (the manifest's folder unless
given) and must stay inside it, symlinks included. A path listed twice is
reported as ``duplicate_manifest_row`` (the first row wins). Remote URIs
(``s3://…``, ``memory://…``) are passed through to fsspec. A manifest with no
data row raises :class:`EmptyManifestError`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec

from provenance.sources.base import (
    EmptyManifestError,
    SourceError,
    SourceItem,
    clean_text,
    facts_from_row,
    has_surrogates,
    pick,
    printable_name,
    resolve_local_path,
)


class ManifestSource:
    def __init__(self, manifest: str, *, root: str | None = None, kind: str = "manifest") -> None:
        self.kind = kind
        self.manifest = manifest
        fs, path = fsspec.core.url_to_fs(manifest)
        if not fs.isfile(path):
            raise SourceError(f"manifest {manifest!r} does not exist or is not a file")
        self._fs, self._path = fs, path
        is_local = "://" not in manifest or manifest.startswith("file://")
        self.uri = str(Path(path).resolve()) if is_local else manifest
        if root is not None:
            self.root = Path(root.removeprefix("file://")).expanduser().resolve()
        else:
            self.root = Path(self.uri).parent if is_local else Path("/nonexistent-root")
        if is_local and not self.root.is_dir():
            raise SourceError(f"manifest root {str(self.root)!r} is not a folder")

    @property
    def config(self) -> dict[str, Any]:
        return {"manifest": self.uri, "root": str(self.root)}

    def rows(self) -> list[tuple[int, dict[str, Any] | None, str | None]]:
        """``(row number, row or None, error)`` for every data row (1-based, header excluded)."""
        with self._fs.open(self._path, "rb") as f:
            raw = f.read()
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
            yield self._item(number, row, seen)

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
        uri: str | None
        if "://" in raw and not raw.startswith("file://"):
            locator, uri, problem, detail = raw, raw, None, None
        else:
            real, problem, detail = resolve_local_path(self.root, raw.removeprefix("file://"))
            if real is not None:
                locator = real.relative_to(self.root).as_posix()
                uri = str(real)
            else:
                locator = printable_name(raw) if has_surrogates(raw) else raw
                uri = None
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


def _csv_rows(text: str, name: str) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        return []
    fields = [clean_text(f) or "" for f in reader.fieldnames]
    if not any(f.lower() in ("path", "uri", "file", "file_name", "filename") for f in fields):
        raise SourceError(
            f"manifest {name} has no path column (one of path, uri, file, file_name); "
            f"columns: {', '.join(fields)}"
        )
    out: list[tuple[int, dict[str, Any] | None, str | None]] = []
    for number, row in enumerate(reader, start=1):
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
        except ValueError as exc:
            out.append((number, None, f"line {number} is not JSON: {exc}"))
            continue
        if not isinstance(row, dict):
            out.append((number, None, f"line {number} is not a JSON object"))
            continue
        out.append((number, row, None))
    return out
