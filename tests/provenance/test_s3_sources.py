"""Sources under a bucket prefix on moto_server: the path rules of a local folder, by key text."""

from __future__ import annotations

from pathlib import Path

import fsspec

from provenance.sources.base import open_source
from tests.common.s3 import S3Bucket


def put_keys(bucket: S3Bucket, keys: dict[str, bytes]) -> None:
    fs = fsspec.filesystem("s3")
    for key, data in keys.items():
        fs.pipe(f"{bucket.name}/{key}", data)


def by_locator(source_items) -> dict[str, tuple[str | None, str | None]]:  # type: ignore[no-untyped-def]
    return {i.locator: (i.uri, i.problem) for i in source_items}


def test_folder_under_a_prefix_lists_only_its_keys(s3_bucket: S3Bucket) -> None:
    put_keys(
        s3_bucket,
        {
            "in/batch-1/a.wav": b"a",
            "in/batch-1/sub/b.wav": b"b",
            "in/batch-1/a.wav.json": b'{"title": "A"}',
            "in/batch-1/../c.wav": b"c",  # a key of its own, normalised it is in/c.wav
            "in/batch-1/x/./d.wav": b"d",
            "in/batch-1//e.wav": b"e",
            "in/batch-10/f.wav": b"f",  # another prefix that merely starts the same
            "in/batch-1.wav": b"g",
        },
    )
    source = open_source(f"{s3_bucket.url}/in/batch-1")
    items = by_locator(source.items())
    root = f"{s3_bucket.url}/in/batch-1"
    assert items["a.wav"] == (f"{root}/a.wav", None)
    assert items["sub/b.wav"] == (f"{root}/sub/b.wav", None)
    assert {k: v[1] for k, v in items.items() if v[1]} == {
        "../c.wav": "path_escape",
        "x/./d.wav": "path_escape",
        "/e.wav": "path_escape",
    }
    assert len(items) == 5
    assert next(i for i in source.items() if i.locator == "a.wav").title == "A"


def test_manifest_paths_relative_to_a_prefix(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    put_keys(
        s3_bucket,
        {
            "in/batch-1/a.wav": b"a",
            "in/batch-1/sub/b.wav": b"b",
            "in/secret.wav": b"s",
            "other/x.wav": b"x",
        },
    )
    root = f"{s3_bucket.url}/in/batch-1"
    rows = [
        "a.wav",
        "sub/b.wav",
        "../secret.wav",
        "sub/../a.wav",
        "/etc/passwd",
        "file:///etc/passwd",
        f"{s3_bucket.url}/other/x.wav",
        f"{s3_bucket.url}/in/batch-1/../secret.wav",
        f"simplecache::{root}/a.wav",
        "missing.wav",
        f"{root}/sub/b.wav",
    ]
    text = "path,title\n" + "\n".join(f"{row},t" for row in rows) + "\n"
    fsspec.filesystem("s3").pipe(f"{s3_bucket.name}/in/batch-1/manifest.csv", text.encode())
    local_manifest = tmp_path / "manifest.csv"
    local_manifest.write_text(text)

    for source in (
        open_source(f"{root}/manifest.csv"),  # the manifest's folder is the root
        open_source(root, manifest=str(local_manifest)),  # a local manifest, a prefix root
    ):
        assert source.config["root"] == root
        items = list(source.items())
        got = {i.locator: (i.uri, i.problem) for i in items}
        assert got["a.wav"] == (f"{root}/a.wav", None)
        assert got["sub/b.wav"] == (f"{root}/sub/b.wav", None)
        problems = [i.problem for i in items]
        assert problems == [None, None] + ["path_escape"] * 7 + [
            "missing_file",
            "duplicate_manifest_row",
        ]
