"""The featurize flow end to end on synthetic recordings: incremental, config-versioned,
same shards on the thread runner and on Dask."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from flows.featurize import featurize_flow, run_featurize
from provenance import migrate
from provenance.audit_log import append_event, verify_chain
from provenance.db import make_engine, session_factory
from provenance.models import (
    Credit,
    FeatureSet,
    FeatureSetRecording,
    FeatureShard,
    LicenceAssertion,
    Party,
    PartyAlias,
    Recording,
)
from provenance.settings import fairchord_home
from training.mel import MelConfig
from training.shards import open_datasets, read_manifest, rows_for_recordings, verify_shards


def store(path: Path) -> tuple[str, str]:
    """Put a file in the object store (I1's ObjectStore when present)."""
    try:
        from provenance.object_store import default_object_store
    except ImportError:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        target = fairchord_home() / "objects" / "sha256" / digest[:2] / digest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        return digest, target.as_uri()
    sha, uri = default_object_store().put_file(str(path))
    return sha, uri


def synthetic_wav(path: Path, *, seconds: float, freq: float, seed: int) -> Path:
    sr = 22050
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    tone = 0.2 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
    sf.write(path, np.stack([tone, tone * 0.5], axis=1).astype(np.float32), sr)
    return path


def add_recording(
    session: Session, tmp_path: Path, *, name: str, seconds: float, freq: float, **fields: object
) -> Recording:
    path = synthetic_wav(tmp_path / f"{name}.wav", seconds=seconds, freq=freq, seed=int(freq))
    sha, uri = store(path)
    rec = Recording(sha256=sha, size_bytes=path.stat().st_size, title=name, object_uri=uri)
    for key, value in fields.items():
        setattr(rec, key, value)
    session.add(rec)
    session.flush()
    return rec


def seed_corpus(session: Session, tmp_path: Path) -> dict[str, int]:
    party = Party(name="Jane Doe", normalized_name="jane doe", kind="person")
    session.add(party)
    session.flush()
    session.add(PartyAlias(party_id=party.id, alias="DJ Nimbus", normalized_alias="dj nimbus"))
    a = add_recording(session, tmp_path, name="a", seconds=25.0, freq=220.0)
    b = add_recording(session, tmp_path, name="b", seconds=12.0, freq=330.0)
    q = add_recording(
        session,
        tmp_path,
        name="q",
        seconds=5.0,
        freq=440.0,
        status="quarantined",
        reason_code="decode_error",
    )
    d = add_recording(session, tmp_path, name="d", seconds=4.0, freq=550.0, duplicate_of_id=a.id)
    for rec in (a, b):
        session.add(Credit(recording_id=rec.id, party_id=party.id, role="artist"))
        session.add(
            LicenceAssertion(
                recording_id=rec.id, declared="CC-BY-4.0", concluded="CC-BY-4.0", asserted_by="t"
            )
        )
        append_event(
            session,
            "recording.ingested",
            entity="recording",
            entity_id=rec.id,
            payload={"genre": "Ambient; Jane Doe style", "instruments": ["harp", "DJ Nimbus"]},
        )
    session.flush()
    return {"a": a.id, "b": b.id, "q": q.id, "d": d.id}


def test_featurize_is_incremental_and_versioned(
    session: Session, db_url: str, tmp_path: Path
) -> None:
    ids = seed_corpus(session, tmp_path)
    session.commit()

    first = featurize_flow(db_url=db_url)
    assert first["recordings"] == 2 and first["segments"] == 3 + 2
    root = Path(first["root"])
    manifest = read_manifest(root)
    assert set(manifest["recordings"]) == {str(ids["a"]), str(ids["b"])}
    assert verify_shards(root) == []
    table = rows_for_recordings(root, [ids["a"], ids["b"]])
    captions = table.column("caption").to_pylist()
    assert all("jane" not in c and "nimbus" not in c for c in captions)
    assert all(c.startswith("ambient, harp, ") for c in captions)
    assert set(table.column("caption_method").to_pylist()) == {"descriptors+tags"}
    assert table.column("licence").to_pylist() == ["CC-BY-4.0"] * 5
    assert table.column("is_partial").to_pylist() == [False, False, True, False, True]
    first_shards = {p.name: p.read_bytes() for p in root.glob("shard-*.arrow")}

    # A new recording: the rerun featurizes only it, old shards stay byte-identical.
    session.expire_all()
    c = add_recording(session, tmp_path, name="c", seconds=13.0, freq=660.0)
    session.commit()
    second = featurize_flow(db_url=db_url)
    assert second["recordings"] == 1 and second["recordings_covered"] == 3
    for name, data in first_shards.items():
        assert (root / name).read_bytes() == data
    assert len(read_manifest(root)["shards"]) == len(first_shards) + 1
    assert len(open_datasets(root)) == 5 + 2
    third = featurize_flow(db_url=db_url)
    assert third["recordings"] == 0 and third["shards"] == []

    # An undecodable object is skipped and reported, not covered, and retried next time.
    session.expire_all()
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really audio")
    sha, uri = store(broken)
    bad = Recording(sha256=sha, size_bytes=broken.stat().st_size, title="broken", object_uri=uri)
    session.add(bad)
    session.commit()
    skipped = featurize_flow(db_url=db_url)
    assert skipped["recordings"] == 0 and len(skipped["failed"]) == 1
    assert f"recording {bad.id}" in skipped["failed"][0]
    assert len(featurize_flow(db_url=db_url)["failed"]) == 1
    session.delete(bad)
    session.commit()

    # Another mel config is another feature set, in its own folder, never mixed.
    other = MelConfig(n_mels=32)
    fourth = featurize_flow(db_url=db_url, mel_config=other.to_dict())
    assert fourth["recordings"] == 3 and fourth["mel_config_hash"] == other.hash()
    assert Path(fourth["root"]) != root
    assert read_manifest(Path(fourth["root"]))["mel_shape"] == [32, 1024]

    session.expire_all()
    assert session.scalar(select(func.count()).select_from(FeatureSet)) == 2
    fs = session.execute(
        select(FeatureSet).where(FeatureSet.mel_config_hash == MelConfig().hash())
    ).scalar_one()
    covered = set(
        session.execute(
            select(FeatureSetRecording.recording_id).where(
                FeatureSetRecording.feature_set_id == fs.id
            )
        ).scalars()
    )
    assert covered == {ids["a"], ids["b"], c.id}  # never the quarantined or the duplicate
    shard_rows = session.execute(
        select(FeatureShard).where(FeatureShard.feature_set_id == fs.id)
    ).scalars()
    assert {s.sha256 for s in shard_rows} == {s["sha256"] for s in read_manifest(root)["shards"]}
    assert fs.manifest_sha256 == hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest()
    count, problems = verify_chain(session)
    assert problems == [] and count > 0


@pytest.mark.slow
def test_thread_and_dask_runners_write_the_same_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = []
    for runner in ("threads", "dask"):
        home = tmp_path / runner
        monkeypatch.setenv("FAIRCHORD_HOME", str(home))
        url = f"sqlite:///{tmp_path / runner}.sqlite"
        engine = make_engine(url)
        migrate.upgrade(engine)
        sources = tmp_path / f"{runner}-audio"
        sources.mkdir()
        with session_factory(engine).begin() as session:
            seed_corpus(session, sources)
        engine.dispose()
        summary = run_featurize(db_url=url, use_dask=runner == "dask", shard_mb=0.3)
        assert summary["segments"] == 5 and len(summary["shards"]) >= 2
        manifest = read_manifest(Path(summary["root"]))
        digests.append([(s["name"], s["sha256"], s["rows"]) for s in manifest["shards"]])
    assert digests[0] == digests[1]


class FakeClap:
    """Stands in for training.clap_embedder.ClapEmbedder: every clip sounds like a harp."""

    def embed_text(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 512), np.float32)
        for i, text in enumerate(texts):
            out[i, i] = 1.0 if re.search(r"\bharp\b", text) else 0.0
        return out

    def embed_audio_clip(self, wave_16k: np.ndarray) -> np.ndarray:
        return np.ones(512, np.float32)


def test_clap_tags_in_captions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.featurize as featurize_module
    from training.captions import ClapTagger

    monkeypatch.setattr(featurize_module, "load_clap_tagger", lambda path: ClapTagger(FakeClap()))
    url = f"sqlite:///{tmp_path / 'clap.sqlite'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    with session_factory(engine).begin() as session:
        add_recording(session, tmp_path, name="plain", seconds=11.0, freq=300.0)
    engine.dispose()
    summary = featurize_flow(db_url=url, clap_path="fake.pt")
    table = rows_for_recordings(Path(summary["root"]), [1])
    assert table.column("caption_method").to_pylist() == ["descriptors+clap"]
    assert table.column("caption")[0].as_py().startswith("harp, ")
