"""Cutting an attempt at its timeout: a timer that cancels an async attempt's task, or a
worker thread a sync attempt is abandoned in."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from regen.retry._errors import AttemptTimeout

R = TypeVar("R")


def run_in_thread(fn: Callable[..., R], args: Any, kwargs: Any, timeout: float) -> R:
    """Run ``fn`` in a daemon thread; abandon it (it keeps running) past ``timeout``."""
    outcome: list[Any] = []
    done = threading.Event()
    context = contextvars.copy_context()

    def target() -> None:
        try:
            outcome.append((True, context.run(fn, *args, **kwargs)))
        except BaseException as exc:
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=target, name="regen-attempt", daemon=True).start()
    if not done.wait(timeout):
        raise AttemptTimeout(timeout)
    ok, value = outcome[0]
    if ok:
        return cast(R, value)
    raise value


class _Timer:
    """Cancels the task running an attempt when the attempt's time is up."""

    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.fired = False

    def __call__(self) -> None:
        self.fired = True
        self.task.cancel()


async def with_timeout(
    fn: Callable[..., Awaitable[R]], args: Any, kwargs: Any, seconds: float
) -> R:
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - awaited outside a task (rare event-loop setups)
        async with asyncio.timeout(seconds):
            return await fn(*args, **kwargs)
    cancelling = task.cancelling()
    timer = _Timer(task)
    handle = task.get_loop().call_later(seconds, timer)
    try:
        result = await fn(*args, **kwargs)
    except asyncio.CancelledError:
        handle.cancel()
        if timer.fired and task.uncancel() <= cancelling:
            raise AttemptTimeout(seconds) from None
        raise
    except BaseException as exc:
        handle.cancel()
        if timer.fired:
            # The call turned our cancellation into an error of its own: still a timeout.
            task.uncancel()
            raise AttemptTimeout(seconds) from exc
        raise
    handle.cancel()
    if timer.fired:
        task.uncancel()  # the call swallowed the cancellation and finished anyway
    return result
