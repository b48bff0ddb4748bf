"""Ingest from an s3:// source into an S3 object store on moto_server, featurize with shards
published there, then audit verify, on SQLite and PostgreSQL; an object or a shard changed
in the bucket afterwards is reported, and a reader refuses the changed shard."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest
from sqlalchemy import Engine, select

from flows.featurize import run_featurize
from flows.ingest import run_ingest
from provenance.audit.integrity import verify_everything
from provenance.db import session_factory
from provenance.features import feature_set_files
from provenance.models import FeatureSet, FeatureShard, Recording
from provenance.s3_objects import StoreIntegrityError
from tests.common.audio import write_music
from tests.common.ingest import TEST_LIMITS
from tests.common.s3 import S3Bucket
from training.shard_publish import local_feature_root
from training.shards import MANIFEST_NAME, read_manifest

# name → sidecar facts; three distinct pieces, all accepted.
CORPUS = {
    "one.wav": {"title": "One", "artists": "Ann", "licence": "CC0-1.0"},
    "sub/two.flac": {"title": "Two", "artists": "Bob", "licence": "CC-BY-4.0"},
    "three.ogg": {"title": "Three", "artists": "Cy", "licence": "CC-BY-SA-4.0"},
}


def upload_corpus(bucket: S3Bucket, local: Path, prefix: str) -> str:
    """Write the corpus with sidecars locally and copy it to ``s3://bucket/prefix``."""
    for seed, (name, facts) in enumerate(CORPUS.items(), start=21):
        path = local / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_music(path, seed, seconds=2.0)
        (local / f"{name}.json").write_text(json.dumps(facts))
    fs = fsspec.filesystem("s3")
    url = f"{bucket.url}/{prefix}"
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        fs.put_file(str(path), f"{url}/{path.relative_to(local).as_posix()}")
    return url


def test_ingest_s3_source_into_s3_store_and_verify(
    engine: Engine, db_url: str, s3_bucket: S3Bucket, tmp_path: Path, monkeypatch
) -> None:
    source = upload_corpus(s3_bucket, tmp_path / "corpus", "incoming/batch-1")
    monkeypatch.setenv("FAIRCHORD_STORE_URL", f"{s3_bucket.url}/store")
    summary = run_ingest(source, db_url=db_url, limits=TEST_LIMITS)
    assert summary["counts"]["accepted"] == 3, summary["outcomes"]

    sessions = session_factory(engine)
    with sessions() as session:
        recordings = session.execute(select(Recording).order_by(Recording.id)).scalars().all()
        assert sorted(r.title for r in recordings) == ["One", "Three", "Two"]
        for rec in recordings:
            assert rec.object_uri == (
                f"{s3_bucket.url}/store/objects/sha256/{rec.sha256[:2]}/{rec.sha256}"
            )
        tampered = recordings[0]

    featurized = run_featurize(db_url=db_url, shard_mb=0.05)
    assert featurized["recordings"] == 3 and not featurized["failed"]
    published = f"{s3_bucket.url}/store/features/{featurized['mel_config_hash']}"
    with sessions() as session:
        feature_set = session.execute(select(FeatureSet)).scalar_one()
        assert feature_set.root_uri == published
        assert feature_set.manifest_uri == f"{published}/{MANIFEST_NAME}"
        shards = session.execute(select(FeatureShard).order_by(FeatureShard.id)).scalars().all()
        assert shards and all(s.uri.startswith(f"{published}/shard-") for s in shards)
        files = feature_set_files(session, feature_set)
        report = verify_everything(session)
        assert report.ok, [str(d) for d in report.discrepancies]
        assert report.checked["object"] == 3
        assert report.checked["shard"] == len(shards) and report.checked["manifest"] == 1

    # A reader gets the shards as a local folder, each file checked against its digest.
    local = local_feature_root(files)
    assert sorted(p.name for p in local.iterdir()) == sorted(
        [MANIFEST_NAME] + [s.uri.rsplit("/", 1)[-1] for s in shards]
    )
    assert read_manifest(local)["total_rows"] == sum(s.rows for s in shards)

    client = s3_bucket.client()
    client.put_object(
        Bucket=s3_bucket.name,
        Key=f"store/objects/sha256/{tampered.sha256[:2]}/{tampered.sha256}",
        Body=b"other bytes",
    )
    shard_key = shards[0].uri.removeprefix(f"{s3_bucket.url}/")
    client.put_object(Bucket=s3_bucket.name, Key=shard_key, Body=b"not arrow")
    with sessions() as session:
        report = verify_everything(session)
    assert [(d.kind, d.ref) for d in report.discrepancies] == [
        ("object", f"recording {tampered.id}"),
        ("shard", f"feature set {feature_set.id} shard {shards[0].uri}"),
    ]
    assert all("!= recorded" in d.detail for d in report.discrepancies)

    # The cached copy is checked on every use; a fresh reader refuses the changed shard.
    monkeypatch.setenv("FAIRCHORD_STAGING_DIR", str(tmp_path / "other-machine"))
    with pytest.raises(StoreIntegrityError, match="was recorded: not used"):
        local_feature_root(files)
