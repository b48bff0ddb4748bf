"""Fixtures shared by every test package: environment isolation and provenance databases."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from provenance import migrate
from provenance.db import make_engine, session_factory
from tests.common.databases import ENGINES, throwaway_database
from tests.common.s3 import S3Bucket, S3Endpoint, moto_server, new_bucket

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own FAIRCHORD_HOME and no inherited database or store URL."""
    home = tmp_path / "home"
    monkeypatch.setenv("FAIRCHORD_HOME", str(home))
    monkeypatch.delenv("FAIRCHORD_DB_URL", raising=False)
    monkeypatch.delenv("FAIRCHORD_STORE_URL", raising=False)
    monkeypatch.setenv("FAIRCHORD_STAGING_DIR", str(tmp_path / "staging"))
    return home


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database URL, once per engine (SQLite and PostgreSQL)."""
    with throwaway_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A database migrated to head with the real Alembic migrations."""
    eng = make_engine(db_url)
    migrate.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_factory(engine)() as s:
        yield s


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """moto_server on a free localhost port, once per session (a test server only)."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Bucket:
    """A new bucket on the test endpoint, with the AWS variables pointing at it."""
    return new_bucket(s3_endpoint, monkeypatch, tmp_path)
