"""A Hugging Face ``datasets`` dataset saved with ``save_to_disk``, read offline.

The first ``Audio`` column holds the audio (read undecoded: embedded bytes,
or a path); other columns may carry title, artist(s), licence, consent and
source url. Items address rows as ``hf-dataset:<folder>::<split>::<row>::<column>``,
which :func:`read_row_bytes` turns back into bytes. A row without embedded
bytes may name a file inside the dataset's folder; a path elsewhere is
``path_escape``, as in a manifest. An ``audiofolder`` (files +
``metadata.csv``) is read by the manifest adapter instead.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from provenance.sources.base import SourceError, SourceItem, facts_from_row, resolve_local_path
from provenance.sources.text import locator_text

ROW_SCHEME = "hf-dataset:"


def is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (
        (folder / "dataset_info.json").is_file() and (folder / "state.json").is_file()
    )


@functools.lru_cache(maxsize=4)
def _load(folder: str) -> dict[str, Any]:
    """``{split: Dataset}`` (a plain Dataset is split ``train``), memory-mapped."""
    from datasets import Dataset, load_from_disk

    loaded = load_from_disk(folder)
    if isinstance(loaded, Dataset):
        return {"train": loaded}
    return {str(name): loaded[name] for name in sorted(loaded)}


def _audio_column(ds: Any) -> str | None:
    from datasets import Audio

    for name, feature in ds.features.items():
        if isinstance(feature, Audio):
            return str(name)
    return None


def _undecoded(ds: Any, column: str) -> Any:
    from datasets import Audio

    return ds.cast_column(column, Audio(decode=False))


class HFDatasetSource:
    kind = "hf_dataset"

    def __init__(self, folder: str) -> None:
        path = Path(folder).expanduser().resolve()
        if not is_saved_dataset(path):
            raise SourceError(
                f"{folder!r} is not a dataset saved with save_to_disk "
                "(no dataset_info.json + state.json, nor dataset_dict.json)"
            )
        self.folder = path
        self.uri = str(path)

    @property
    def config(self) -> dict[str, Any]:
        return {"dataset": self.uri}

    def items(self) -> Iterator[SourceItem]:
        splits = _load(self.uri)
        for split, ds in splits.items():
            column = _audio_column(ds)
            if column is None:
                raise SourceError(
                    f"dataset {self.uri} split {split!r} has no Audio column; "
                    f"columns: {', '.join(ds.column_names)}"
                )
            plain = _undecoded(ds, column)
            others = [c for c in plain.column_names if c != column]
            width = max(6, len(str(len(plain))))
            for index in range(len(plain)):
                row = plain[index]
                audio = row[column] or {}
                facts = facts_from_row({c: row[c] for c in others}, "dataset")
                name = audio.get("path")
                locator = locator_text(f"{split}/{index:0{width}d}" + (f"/{name}" if name else ""))
                uri: str | None = f"{ROW_SCHEME}{self.uri}::{split}::{index}::{column}"
                problem = detail = None
                if audio.get("bytes") is None:
                    uri, problem, detail = (
                        None,
                        "missing_file",
                        (f"row {index} of split {split!r} has no bytes and no readable path"),
                    )
                    if name:
                        real, problem, detail = resolve_local_path(self.folder, str(name))
                        uri = str(real) if real is not None else None
                yield SourceItem(
                    locator=locator, uri=uri, problem=problem, problem_detail=detail, **facts
                )


def read_row_bytes(uri: str) -> bytes:
    """The embedded audio bytes a ``hf-dataset:`` item URI points at."""
    if not uri.startswith(ROW_SCHEME):
        raise ValueError(f"not a {ROW_SCHEME} item uri: {uri!r}")
    folder, split, index, column = uri[len(ROW_SCHEME) :].rsplit("::", 3)
    ds = _undecoded(_load(folder)[split], column)
    data = ds[int(index)][column]["bytes"]
    if data is None:
        raise FileNotFoundError(f"{uri}: the row has no embedded bytes")
    return bytes(data)
