"""Source adapters: folders with sidecars, manifests with path tricks, dataset dumps, file tags."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import soundfile as sf

from provenance.sources import EmptyManifestError, SourceError, open_source
from provenance.sources.folder import FolderSource
from provenance.sources.hf_dataset import HFDatasetSource, read_row_bytes
from provenance.sources.manifest import ManifestSource
from provenance.sources.tags import licence_from_url, read_tags
from tests.common.audio import synth_music, write_music


def by_locator(items: list) -> dict:  # type: ignore[type-arg]
    return {i.locator: i for i in items}


def test_folder_items_sidecars_and_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "music"
    (root / "sub").mkdir(parents=True)
    write_music(root / "a.ogg", 1, seconds=1.0)
    write_music(root / "sub" / "b.flac", 2, seconds=1.0)
    (root / "a.ogg.json").write_text(
        json.dumps({"title": "Song A", "artists": "Ann; Bob", "licence": "CC-BY-4.0"})
    )
    (root / "sub" / "b.json").write_text(json.dumps({"artist": "Cy", "consent": "opt_out"}))
    (root / ".hidden.wav").write_bytes(b"x")
    outside = tmp_path / "outside.wav"
    write_music(outside, 3, seconds=1.0)
    (root / "escape.wav").symlink_to(outside)
    (root / "inside.ogg").symlink_to(root / "a.ogg")
    (root / "dangling.wav").symlink_to(root / "nope.wav")
    (root / "linkdir").symlink_to(tmp_path)
    bad_name = os.fsencode(str(root)) + b"/caf\xe9.wav"
    with open(bad_name, "wb") as f:
        f.write(b"RIFF")

    source = open_source(str(root))
    assert isinstance(source, FolderSource) and source.uri == str(root.resolve())
    items = list(source.items())
    assert [i.locator for i in items] == sorted(i.locator for i in items)
    got = by_locator(items)
    assert set(got) == {
        "a.ogg",
        "sub/b.flac",
        "escape.wav",
        "inside.ogg",
        "dangling.wav",
        "linkdir",
        "caf\\xe9.wav",
    }
    a = got["a.ogg"]
    assert (a.title, a.artists, a.licence) == ("Song A", ("Ann", "Bob"), "CC-BY-4.0")
    assert a.fact_sources == {"title": "sidecar", "artists": "sidecar", "licence": "sidecar"}
    assert a.uri == str(root / "a.ogg") and a.problem is None
    b = got["sub/b.flac"]
    assert (b.artists, b.consent) == (("Cy",), "opt_out")
    assert got["escape.wav"].problem == "symlink_escape"
    assert got["inside.ogg"].problem is None and got["inside.ogg"].uri == str(root / "a.ogg")
    assert got["dangling.wav"].problem == "missing_file"
    assert got["linkdir"].problem == "symlink_escape"
    assert got["caf\\xe9.wav"].problem == "non_utf8_name"


def test_folder_over_fsspec(tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/fc-src/a.wav", b"RIFF....")
    fs.pipe("/fc-src/a.json", json.dumps({"title": "From memory"}).encode())
    fs.pipe("/fc-src/x/b.mp3", b"ID3")
    items = list(open_source("memory://fc-src").items())
    assert [i.locator for i in items] == ["a.wav", "x/b.mp3"]
    assert items[0].title == "From memory" and items[0].uri.startswith("memory://")


def write_manifest(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_manifest_csv_paths_and_path_tricks(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    (root / "inner").mkdir(parents=True)
    write_music(root / "a.wav", 1, seconds=1.0)
    write_music(root / "inner" / "b.ogg", 2, seconds=1.0)
    secret = tmp_path / "secret.wav"
    write_music(secret, 3, seconds=1.0)
    (root / "link.wav").symlink_to(secret)
    (root / "linked_dir").symlink_to(tmp_path)
    manifest = write_manifest(
        root / "manifest.csv",
        "path,title,artists,license,consent,source_url",
        [
            "a.wav,Alpha,Ann;  Bob ,GPL-2.0-or-later,opt_in:training,https://example.org/a",
            "inner/b.ogg,Beta,,,,",
            "../secret.wav,Escape,,,,",
            f"{secret},Absolute escape,,,,",
            "link.wav,Symlink out,,,,",
            "linked_dir/secret.wav,Through a dir link,,,,",
            "missing.wav,Gone,,,,",
            "./a.wav,Alpha again,,,,",
            ",no path,,,,",
            "",
        ],
    )
    source = open_source(str(manifest))
    assert isinstance(source, ManifestSource) and source.kind == "manifest"
    got = by_locator(list(source.items()))
    a = got["a.wav"]
    assert (a.title, a.artists, a.licence, a.consent, a.source_url) == (
        "Alpha",
        ("Ann", "Bob"),
        "GPL-2.0-or-later",
        "opt_in:training",
        "https://example.org/a",
    )
    assert a.fact_sources["licence"] == "manifest" and a.uri == str(root / "a.wav")
    assert got["inner/b.ogg"].licence is None and got["inner/b.ogg"].problem is None
    assert got["../secret.wav"].problem == "path_escape"
    assert got[str(secret)].problem == "path_escape"
    assert got["link.wav"].problem == "symlink_escape"
    assert got["linked_dir/secret.wav"].problem == "symlink_escape"
    assert got["missing.wav"].problem == "missing_file"
    assert got["a.wav#row=8"].problem == "duplicate_manifest_row"
    assert "repeats row 1" in (got["a.wav#row=8"].problem_detail or "")
    assert got["row 9"].problem == "malformed_row"
    assert len(got) == 9  # the blank line is not a row


def test_manifest_jsonl_with_root_and_aliases(tmp_path: Path) -> None:
    root = tmp_path / "audio"
    root.mkdir()
    write_music(root / "a.flac", 1, seconds=1.0)
    manifest = tmp_path / "list.jsonl"
    manifest.write_text(
        json.dumps({"file": "a.flac", "artist": ["Zoë", "Q"], "spdx": "MIT"})
        + "\n\nnot json\n"
        + json.dumps(["a list"])
        + "\n"
    )
    source = open_source(str(root), manifest=str(manifest))
    items = list(source.items())
    assert items[0].artists == ("Zoë", "Q") and items[0].licence == "MIT"
    assert [i.problem for i in items] == [None, "malformed_row", "malformed_row"]


def test_empty_and_headless_manifests(tmp_path: Path) -> None:
    empty = write_manifest(tmp_path / "empty.csv", "path,title", [])
    with pytest.raises(EmptyManifestError, match="no data rows"):
        list(open_source(str(empty)).items())
    (tmp_path / "blank.jsonl").write_text("\n\n")
    with pytest.raises(EmptyManifestError):
        list(open_source(str(tmp_path / "blank.jsonl")).items())
    nopath = write_manifest(tmp_path / "nopath.csv", "title,artist", ["x,y"])
    with pytest.raises(SourceError, match="no path column"):
        list(open_source(str(nopath)).items())
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "nowhere"))


def test_manifest_non_utf8_path(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes(b"path,title\ncaf\xe9.wav,Cafe\n")
    (item,) = open_source(str(tmp_path / "m.csv")).items()
    assert item.problem == "non_utf8_name" and item.locator == "caf\\xe9.wav"


def test_hf_dataset_on_disk(tmp_path: Path) -> None:
    from datasets import Audio, Dataset, DatasetDict

    write_music(tmp_path / "a.wav", 1, seconds=1.0)
    write_music(tmp_path / "b.ogg", 2, seconds=1.0)
    ds = Dataset.from_dict(
        {
            "audio": [str(tmp_path / "a.wav"), str(tmp_path / "b.ogg")],
            "title": ["A", "B"],
            "artist": ["Ann", None],
            "license": ["CC-BY-4.0", "CC0-1.0"],
        }
    ).cast_column("audio", Audio())
    DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "ds"))
    source = open_source(str(tmp_path / "ds"))
    assert isinstance(source, HFDatasetSource)
    items = list(source.items())
    assert [i.locator for i in items] == ["train/000000/a.wav", "train/000001/b.ogg"]
    assert items[0].artists == ("Ann",) and items[1].artists == ()
    assert items[0].fact_sources["licence"] == "dataset"
    assert items[1].uri is not None
    assert read_row_bytes(items[1].uri) == (tmp_path / "b.ogg").read_bytes()


def test_audiofolder_metadata_csv(tmp_path: Path) -> None:
    write_music(tmp_path / "a.mp3", 1, seconds=1.0)
    write_manifest(tmp_path / "metadata.csv", "file_name,title,artist", ["a.mp3,Song,Ann"])
    source = open_source(str(tmp_path))
    assert source.kind == "audiofolder"
    (item,) = source.items()
    assert (item.locator, item.title, item.artists) == ("a.mp3", "Song", ("Ann",))


def test_tags_vorbis_flac_id3_and_wav_info(tmp_path: Path) -> None:
    from mutagen.flac import FLAC
    from mutagen.id3 import ID3, TIT2, TPE1, WCOP
    from mutagen.oggvorbis import OggVorbis

    ogg = write_music(tmp_path / "a.ogg", 1, seconds=1.0)
    tags = OggVorbis(ogg)
    tags["ARTIST"] = ["Mattias Westlund"]
    tags["TITLE"] = ["Breaking the Chains"]
    tags["LICENSE"] = ["https://creativecommons.org/licenses/by-sa/3.0/"]
    tags.save()
    assert read_tags(ogg).artists == ("Mattias Westlund",)
    assert read_tags(ogg).licence == "CC-BY-SA-3.0"
    assert read_tags(ogg).title == "Breaking the Chains"

    flac = write_music(tmp_path / "a.flac", 1, seconds=1.0)
    meta = FLAC(flac)
    meta["artist"] = ["A", "B"]
    meta["license"] = ["GPL-2.0-or-later"]
    meta.save()
    assert read_tags(flac).artists == ("A", "B") and read_tags(flac).licence == "GPL-2.0-or-later"

    mp3 = write_music(tmp_path / "a.mp3", 1, seconds=1.0)
    id3 = ID3()
    id3.add(TPE1(encoding=3, text=["Ann"]))
    id3.add(TIT2(encoding=3, text=["Tune"]))
    id3.add(WCOP(url="http://creativecommons.org/publicdomain/zero/1.0/"))
    id3.save(mp3)
    assert read_tags(mp3) == type(read_tags(mp3))(title="Tune", artists=("Ann",), licence="CC0-1.0")

    wav = tmp_path / "a.wav"
    with sf.SoundFile(wav, "w", 22050, 2, format="WAV") as f:
        f.artist = "Wav Person"
        f.title = "Info chunk"
        f.write(synth_music(1, seconds=0.5))
    assert read_tags(wav).artists == ("Wav Person",) and read_tags(wav).title == "Info chunk"
    (tmp_path / "junk.wav").write_bytes(b"junk")
    assert read_tags(tmp_path / "junk.wav").artists == ()


def test_licence_urls() -> None:
    assert licence_from_url("https://creativecommons.org/licenses/by/4.0/") == "CC-BY-4.0"
    assert licence_from_url("https://example.org/licence") is None
