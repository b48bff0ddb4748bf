"""A manifest row names a file inside its source's root, or a URL whose scheme the source
allows; scheme tricks, chained URLs and paths out of the root are ``path_escape``."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provenance.ingest_record import ingest_item
from provenance.ingest_runs import get_or_create_source
from provenance.models import QuarantineItem, Recording
from provenance.object_store import ObjectStore
from provenance.sources import SourceError, open_source
from provenance.sources.paths import classify_row_path, normalise_schemes
from tests.common.audio import write_music


@pytest.mark.parametrize(
    "raw",
    [
        "simplecache::file:///usr/share/sounds/x.oga",
        "blockcache::/etc/passwd",
        "zip://a.wav::file:///tmp/a.zip",
        "local:///etc/passwd",  # a local path, but outside the root (judged on resolving)
        "nosuch://x.wav",
        "http://127.0.0.1:9/x.wav",
        "HTTPS://example.org/x.wav",
        "memory://x.wav",
        "file://otherhost/etc/passwd",
        "file://",
    ],
)
def test_schemes_not_allowed_are_refused_or_read_as_local_paths(raw: str) -> None:
    target = classify_row_path(raw)
    if raw.startswith("local://"):
        assert target.local_path == "/etc/passwd"
    else:
        assert target.problem == "path_escape" and target.remote_url is None, target


def test_allowed_schemes_and_plain_paths() -> None:
    assert classify_row_path("song.ogg").local_path == "song.ogg"
    assert classify_row_path("sub/a:b.ogg").local_path == "sub/a:b.ogg"
    assert classify_row_path("file:///r/a.ogg").local_path == "/r/a.ogg"
    assert classify_row_path("file://localhost/r/a.ogg").local_path == "/r/a.ogg"
    allowed = classify_row_path("S3://bucket/a.ogg", allowed_schemes=("s3",))
    assert allowed.remote_url == "S3://bucket/a.ogg"
    chained = classify_row_path("simplecache::s3://bucket/a.ogg", allowed_schemes=("s3",))
    assert chained.problem == "path_escape"  # chains are never followed, allowed or not
    assert normalise_schemes(["HTTPS://", " s3 ", "s3"]) == ("https", "s3")
    with pytest.raises(ValueError, match="not a URL scheme"):
        normalise_schemes(["s3;rm"])
    with pytest.raises(ValueError, match="local files"):
        normalise_schemes(["file"])


def test_manifest_rows_cannot_reach_outside_the_root(session: Session, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write_music(root / "inside.ogg", 61, seconds=2.0)
    outside = write_music(tmp_path / "outside.ogg", 62, seconds=2.0)
    (root / "up.ogg").symlink_to(outside)
    rows = [
        "inside.ogg",
        f"simplecache::file://{outside}",
        f"local://{outside}",
        "local:///etc/passwd",
        f"file://{outside}",
        "nosuch://x.wav",
        "http://127.0.0.1:9/x.wav",
        "../outside.ogg",
        "up.ogg",
    ]
    manifest = root / "manifest.csv"
    manifest.write_text("path\n" + "\n".join(rows) + "\n")
    adapter = open_source(str(manifest))
    source = get_or_create_source(session, adapter)
    store = ObjectStore(str(tmp_path / "objects"))
    outcomes = {i.locator: ingest_item(session, store, source, None, i) for i in adapter.items()}
    got = {loc: (o.status, o.reason_code) for loc, o in outcomes.items()}
    assert got.pop("inside.ogg") == ("accepted", None)
    assert got.pop("up.ogg") == ("quarantined", "symlink_escape")
    assert set(got.values()) == {("quarantined", "path_escape")}, got
    # Nothing outside was read: one recording, one object, no sha256 of /etc/passwd anywhere.
    assert session.scalar(select(func.count()).select_from(Recording)) == 1
    assert len(list(store.iter_shas())) == 1
    for entry in session.scalars(select(QuarantineItem)):
        assert entry.sha256 is None


def test_an_allowed_scheme_is_read_and_written_into_the_source_config(
    session: Session, tmp_path: Path
) -> None:
    data = write_music(tmp_path / "remote.flac", 63, seconds=2.0).read_bytes()
    with fsspec.open("memory://fc-allowed/remote.flac", "wb") as f:
        f.write(data)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text('{"path": "memory://fc-allowed/remote.flac"}\n')
    store = ObjectStore(str(tmp_path / "objects"))

    refused = open_source(str(manifest))
    (item,) = refused.items()
    assert item.problem == "path_escape" and "--allow-scheme" in (item.problem_detail or "")

    allowed = open_source(str(manifest), allowed_schemes=("memory",))
    assert allowed.config["allowed_schemes"] == ["memory"]
    source = get_or_create_source(session, allowed)
    (item,) = allowed.items()
    outcome = ingest_item(session, store, source, None, item)
    assert outcome.status == "accepted"
    with pytest.raises(SourceError, match="not a URL scheme"):
        open_source(str(manifest), allowed_schemes=("no scheme",))


def test_a_dataset_row_path_outside_its_folder_is_path_escape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa
    from datasets import Audio, Dataset, Features, Value

    import provenance.sources.hf_dataset as hf

    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "dataset_dict.json").write_text("{}")
    write_music(folder / "inside.flac", 65, seconds=2.0)
    write_music(tmp_path / "outside.flac", 64, seconds=2.0)
    # save_to_disk embeds every file it can read, so a row that only names a path is built
    # in memory, as a dataset written by other tools would hold it.
    features = Features({"audio": Audio(decode=False), "artist": Value("string")})
    rows = [str(tmp_path / "outside.flac"), "inside.flac", "/etc/passwd"]
    table = pa.table(
        {"audio": [{"bytes": None, "path": p} for p in rows], "artist": ["Ann"] * len(rows)}
    )
    monkeypatch.setattr(hf, "_load", lambda _folder: {"train": Dataset(table).cast(features)})
    items = list(open_source(str(folder)).items())
    assert [(i.problem, i.uri) for i in items] == [
        ("path_escape", None),
        (None, str(folder / "inside.flac")),
        ("path_escape", None),
    ]
