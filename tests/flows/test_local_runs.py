"""Flows without a Prefect API: the same code as plain calls, with the tasks' retries, a
thread pool for submitted tasks, Python logging and no artifacts; and the same outcomes as
a Prefect flow run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import Engine

from flows.featurize import run_featurize
from flows.ingest import run_ingest
from flows.local_runs import (
    api_configured,
    in_local_run,
    publish,
    retry_on,
    run_flow,
    run_logger,
    step,
)
from provenance.db import session_factory
from provenance.object_store import default_object_store, store_consistency
from tests.common.ingest import TEST_LIMITS, build_bad_corpus, db_snapshot

calls: list[str] = []


@step(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_on(OSError))
def flaky(name: str, failures: int) -> str:
    calls.append(name)
    if calls.count(name) <= failures:
        raise OSError(f"{name}: try again")
    return name.upper()


@step(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_on(OSError))
def broken(name: str) -> str:
    calls.append(name)
    raise ValueError(f"{name}: not an I/O error")


@flow(name="local-demo")
def demo_flow(names: list[str]) -> dict[str, object]:
    run_logger("local-demo").info("local run of %d names", len(names))
    publish(create_markdown_artifact, key="never", markdown="# not published")
    futures = [flaky.submit(n, 1) for n in names]
    return {"direct": flaky("direct", 2), "submitted": [f.result() for f in futures]}


@pytest.fixture
def no_api() -> Iterator[None]:
    """As on a machine where no Prefect API is configured."""
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert not api_configured()
        yield


def test_steps_retry_their_io_errors_only(no_api: None) -> None:
    calls.clear()
    result = run_flow(demo_flow, workers=2, names=["a", "b", "c"])
    assert result == {"direct": "DIRECT", "submitted": ["A", "B", "C"]}
    assert calls.count("direct") == 3 and all(calls.count(n) == 2 for n in "abc")

    @flow(name="local-broken")
    def broken_flow() -> str:
        return str(broken("x"))

    calls.clear()
    with pytest.raises(ValueError, match="not an I/O error"):
        run_flow(broken_flow)
    assert calls == ["x"]  # a ValueError is not retried
    assert not in_local_run()


def test_ingest_runs_locally_with_the_same_outcomes(
    engine: Engine, db_url: str, tmp_path: Path, no_api: None
) -> None:
    corpus = build_bad_corpus(tmp_path)
    summary = run_ingest(str(corpus.manifest), db_url=db_url, limits=TEST_LIMITS)
    got = {
        o["locator"]: (o["status"], o["reason_code"], tuple(o["flags"]))
        for o in summary["outcomes"]
    }
    assert got == corpus.expected
    assert summary["status"] == "completed" and summary["prefect_flow_run_id"] is None
    with session_factory(engine)() as session:
        assert store_consistency(session, default_object_store()) == ([], [])
        first = db_snapshot(session)
    again = run_ingest(str(corpus.manifest), db_url=db_url, limits=TEST_LIMITS)
    assert again["counts"]["accepted"] == 0
    with session_factory(engine)() as session:
        assert db_snapshot(session)["recordings"] == first["recordings"]
    featurized = run_featurize(db_url=db_url)
    assert featurized["recordings"] == summary["counts"]["accepted"]
