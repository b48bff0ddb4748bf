"""SIGKILL an ingestion at several points, run it again, and the database and object store end
exactly as after one clean run: no duplicate, no orphan object, no row without its object.

The process kills itself at a named point (``FAIRCHORD_CRASH_AT=<point>:<n>``, see
``provenance.object_store.crash_point``), so each kill lands where intended.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from provenance import migrate
from provenance.db import make_engine, session_factory
from provenance.ingest_runs import ingest_source
from provenance.models import IngestionRun
from provenance.object_store import ObjectStore, store_consistency
from provenance.sources import open_source
from tests.common.databases import throwaway_database
from tests.common.ingest import TEST_LIMITS, build_bad_corpus, db_snapshot

REPO = Path(__file__).resolve().parents[2]

RUNNER = """
import sys
from provenance.db import make_engine, session_factory
from provenance.ingest_runs import ingest_source
from provenance.object_store import ObjectStore
from provenance.sources import open_source
from tests.common.ingest import TEST_LIMITS

db_url, source, store_root = sys.argv[1:4]
ingest_source(
    session_factory(make_engine(db_url)), open_source(source), ObjectStore(store_root),
    limits=TEST_LIMITS,
)
"""

# (crash point, n-th time) → what the killed run leaves behind before the rerun repairs it.
KILL_POINTS = {
    "object_tmp_written:3": "a temporary file",  # mid-copy into the store
    "before_object:4": "nothing extra",  # hashed and validated, nothing stored yet
    "after_object:2": "an object without a row",  # stored, no transaction yet
    "before_commit:5": "an object without a row",  # rows flushed, never committed
    "after_commit:6": "nothing extra",  # committed, killed before the next item
}


def kill_run(db_url: str, manifest: Path, store: ObjectStore, point: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, db_url, str(manifest), store.root_uri],
        cwd=REPO,
        env=dict(os.environ, FAIRCHORD_CRASH_AT=point),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, f"expected SIGKILL at {point}: {proc.stderr[-2000:]}"


def normalized(engine: Engine, store: ObjectStore) -> dict[str, Any]:
    with session_factory(engine)() as s:
        assert store_consistency(s, store) == ([], [])  # no orphan object, no missing object
        snap = db_snapshot(s)
    # Objects are recorded home-relative inside the home and absolute elsewhere: compare the
    # part after the store's own prefix.
    prefix = store.uri_for("0" * 64).rsplit("/sha256/", 1)[0]
    snap["recordings"] = [
        tuple(v.replace(prefix, "<store>") if isinstance(v, str) else v for v in row)
        for row in snap["recordings"]
    ]
    snap["objects"] = sorted(store.iter_shas())
    return snap


def clean_reference(kind: str, manifest: Path, tmp_path: Path) -> dict[str, Any]:
    with throwaway_database(kind, tmp_path / "clean") as url:
        engine = make_engine(url)
        try:
            migrate.upgrade(engine)
            store = ObjectStore(str(tmp_path / "objects-clean"))
            ingest_source(
                session_factory(engine), open_source(str(manifest)), store, limits=TEST_LIMITS
            )
            return normalized(engine, store)
        finally:
            engine.dispose()


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_kill_then_rerun_equals_one_clean_run(
    engine: Engine, db_url: str, tmp_path: Path, point: str
) -> None:
    (tmp_path / "clean").mkdir()
    corpus = build_bad_corpus(tmp_path / "src")
    store = ObjectStore(str(tmp_path / "objects"))
    kill_run(db_url, corpus.manifest, store, point)

    with session_factory(engine)() as s:
        orphans, missing = store_consistency(s, store)
    assert missing == []  # a committed row always has its object, even mid-crash
    leftovers = list((Path(store.root) / "tmp").glob("*"))
    if KILL_POINTS[point] == "an object without a row":
        assert len(orphans) == 1
    else:
        assert orphans == []
    assert len(leftovers) == (1 if KILL_POINTS[point] == "a temporary file" else 0)

    rerun = ingest_source(
        session_factory(engine), open_source(str(corpus.manifest)), store, limits=TEST_LIMITS
    )
    assert rerun.counts["quarantined"] == 15
    assert not list((Path(store.root) / "tmp").glob("*"))
    kind = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    assert normalized(engine, store) == clean_reference(kind, corpus.manifest, tmp_path)
    with session_factory(engine)() as s:
        statuses = sorted(r.status for r in s.scalars(select(IngestionRun)))
    assert statuses == ["completed", "interrupted"]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_kill_the_cli_flow_then_rerun(engine: Engine, db_url: str, tmp_path: Path) -> None:
    """The same through `fairchord ingest` (the Prefect flow), killed after storing an object."""
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "clean").mkdir()
    corpus = build_bad_corpus(tmp_path / "src")
    home = Path(os.environ["FAIRCHORD_HOME"])
    env = dict(
        os.environ,
        FAIRCHORD_DB_URL=db_url,
        PREFECT_API_URL=str(PREFECT_API_URL.value()),  # the test harness's server
    )
    command = [
        sys.executable,
        "-c",
        "from flows.cli import main; main()",
        "ingest",
        str(corpus.manifest),
        "--max-duration",
        str(TEST_LIMITS.max_duration_s),
        "--min-duration",
        str(TEST_LIMITS.min_duration_s),
        "--max-mb",
        str(TEST_LIMITS.max_bytes / 2**20),
        "--json",
    ]
    killed = subprocess.run(
        command,
        cwd=REPO,
        env=dict(env, FAIRCHORD_CRASH_AT="after_object:3"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    store = ObjectStore(str(home / "objects"))
    with session_factory(engine)() as s:
        orphans, missing = store_consistency(s, store)
    assert missing == [] and len(orphans) >= 1
    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 4, rerun.stderr[-2000:]  # completed; the bad corpus quarantined
    assert normalized(engine, store) == clean_reference("postgresql", corpus.manifest, tmp_path)
