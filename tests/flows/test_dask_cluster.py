"""`ingest` and `featurize` with ``--dask-address`` on a real Dask cluster (a `dask scheduler`
and two `dask worker` processes on localhost) write what a local run writes.

The workers start with another HOME, no ``FAIRCHORD_HOME`` or ``FAIRCHORD_DB_URL`` and
another working folder: everything they read or write must come through the store URL
and locations the flow hands them. The corpus is the small one of the ingest tests
(valid files in five codecs beside every quarantine case), not the demo corpus: the
demo's hundreds of files take minutes to featurize on two cores, and these few cover
every kind of row ingestion writes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from flows.child_processes import popen_owned
from flows.cli import app
from flows.local_runs import dask_address
from provenance import migrate
from provenance.db import make_engine, session_factory
from provenance.models import FeatureSetRecording, FeatureShard, IngestionRun, Recording
from provenance.object_store import ObjectStore
from tests.common.ingest import TEST_LIMITS, build_bad_corpus, db_snapshot

REPO = Path(__file__).resolve().parents[2]
DASK = Path(sys.executable).parent / "dask"
LIMIT_OPTIONS = [
    "--max-duration",
    str(TEST_LIMITS.max_duration_s),
    "--min-duration",
    str(TEST_LIMITS.min_duration_s),
    "--max-mb",
    str(TEST_LIMITS.max_bytes / 2**20),
]


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A scheduler and two single-threaded workers: (scheduler address, the workers' HOME)."""
    other = tmp_path / "worker-home"
    other.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRCHORD_")}
    env.update(HOME=str(other), PYTHONPATH=str(REPO))
    scheduler_file = tmp_path / "scheduler.json"
    log = (tmp_path / "cluster.log").open("wb")
    processes = [
        popen_owned(
            [str(DASK), "scheduler", "--port", "0", "--no-dashboard"]
            + ["--scheduler-file", str(scheduler_file)],
            env=env,
            cwd=other,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ]
    try:
        deadline = time.monotonic() + 30
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert processes[0].poll() is None, "the scheduler exited"
            assert time.monotonic() < deadline, "the scheduler wrote no address in 30 s"
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(2):
            processes.append(
                popen_owned(
                    [str(DASK), "worker", address, "--nthreads", "1", "--no-dashboard"],
                    env=env,
                    cwd=other,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address, other
    finally:
        _stop(processes)
        log.close()


def _run(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def _home(monkeypatch: pytest.MonkeyPatch, home: Path) -> str:
    home.mkdir()
    url = f"sqlite:///{home / 'provenance.sqlite'}"
    monkeypatch.setenv("FAIRCHORD_HOME", str(home))
    monkeypatch.setenv("FAIRCHORD_DB_URL", url)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


def _rows(url: str) -> dict[str, Any]:
    """Everything ingest and featurize write, without ids, run ids and timestamps."""
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            snapshot = db_snapshot(s)
            snapshot["measured"] = sorted(
                (r.sha256, r.title, r.duration_s, r.sample_rate, r.channels, r.reason_detail)
                for r in s.scalars(select(Recording))
            )
            sha_of = {rid: sha for rid, sha in s.execute(select(Recording.id, Recording.sha256))}
            shard_name = {
                sh.id: sh.uri.rsplit("/", 1)[-1] for sh in s.scalars(select(FeatureShard))
            }
            snapshot["shards"] = sorted(
                (sh.uri, sh.sha256, sh.rows) for sh in s.scalars(select(FeatureShard))
            )
            snapshot["covered"] = sorted(
                (sha_of[c.recording_id], c.segments, shard_name.get(c.shard_id or -1))
                for c in s.scalars(select(FeatureSetRecording))
            )
        return snapshot
    finally:
        engine.dispose()


def _files(home: Path) -> dict[str, Any]:
    """The home's object store and feature set, path → bytes (not the database); the
    feature manifest parsed, without ``updated_at``, the one value that is the time of
    writing rather than a function of the input."""
    files: dict[str, Any] = {
        p.relative_to(home).as_posix(): p.read_bytes()
        for folder in ("objects", "features")
        for p in sorted((home / folder).rglob("*"))
        if p.is_file() and "tmp" not in p.relative_to(home).parts
    }
    for name in [n for n in files if n.endswith("/manifest.json")]:
        manifest = json.loads(files[name])
        assert manifest.pop("updated_at")
        files[name] = manifest
    return files


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_address_is_checked_before_any_work(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert dask_address(f"127.0.0.1:{port}") == f"tcp://127.0.0.1:{port}"
        assert dask_address(f" tcp://127.0.0.1:{port}/ ") == f"tcp://127.0.0.1:{port}"
    for bad in ("http://127.0.0.1:8786", "tcp://127.0.0.1", "tcp://:8786", "tcp://h:port"):
        with pytest.raises(ValueError, match="address|scheme"):
            dask_address(bad)
    with pytest.raises(ValueError, match="no Dask scheduler answers"):
        dask_address(f"tcp://127.0.0.1:{_closed_port()}", timeout_s=1)


@pytest.mark.parametrize("how", ["option", "environment"])
def test_an_unreachable_cluster_exits_2_and_writes_nothing(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = build_bad_corpus(tmp_path / "src")
    home = tmp_path / "home"
    url = _home(monkeypatch, home)
    address = f"tcp://127.0.0.1:{_closed_port()}"
    given: list[str] = []
    if how == "option":
        given = ["--dask-address", address]
    else:
        monkeypatch.setenv("FAIRCHORD_DASK_ADDRESS", address)
    for command in (["ingest", str(corpus.manifest), *given], ["featurize", *given]):
        started = time.monotonic()
        result = CliRunner().invoke(app, command)
        assert time.monotonic() - started < 15
        assert result.exit_code == 2, result.output
        assert f"no Dask scheduler answers at {address}" in result.output
    engine = make_engine(url)
    with session_factory(engine)() as s:
        assert s.scalars(select(IngestionRun)).all() == []
        assert s.scalars(select(Recording)).all() == []
    engine.dispose()
    assert not (home / "objects").exists() and not (home / "features").exists()


def test_a_store_records_locations_in_the_home_it_is_given(tmp_path: Path) -> None:
    """A worker's store: locations relative to the client's home, whatever its own."""
    client_home = tmp_path / "client"
    store = ObjectStore(str(client_home / "objects"), home=client_home)
    sha = "ab" * 32
    assert store.uri_for(sha) == f"home://objects/sha256/ab/{sha}"
    assert store.url == (client_home / "objects").resolve().as_uri()
    assert ObjectStore(store.url, home=client_home).uri_for(sha) == store.uri_for(sha)
    elsewhere = ObjectStore(str(tmp_path / "other"), home=client_home)
    assert elsewhere.uri_for(sha).startswith("file://")


@pytest.mark.slow
def test_existing_cluster_writes_what_a_local_run_writes(
    cluster: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address, worker_home = cluster
    corpus = build_bad_corpus(tmp_path / "src")
    ingest = ["ingest", str(corpus.manifest), "--lenient", *LIMIT_OPTIONS]

    on_cluster = tmp_path / "client-home"
    cluster_url = _home(monkeypatch, on_cluster)
    ingested = _run(*ingest, "--dask-address", address)
    featurized = _run("featurize", "--dask-address", address)

    local = tmp_path / "local-home"
    local_url = _home(monkeypatch, local)
    ingested_locally = _run(*ingest)
    featurized_locally = _run("featurize")

    assert ingested["counts"] == ingested_locally["counts"]
    assert ingested["counts"]["accepted"] >= 4 and ingested["counts"]["quarantined"] >= 4
    assert featurized["segments"] == featurized_locally["segments"] > 0
    assert featurized["failed"] == featurized_locally["failed"] == []
    assert _rows(cluster_url) == _rows(local_url)
    # Objects and shards byte for byte (the flow writes shards in recording order from what
    # the tasks return, so the runner leaves no trace), and the feature manifest.
    files = _files(on_cluster)
    assert files.keys() == _files(local).keys()
    assert any(name.endswith(".arrow") for name in files)
    assert files == _files(local)
    # The tasks ran on the workers, which never made a fairchord home of their own.
    assert not (worker_home / ".fairchord").exists()
    from distributed import Client

    with Client(address, timeout=10) as client:
        ran = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert any("prepare_source_item" in p for p in ran), ran
    assert any("featurize_one" in p for p in ran), ran
