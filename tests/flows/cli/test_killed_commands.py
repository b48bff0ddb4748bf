"""A command killed with SIGKILL leaves no process behind: not its temporary Prefect server,
not the step a demo was running, not any child started through ``flows.child_processes``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's"
)


def command_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        FAIRCHORD_HOME=str(home),
        FAIRCHORD_DB_URL=f"sqlite:///{home / 'fairchord.db'}",
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    return env


def wait_for_child(parent: subprocess.Popen[bytes], match: Callable[[list[str]], bool]) -> int:
    """The pid of the first child of ``parent`` whose command line matches."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert parent.poll() is None, f"the command ended ({parent.returncode}) before its child"
        for child in psutil.Process(parent.pid).children():
            try:
                if match(child.cmdline()):
                    return child.pid
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)
    raise AssertionError("the child never started")


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def kill_and_check(parent: subprocess.Popen[bytes], child: int, seconds: float) -> None:
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    try:
        assert gone_within(child, seconds), f"child {child} outlived its killed command"
    finally:
        try:
            psutil.Process(child).kill()
        except psutil.NoSuchProcess:
            pass


def test_killed_ingest_takes_its_temporary_prefect_server_with_it(tmp_path: Path) -> None:
    """A Dask run is a Prefect flow run, so without an API it starts a temporary server;
    Prefect's own (uvicorn, ~235 MB) used to live on after a SIGKILL."""
    env = command_env(tmp_path)
    cli = [sys.executable, "-m", "flows.cli"]
    subprocess.run([*cli, "db", "upgrade"], cwd=REPO, env=env, check=True, capture_output=True)
    source = tmp_path / "incoming"
    source.mkdir()
    (source / "a.wav").write_bytes(b"RIFF")  # quarantined later; the server starts first
    ingest = subprocess.Popen(
        [*cli, "ingest", str(source), "--lenient", "--dask"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = wait_for_child(ingest, lambda argv: "uvicorn" in argv)
    kill_and_check(ingest, server, seconds=15)


def test_killed_demo_takes_its_running_step_with_it(tmp_path: Path) -> None:
    """The demo runs each step as a child; killing the demo used to leave that step running."""
    demo = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "demo", "--stop-after", "3"],
        cwd=REPO,
        env=command_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Step 3 builds the demo corpus: half a minute or more of work when killed at its start.
    step = wait_for_child(demo, lambda argv: argv[-2:] == ["corpus", "demo"])
    kill_and_check(demo, step, seconds=3)


def test_a_finished_command_stops_its_temporary_server(tmp_path: Path) -> None:
    """The normal way out also stops the server, and the flow really reported to it."""
    env = command_env(tmp_path)
    cli = [sys.executable, "-m", "flows.cli"]
    subprocess.run([*cli, "db", "upgrade"], cwd=REPO, env=env, check=True, capture_output=True)
    source = tmp_path / "incoming"
    source.mkdir()
    done = subprocess.run(
        [*cli, "ingest", str(source), "--json", "--dask"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert '"run_id"' in done.stdout
    assert "Finished in state" not in done.stderr  # Prefect's INFO lines: FAIRCHORD_DEBUG=1
    assert (tmp_path / "prefect" / "prefect.db").is_file()  # the server's own database
    leftover = [
        p.pid
        for p in psutil.process_iter(["cmdline", "environ"])
        if "uvicorn" in (p.info["cmdline"] or [])
        and (p.info["environ"] or {}).get("PREFECT_HOME") == env["PREFECT_HOME"]
    ]
    assert leftover == []


def test_without_a_prefect_api_a_command_starts_no_server(tmp_path: Path) -> None:
    """No PREFECT_API_URL: the flow runs as plain calls; no Prefect server, no Prefect
    database, and the run is recorded as any other."""
    env = command_env(tmp_path)
    cli = [sys.executable, "-m", "flows.cli"]
    subprocess.run([*cli, "db", "upgrade"], cwd=REPO, env=env, check=True, capture_output=True)
    source = tmp_path / "incoming"
    source.mkdir()
    (source / "a.wav").write_bytes(b"RIFF")  # quarantined: the run goes on and says so
    ingest = subprocess.Popen(
        [*cli, "ingest", str(source), "--json"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    children: set[str] = set()
    while ingest.poll() is None:
        try:
            children |= {" ".join(c.cmdline()) for c in psutil.Process(ingest.pid).children()}
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    out, err = ingest.communicate()
    assert ingest.returncode == 4, err  # one item quarantined
    assert '"quarantined": 1' in out
    assert not [c for c in children if "uvicorn" in c], children
    assert not (tmp_path / "prefect" / "prefect.db").exists()
