"""The private event loop ``engine.sync.run`` runs on: one per thread, kept between calls.

``asyncio.run`` builds and tears down a loop every call (a fifth of a millisecond); a
loop kept per thread costs that once, and connections opened on it (a provider's HTTP
pool) stay usable from one call to the next. Like ``asyncio.run``, each call cancels
the tasks it leaves behind before returning.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Loops:
    """A reusable :class:`asyncio.Runner` per calling thread; :meth:`close` closes them."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._runners: list[asyncio.Runner] = []
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on this thread's loop (not from inside a running one)."""
        runner: asyncio.Runner | None = getattr(self._local, "runner", None)
        if runner is None:
            runner = asyncio.Runner()
            with self._lock:
                self._runners.append(runner)
            self._local.runner = runner
        try:
            return runner.run(coro)
        finally:
            _cancel_leftovers(runner.get_loop())

    def close(self) -> None:
        """Close every thread's loop (finalising async generators, as ``asyncio.run`` does)."""
        with self._lock:
            runners, self._runners = self._runners, []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            inside = False
        else:  # closed from a coroutine: another loop runs here, so none can run the clean-up
            inside = True
        for runner in runners:
            if inside:
                runner.get_loop().close()
            else:
                runner.close()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
