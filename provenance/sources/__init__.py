"""Source adapters: folders, CSV/JSONL manifests and Hugging Face dataset dumps, behind one
interface (:class:`provenance.sources.base.SourceAdapter`), plus file-tag reading."""

from __future__ import annotations

from provenance.sources.base import (
    EmptyManifestError,
    SourceAdapter,
    SourceError,
    SourceItem,
    open_source,
)

__all__ = ["EmptyManifestError", "SourceAdapter", "SourceError", "SourceItem", "open_source"]
