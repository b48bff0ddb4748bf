"""Two ingestion processes over the same source at the same time, on PostgreSQL: every item is
recorded once, and the database ends as after one clean run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from provenance import migrate
from provenance.db import make_engine, session_factory
from provenance.object_store import ObjectStore, store_consistency
from tests.common.audio import write_music
from tests.common.databases import throwaway_database
from tests.common.ingest import build_bad_corpus, db_snapshot

REPO = Path(__file__).resolve().parents[2]

# Runs one plain (Prefect-free) ingestion, after waiting for a start signal file.
RUNNER = """
import os, sys, time
from pathlib import Path
from provenance.db import make_engine, session_factory
from provenance.ingest_runs import ingest_source
from provenance.object_store import ObjectStore
from provenance.sources import open_source
from tests.common.ingest import TEST_LIMITS

db_url, source, store_root, go = sys.argv[1:5]
engine = make_engine(db_url)
while not Path(go).exists():
    time.sleep(0.01)
result = ingest_source(
    session_factory(engine), open_source(source), ObjectStore(store_root), limits=TEST_LIMITS
)
counts = result.counts
print(counts["accepted"] + counts["near_duplicate"], counts["duplicate"], counts["unchanged"])
"""


def run_ingest_process(
    db_url: str, source: str, store: str, go: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, db_url, source, store, str(go)],
        cwd=REPO,
        env=dict(os.environ, **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def corpus_with_more_music(base: Path) -> Path:
    corpus = build_bad_corpus(base)
    extra = []
    for i in range(10):
        name = f"extra-{i:02d}.{['wav', 'flac', 'ogg'][i % 3]}"
        write_music(corpus.root / name, 100 + i, seconds=1.5)
        extra.append(f"{name},Extra {i},Artist {i % 4},CC-BY-4.0,,")
    with open(corpus.manifest, "ab") as f:
        f.write(("\n".join(extra) + "\n").encode())
    return corpus.manifest


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_concurrent_runs_write_each_item_once(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    manifest = corpus_with_more_music(tmp_path / "src")
    store = ObjectStore(str(tmp_path / "objects"))
    go = tmp_path / "go"
    procs = [run_ingest_process(db_url, str(manifest), store.root_uri, go) for _ in range(2)]
    time.sleep(1.0)  # both processes import and connect, then start together
    go.touch()
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    new = [tuple(int(x) for x in out.split()) for out, _ in outputs]
    print("new, duplicate, unchanged per run:", new)
    # Every valid item is new in exactly one of the two runs and known in the other.
    assert sum(n for n, _, _ in new) == 16
    assert sum(dup for _, dup, _ in new) == 1  # copy-of-good1.wav: a sighting, once
    assert all(n + dup + unchanged == 17 for n, dup, unchanged in new)

    with session_factory(engine)() as s:
        concurrent = db_snapshot(s)
        assert store_consistency(s, store) == ([], [])

    # The same source ingested once, alone, into a fresh database.
    with throwaway_database("postgresql", tmp_path) as clean_url:
        clean_engine = make_engine(clean_url)
        migrate.upgrade(clean_engine)
        clean_store = ObjectStore(str(tmp_path / "objects-clean"))
        go_clean = tmp_path / "go-clean"
        go_clean.touch()
        proc = run_ingest_process(clean_url, str(manifest), clean_store.root_uri, go_clean)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        with session_factory(clean_engine)() as s:
            clean = db_snapshot(s)
        clean_engine.dispose()
    clean["recordings"] = [
        tuple(
            v.replace(clean_store.root_uri, store.root_uri) if isinstance(v, str) else v for v in r
        )
        for r in clean["recordings"]
    ]
    assert concurrent == clean
