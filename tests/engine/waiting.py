"""Waiting, in tests, for something another task or thread is doing."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


async def until(condition: Callable[[], object], attempts: int = 1000) -> None:
    """Return once ``condition()`` is true (checked every 10 ms, 10 s at most); a condition
    that returns an awaitable is awaited."""
    for _ in range(attempts):
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def status_is(engine: Any, run_id: str, status: object) -> bool:
    """Whether the run's status is ``status`` now."""
    return bool((await engine.get_run(run_id)).status is status)


async def not_resumable(engine: Any, run_id: str) -> bool:
    """Whether the run can no longer be resumed from its checkpoints."""
    return not (await engine.detail(run_id)).resumable


def blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` from sync code, even on the thread of a running (blocked) event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
