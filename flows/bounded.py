"""A bounded window of submitted Prefect tasks, whose results are taken in submission order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import TypeVar

from prefect.futures import PrefectFuture

Item = TypeVar("Item")
Result = TypeVar("Result")


def submit_bounded(
    submit: Callable[[Item], PrefectFuture[Result]],
    items: Iterable[Item],
    *,
    limit: int,
    on_result: Callable[[Result], None],
) -> None:
    """``submit(item)`` for every item with at most ``limit`` (at least one) futures in flight,
    handing each result to ``on_result`` strictly in submission order.

    Taking results in order, not as they finish, is what makes what the caller writes
    independent of the task runner: threads and a Dask cluster give the same rows and bytes.
    An error from a task or from ``on_result`` propagates at once; the futures still in
    flight are left to the runner.
    """
    pending: deque[PrefectFuture[Result]] = deque()
    for item in items:
        pending.append(submit(item))
        if len(pending) >= max(1, limit):
            on_result(pending.popleft().result())
    while pending:
        on_result(pending.popleft().result())
