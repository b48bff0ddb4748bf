"""The demo corpus built for real: Debian audio copied, six scores rendered with fluidsynth,
one excerpt signed with a "do not train" Content Credential, and a manifest the ingest
adapter reads with every fact in place."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from flows.demo_corpus import (
    DEMO_ROWS,
    MANIFEST_COLUMNS,
    MissingDebianPackageError,
    build_demo_corpus,
    load_demo_facts,
    missing_requirements,
    named_artists,
    read_demo_manifest,
)
from flows.render_scores import DEFAULT_SOUNDFONT, ScoreRef
from provenance.content_credentials import read_credential, training_refusal
from provenance.hashing import sha256_file
from provenance.sources import open_source

MISSING = missing_requirements(load_demo_facts(), soundfont=DEFAULT_SOUNDFONT)
needs_debian = pytest.mark.skipif(
    bool(MISSING),
    reason="demo corpus needs Debian packages: "
    + ", ".join(f"{p} ({what})" for p, what in MISSING)
    + " — run scripts/setup.sh as root",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_corpus(tmp_path_factory.mktemp("demo") / "corpus")


def test_facts_file_is_the_projects_own_copy() -> None:
    facts = load_demo_facts()
    assert len(facts) == DEMO_ROWS
    assert sum(f.expected_eligible for f in facts) == 19
    assert sum(f.is_score for f in facts) == 6
    (signed,) = [f for f in facts if f.credential]
    assert signed.credential == "do_not_train" and not signed.expected_eligible
    assert signed.excerpt == (30.0, 75.0) and signed.file_path.name == "Through Space.ogg"
    # Not a file the corpus already holds (nor an excerpt of one).
    assert signed.file_path not in {Path(f.path) for f in facts if f is not signed}
    assert {f.debian_package for f in facts if f.debian_package} == {
        "wesnoth-1.16-music",
        "singularity-music",
        "hyperrogue-music",
        "asc-music",
        "drascula-music",
        "frozen-bubble-data",
        "sound-theme-freedesktop",
    }


def test_named_artists_credits_people_only() -> None:
    assert named_artists("Mattias Westlund") == (("Mattias Westlund",), ())
    assert named_artists("Max McCracken (Maxstack)") == (("Max McCracken",), ("Maxstack",))
    assert named_artists("traditional (Essen collection; encoding H. Schaffrath et al.)") == (
        (),
        (),
    )
    assert named_artists("Giovanni Pierluigi da Palestrina (encoding John Miller 2000)") == (
        ("Giovanni Pierluigi da Palestrina",),
        (),
    )
    assert named_artists("") == ((), ())


def test_score_references() -> None:
    assert ScoreRef.parse("essenFolksong/altdeu10.abc#6") == ScoreRef(
        "essenFolksong/altdeu10.abc", 6
    )
    assert (
        ScoreRef.parse("essenFolksong/altdeu10.abc#6").wav_name() == "essenFolksong/altdeu10-6.wav"
    )
    assert ScoreRef.parse("palestrina/Agnus_01.krn").wav_name() == "palestrina/Agnus_01.wav"
    with pytest.raises(ValueError, match="positive integer"):
        ScoreRef.parse("essenFolksong/altdeu10.abc#0")


@needs_debian
@pytest.mark.slow
def test_build_copies_renders_and_writes_an_ingestable_manifest(built: Path) -> None:
    rows = read_demo_manifest(built)
    assert len(rows) == DEMO_ROWS
    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    facts = {f.path: f for f in load_demo_facts()}
    for row in rows:
        path = built.parent / row["path"]
        fact = facts[row["original_path"]]
        assert sha256_file(path) == row["sha256"]
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        duration = audio.shape[0] / rate
        # Every file decodes fully, to the length the facts state (renders included; an MP3
        # decodes ~0.25 s shorter than its header estimate: encoder delay and padding).
        assert duration == pytest.approx(fact.duration_s, abs=0.5), row["path"]
        assert np.isfinite(audio).all() and np.abs(audio).max() > 0.01, row["path"]
        if fact.is_score:
            info = sf.info(path)
            assert (info.format, info.subtype, info.samplerate) == ("WAV", "PCM_16", 44100)
            assert row["path"].startswith("scores/") and row["path"].endswith(".wav")
            assert (path.parent / (path.name + ".render.json")).is_file()
        elif fact.credential:
            assert row["path"] == "c2pa/singularity-music/through-space-excerpt.flac"
            assert sf.info(path).format == "FLAC" and row["credential"] == "do_not_train"
            reading = read_credential(path)
            assert reading is not None and reading.status == "valid"
            assert training_refusal(reading) == ["cawg.ai_generative_training", "cawg.ai_training"]
            assert reading.training_mining["cawg.ai_inference"] == "allowed"
        else:
            assert path.stat().st_size == Path(fact.path).stat().st_size

    by_path = {r["original_path"]: r for r in rows}
    essen = by_path["essenFolksong/altdeu10.abc#1"]
    assert essen["artists"] == "" and essen["artist_credit"].startswith("traditional")
    assert essen["licence"] == "LicenseRef-Essen-NonCommercial"
    assert (
        by_path["essenFolksong/altdeu10.abc#1"]["sha256"]
        != by_path["essenFolksong/altdeu10.abc#2"]["sha256"]
    )
    maxstack = next(r for r in rows if r["title"] == "Awakening")
    assert (maxstack["artists"], maxstack["artist_aliases"]) == ("Max McCracken", "Maxstack")

    # The ingest manifest adapter lists all 30 with the manifest's facts and no problem.
    items = list(open_source(str(built)).items())
    assert len(items) == DEMO_ROWS
    assert all(i.problem is None and i.uri is not None for i in items)
    westlund = next(i for i in items if i.locator.endswith("breaking_the_chains.ogg"))
    assert westlund.artists == ("Mattias Westlund",)
    assert westlund.licence == "GPL-2.0-or-later"
    assert westlund.fact_sources["licence"] == "manifest"
    drascula = next(i for i in items if i.locator.endswith("track2.ogg"))
    assert drascula.artists == () and drascula.licence == "LicenseRef-Drascula"


@needs_debian
@pytest.mark.slow
def test_rebuild_reuses_copies_and_renders(built: Path) -> None:
    before = built.read_bytes()
    renders = sorted((built.parent / "scores").rglob("*.wav"))
    assert len(renders) == 6
    # The signed excerpt and its signer's keys are kept too: a C2PA signature is not
    # deterministic, so signing again would change the file's sha256.
    signed = sorted((built.parent / "c2pa").rglob("*.flac"))
    keys = sorted((built.parent / "c2pa-signer").iterdir())
    assert len(signed) == 1 and {k.name for k in keys} == {"ca.pem", "signer.key", "signer.pem"}
    stamps = {p: p.stat().st_mtime_ns for p in [*renders, *signed, *keys]}
    again = build_demo_corpus(built.parent)
    assert again == built and built.read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # A damaged render is noticed (its sha256 no longer matches the sidecar) and redone.
    victim = renders[0]
    with open(victim, "r+b") as f:
        f.seek(1000)
        f.write(b"\x7f" * 64)
    build_demo_corpus(built.parent)
    assert built.read_bytes() == before

    # A damaged signed excerpt no longer validates: it is signed again by the same keys.
    with open(signed[0], "r+b") as f:
        f.seek(-1000, os.SEEK_END)
        f.write(b"\x7f" * 64)
    build_demo_corpus(built.parent)
    reading = read_credential(signed[0])
    assert reading is not None and reading.status == "valid"
    assert {p: p.stat().st_mtime_ns for p in keys} == {k: stamps[k] for k in keys}
    by_path = {r["path"]: r for r in read_demo_manifest(built)}
    assert by_path["c2pa/singularity-music/through-space-excerpt.flac"]["sha256"] == sha256_file(
        signed[0]
    )


def test_missing_debian_package_is_named_with_the_install_command(tmp_path: Path) -> None:
    facts = load_demo_facts()
    broken = [
        dataclasses.replace(f, path="/nonexistent/asc/machine_wars.mp3")
        if f.debian_package == "asc-music"
        else f
        for f in facts
    ]
    dest = tmp_path / "demo"
    with pytest.raises(MissingDebianPackageError) as info:
        build_demo_corpus(dest, facts=broken)
    message = str(info.value)
    assert "asc-music" in message
    assert "apt-get install -y --no-install-recommends asc-music" in message
    assert info.value.packages[-1] == "asc-music"
    assert not dest.exists()  # nothing is touched before the check passes


def test_missing_fluidsynth_and_soundfont_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no fluidsynth on the PATH
    missing = dict(missing_requirements(load_demo_facts(), soundfont=tmp_path / "none.sf2"))
    assert "fluidsynth" in missing and "timgm6mb-soundfont" in missing


def test_cli_exits_2_naming_the_missing_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.demo_corpus as demo_corpus
    from flows.cli import app

    facts = load_demo_facts()
    broken = [
        dataclasses.replace(f, path=f"/nonexistent/{os.path.basename(f.path)}")
        if f.debian_package == "drascula-music"
        else f
        for f in facts
    ]
    monkeypatch.setattr(demo_corpus, "load_demo_facts", lambda path=None: broken)
    result = CliRunner().invoke(app, ["corpus", "demo", "--dest", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert "drascula-music" in result.output and "apt-get install" in result.output
