"""Awaiting a coroutine from synchronous code, wherever that code runs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result, blocking this thread.

    From a thread with no event loop (a sync step in the pool) it gets a loop of its own;
    from a thread whose loop is running (sync code called by an async step) it runs on a
    helper thread, since that loop cannot be re-entered.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    done: Future[T] = Future()

    def run() -> None:
        try:
            done.set_result(asyncio.run(coro))
        except BaseException as exc:
            done.set_exception(exc)

    threading.Thread(target=run, name="regen-wait", daemon=True).start()
    return done.result()
