"""Ingest from an s3:// source into an S3 object store on moto_server, then audit verify,
on SQLite and PostgreSQL; an object changed in the bucket afterwards is reported."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
from sqlalchemy import Engine, select

from flows.ingest import run_ingest
from provenance.audit.integrity import verify_everything
from provenance.db import session_factory
from provenance.models import Recording
from tests.common.audio import write_music
from tests.common.ingest import TEST_LIMITS
from tests.common.s3 import S3Bucket

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
        report = verify_everything(session)
        assert report.ok, [str(d) for d in report.discrepancies]
        assert report.checked["object"] == 3
        tampered = recordings[0]

    s3_bucket.client().put_object(
        Bucket=s3_bucket.name,
        Key=f"store/objects/sha256/{tampered.sha256[:2]}/{tampered.sha256}",
        Body=b"other bytes",
    )
    with sessions() as session:
        report = verify_everything(session)
    assert [(d.kind, d.ref) for d in report.discrepancies] == [
        ("object", f"recording {tampered.id}")
    ]
    assert "!= recorded" in report.discrepancies[0].detail
