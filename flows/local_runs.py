"""Flows without a Prefect server: the same flow and task code, run as plain calls.

With a Prefect API configured (``PREFECT_API_URL``) a flow runs as a Prefect flow run
that reports to it, as scheduled runs always do. With none, :func:`run_flow` calls the
flow's function itself: its tasks (declared with :func:`step`) run as plain calls with
the same retries, ``.submit`` goes to a thread pool, run logs go to Python logging and
artifacts are skipped. No temporary server is started, so a command answers in seconds.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any

from prefect import Task, get_run_logger
from prefect.exceptions import MissingContextError

_pool: ContextVar[ThreadPoolExecutor | None] = ContextVar("fairchord_local_pool", default=None)


def in_local_run() -> bool:
    """True inside :func:`run_flow` without a Prefect API."""
    return _pool.get() is not None


def api_configured() -> bool:
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def retry_on(*types: type[BaseException]) -> Callable[[Any, Any, Any], bool]:
    """A Prefect retry condition: retry only when the task raised one of ``types``
    (local runs read the same types from the condition)."""

    def condition(_task: Any, _task_run: Any, state: Any) -> bool:
        try:
            state.result()
        except types:
            return True
        except BaseException:
            return False
        return False

    condition.retry_types = types  # type: ignore[attr-defined]
    return condition


def _delay(task: Task[Any, Any], attempt: int) -> float:
    delay = task.retry_delay_seconds
    if isinstance(delay, list | tuple):
        return float(delay[min(attempt, len(delay) - 1)]) if delay else 0.0
    return float(delay or 0)


def _call(task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The task's function, with its retries (and retry condition's exception types)."""
    attempts = (task.retries or 0) + 1
    retry_types = getattr(task.retry_condition_fn, "retry_types", (Exception,))
    for attempt in range(attempts):
        try:
            return task.fn(*args, **kwargs)
        except Exception as exc:
            if attempt + 1 >= attempts or not isinstance(exc, retry_types):
                raise
            logging.getLogger(__name__).warning(
                "%s failed (%s: %s); retry %d of %d",
                task.name,
                type(exc).__name__,
                exc,
                attempt + 1,
                attempts - 1,
            )
            time.sleep(_delay(task, attempt))
    raise AssertionError("unreachable")


class Step(Task[Any, Any]):
    """A Prefect task that runs as a plain call inside a local run."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if in_local_run():
            return _call(self, args, kwargs)
        return super().__call__(*args, **kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        pool = _pool.get()
        if pool is None:
            return super().submit(*args, **kwargs)
        context = contextvars.copy_context()  # the worker sees the local run too
        return pool.submit(context.run, _call, self, args, kwargs)


def step(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """``@step`` or ``@step(retries=..., ...)``: a :class:`Step` with Prefect task options."""

    def wrap(function: Callable[..., Any]) -> Step:
        return Step(fn=function, **options)

    return wrap(fn) if fn is not None else wrap


def run_flow(flow: Any, /, *, workers: int = 2, dask_runner: Any = None, **params: Any) -> Any:
    """Run ``flow`` with ``params``: a Prefect flow run on ``workers`` threads when an API is
    configured, else a local run with ``workers`` threads for submitted tasks. With a
    ``dask_runner`` it is always a Prefect flow run on it (with a temporary server, owned by
    this process, when no API is configured)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.prefect_api import prefect_api

    if dask_runner is not None:
        with prefect_api():
            return flow.with_options(task_runner=dask_runner)(**params)
    if api_configured():
        return flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))(**params)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="fairchord") as pool:
        token = _pool.set(pool)
        try:
            return flow.fn(**params)
        finally:
            _pool.reset(token)


DASK_CONNECT_TIMEOUT_S = 5.0
_DASK_SCHEMES = ("tcp", "tls")


def dask_address(address: str, *, timeout_s: float = DASK_CONNECT_TIMEOUT_S) -> str:
    """``address`` (``tcp://HOST:PORT``, ``tls://…`` or ``HOST:PORT``) as a scheduler URL,
    once something accepts a connection there within ``timeout_s``.

    Raises :class:`ValueError` with the reason otherwise, before any work has started.
    """
    import socket
    from urllib.parse import urlsplit

    text = address.strip()
    url = text if "://" in text else f"tcp://{text}"
    parts = urlsplit(url)
    if parts.scheme not in _DASK_SCHEMES:
        raise ValueError(
            f"Dask scheduler address {address!r}: scheme {parts.scheme!r} is not one of "
            + ", ".join(_DASK_SCHEMES)
        )
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number
        host, port = None, None
    if not host or port is None or parts.path not in ("", "/"):
        raise ValueError(f"Dask scheduler address {address!r} is not tcp://HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ValueError(
            f"no Dask scheduler answers at {url} within {timeout_s:g} s ({exc})"
        ) from exc
    return f"{parts.scheme}://{parts.netloc}"


def dask_task_runner(address: str | None = None, *, n_workers: int = 2) -> Any:
    """A prefect-dask runner: on the existing cluster whose scheduler is at ``address``
    (connecting gives up after :data:`DASK_CONNECT_TIMEOUT_S`), else on a local cluster of
    ``n_workers`` single-threaded processes that lives as long as the flow run."""
    from prefect_dask import DaskTaskRunner

    if address is not None:
        return DaskTaskRunner(address=address, client_kwargs={"timeout": DASK_CONNECT_TIMEOUT_S})
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1, "processes": True}
    )


def run_logger(name: str) -> Any:
    """The flow run's logger, or a Python logger in a local run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(f"fairchord.flows.{name}")


def publish(create: Callable[..., Any], **artifact: Any) -> None:
    """Create a Prefect artifact for the flow run; a local run has none to attach it to."""
    if not in_local_run():
        create(**artifact)
