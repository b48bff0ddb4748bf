"""The real thing: `fairchord server` on a free port with its own PREFECT_HOME, `fairchord serve`
with a short interval schedule, and one scheduled ingest landing in the provenance DB.

Both processes run in their own process groups and are stopped by group (serve first, as
Prefect needs), so nothing is left running, whether the test passes or fails.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
import pytest
import soundfile as sf
from sqlalchemy import select

from provenance import migrate
from provenance.db import make_engine, session_factory
from provenance.models import IngestionRun, Recording
from tests.common.audio import synth_music

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT = 180.0  # 20-40 s is usual on 2 shared cores
INGEST_TIMEOUT = 240.0
STOP_TIMEOUT = 60.0
INTERVAL_SECONDS = 10

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Group:
    """A command started as the leader of a new process group, its output in a log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self._out: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(
            command,
            env=env,
            cwd=REPO,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid = self.proc.pid

    def tail(self, chars: int = 4000) -> str:
        return (
            f"--- {self.name} log ({self.log}) ---\n"
            + self.log.read_text(errors="replace")[-chars:]
        )

    def alive_members(self) -> list[int]:
        """Processes of the group that still run (zombies excluded)."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.pgid and fields[0] != "Z":
                pids.append(int(stat.parent.name))
        return pids

    def stop(self) -> None:
        """SIGTERM the group; SIGKILL whatever is left after STOP_TIMEOUT."""
        try:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if not self.alive_members():
                    break
                try:
                    os.killpg(self.pgid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + STOP_TIMEOUT
                while self.alive_members() and time.monotonic() < deadline:
                    self.proc.poll()  # reap the leader, so it does not linger as a zombie
                    time.sleep(0.5)
            self.proc.wait(timeout=STOP_TIMEOUT)
        finally:
            self._out.close()


def wait_for(what: str, check: Callable[[], T | None], timeout: float, *groups: Group) -> T:
    """Poll ``check`` until it returns a value; fail at once if one of ``groups`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for group in groups:
            if group.proc.poll() is not None:
                pytest.fail(
                    f"{group.name} exited with {group.proc.returncode} while waiting for "
                    f"{what}\n" + "\n".join(g.tail() for g in groups)
                )
        value = check()
        if value is not None:
            return value
        time.sleep(1.0)
    pytest.fail(f"no {what} after {timeout:.0f} s\n" + "\n".join(g.tail() for g in groups))


@pytest.fixture
def music(tmp_path: Path) -> dict[str, str]:
    """Three short files to ingest: name → sha256."""
    folder = tmp_path / "music"
    folder.mkdir()
    shas = {}
    for i in range(3):
        path = folder / f"take{i}.wav"
        sf.write(path, synth_music(40 + i, seconds=2.0), 22050)
        shas[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return shas


@pytest.fixture
def groups() -> Iterator[list[Group]]:
    """Started process groups, stopped in reverse order (serve before server) at the end."""
    started: list[Group] = []
    yield started
    for group in reversed(started):
        group.stop()
    left = {g.name: g.alive_members() for g in started}
    assert not any(left.values()), f"processes left running: {left}"


def test_scheduled_ingest_runs_on_a_real_server(
    tmp_path: Path, _isolated_home: Path, music: dict[str, str], groups: list[Group]
) -> None:
    engine = make_engine()  # SQLite under the test's FAIRCHORD_HOME
    migrate.upgrade(engine)
    (tmp_path / "dnt.csv").write_text("party\nNobody We Know\n", encoding="utf-8")
    config = tmp_path / "schedules.toml"
    config.write_text(
        f"""
[serve]
limit = 1

[[ingest]]
name = "music"
source = "music"
interval_seconds = {INTERVAL_SECONDS}

[consent_sync]
files = ["dnt.csv"]
cron = "0 2 * * *"

[audit]
cron = "0 5 * * *"
""",
        encoding="utf-8",
    )

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server = Group(
        "server",
        [sys.executable, "-m", "flows.cli", "server", "--port", str(port), "--no-ui"],
        base_env,
        tmp_path / "server.log",
    )
    groups.append(server)

    def healthy() -> bool | None:
        try:
            return httpx.get(f"{api}/health", timeout=5).status_code == 200 or None
        except httpx.HTTPError:
            return None

    wait_for("healthy Prefect server", healthy, SERVER_START_TIMEOUT, server)
    banner = " ".join(server.log.read_text().split())
    assert f"export PREFECT_API_URL={api}" in banner
    assert "not the `prefect config set PREFECT_API_URL=...`" in banner
    assert (_isolated_home / "prefect" / "prefect.db").is_file()  # its own home and database

    serve = Group(
        "serve",
        [sys.executable, "-m", "flows.cli", "serve", str(config)],
        base_env
        | {
            "PREFECT_API_URL": api,
            "PREFECT_HOME": str(tmp_path / "prefect-client"),
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        },
        tmp_path / "serve.log",
    )
    groups.append(serve)

    sessions = session_factory(engine)

    def completed_run() -> dict[str, Any] | None:
        with sessions() as s:
            run = s.execute(
                select(IngestionRun)
                .where(IngestionRun.status == "completed")
                .order_by(IngestionRun.id)
                .limit(1)
            ).scalar_one_or_none()
            if run is None:
                return None
            return {"flow_run_id": run.prefect_flow_run_id, "counts": dict(run.counts)}

    run = wait_for(
        "completed scheduled ingestion run", completed_run, INGEST_TIMEOUT, server, serve
    )

    # The provenance DB holds the three files, accepted by that first run.
    assert run["counts"]["accepted"] == 3 and run["counts"]["quarantined"] == 0, run
    with sessions() as s:
        recordings = s.execute(select(Recording.sha256, Recording.status)).tuples().all()
    assert sorted(recordings) == sorted((sha, "accepted") for sha in music.values())
    engine.dispose()

    # The run came from the schedule of the ingest deployment, not from a manual trigger.
    flow_run = httpx.get(f"{api}/flow_runs/{run['flow_run_id']}", timeout=30).json()
    assert flow_run["auto_scheduled"] is True, flow_run
    deployments = httpx.post(f"{api}/deployments/filter", json={}, timeout=30).json()
    by_name = {d["name"]: d for d in deployments if d["id"] == flow_run["deployment_id"]}
    assert set(by_name) == {"music"}
    assert by_name["music"]["schedules"][0]["schedule"]["interval"] == INTERVAL_SECONDS
    assert by_name["music"]["parameters"]["source_uri"] == str(tmp_path / "music")

    # All three deployments were registered with their schedules.
    schedules = {
        (d["entrypoint"], d["name"]): d["schedules"][0]["schedule"].get("cron") for d in deployments
    }
    assert schedules == {
        ("flows.ingest.ingest_source_flow", "music"): None,
        ("flows.consent_sync.consent_sync_flow", "scheduled"): "0 2 * * *",
        ("flows.audit.audit_flow", "scheduled"): "0 5 * * *",
    }
