"""The ingest flow on a two-worker local Dask cluster writes exactly what the thread runner does."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from flows.ingest import run_ingest
from provenance import migrate
from provenance.db import make_engine, session_factory
from provenance.object_store import ObjectStore, store_consistency
from tests.common.ingest import TEST_LIMITS, build_bad_corpus, db_snapshot


def snapshot_without_store_root(engine: Engine, store: ObjectStore) -> dict[str, object]:
    with session_factory(engine)() as s:
        assert store_consistency(s, store) == ([], [])
        snap = db_snapshot(s)
    root = store.uri_for("0" * 64).rsplit("/sha256/", 1)[0]
    snap["recordings"] = [
        tuple(v.replace(root, "<store>") if isinstance(v, str) else v for v in row)
        for row in snap["recordings"]  # type: ignore[attr-defined]
    ]
    return snap


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_dask_runner_matches_thread_runner(engine: Engine, db_url: str, tmp_path: Path) -> None:
    corpus = build_bad_corpus(tmp_path / "src")
    thread_store = ObjectStore(str(tmp_path / "objects-threads"))
    threads = run_ingest(
        str(corpus.manifest), db_url=db_url, store_uri=thread_store.root_uri, limits=TEST_LIMITS
    )

    dask_url = f"sqlite:///{tmp_path / 'dask.sqlite'}"
    dask_engine = make_engine(dask_url)
    migrate.upgrade(dask_engine)
    dask_store = ObjectStore(str(tmp_path / "objects-dask"))
    on_dask = run_ingest(
        str(corpus.manifest),
        db_url=dask_url,
        store_uri=dask_store.root_uri,
        limits=TEST_LIMITS,
        use_dask=True,
    )
    try:
        assert on_dask["counts"] == threads["counts"]
        strip = ("recording_id", "duplicate_of_id")
        assert [{k: v for k, v in o.items() if k not in strip} for o in on_dask["outcomes"]] == [
            {k: v for k, v in o.items() if k not in strip} for o in threads["outcomes"]
        ]
        assert sorted(dask_store.iter_shas()) == sorted(thread_store.iter_shas())
        assert snapshot_without_store_root(dask_engine, dask_store) == snapshot_without_store_root(
            engine, thread_store
        )
    finally:
        dask_engine.dispose()
