"""The Prefect API a command's flow runs report to: the configured one, or a temporary one it owns.

With ``PREFECT_API_URL`` unset, Prefect would start its own temporary server
on the first flow run, and that server outlives a command killed with SIGKILL.
:func:`prefect_api` starts the same server (Prefect's server app under uvicorn,
UI off) as a child that the kernel stops when the command dies, points Prefect
at it for the duration, and stops it on the way out.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

from flows.child_processes import popen_owned

# uvicorn exits with 3 when its port was taken between our check and its bind.
_PORT_TAKEN = 3
_PORT_ATTEMPTS = 5


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_server(port: int) -> subprocess.Popen[bytes]:
    import prefect
    from prefect.settings import get_current_settings

    env = {
        **os.environ,
        **get_current_settings().to_environment_variables(exclude_unset=True),
        # What Prefect sets for its own temporary server.
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    command = [sys.executable, "-m", "uvicorn"]
    command += ["--app-dir", str(prefect.__module_path__.parent)]
    command += ["--factory", "prefect.server.api.server:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "error", "--lifespan", "on"]
    return popen_owned(command, env=env)


def _wait_healthy(process: subprocess.Popen[bytes], api_url: str, timeout_s: float) -> bool:
    """True once the server answers; False if it exited because its port was taken."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client() as client:
        while time.monotonic() < deadline:
            code = process.poll()
            if code == _PORT_TAKEN:
                return False
            if code is not None:
                raise RuntimeError(f"the temporary Prefect server exited with code {code}")
            try:
                if client.get(f"{api_url}/health", timeout=2.0).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"the temporary Prefect server did not answer within {timeout_s:.0f} s")


def _drain_prefect_workers() -> None:
    """Send the logs and events Prefect still holds before their server goes away."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:  # the log worker never started
            pass
        drained = EventsWorker.drain_all()
        if inspect.isawaitable(drained):
            await drained

    run_coro_as_sync(drain())


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """The API URL flow runs report to while the block runs.

    The configured ``PREFECT_API_URL`` if there is one; otherwise a temporary
    server owned by this process (see the module docstring). Enter it from the
    command's main thread: the server's death signal follows the thread that
    started it.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    configured = PREFECT_API_URL.value()
    if configured:
        yield str(configured)
        return
    timeout_s = float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    for _ in range(_PORT_ATTEMPTS):
        port = _free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        process = _start_server(port)
        try:
            healthy = _wait_healthy(process, api_url, timeout_s)
        except BaseException:
            _stop(process)
            raise
        if healthy:
            break
    else:
        raise RuntimeError(f"no free port for a temporary Prefect server in {_PORT_ATTEMPTS} tries")
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            try:
                yield api_url
            finally:
                _drain_prefect_workers()
    finally:
        _stop(process)
