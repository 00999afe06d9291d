"""An event loop on a thread of its own, where the PostgreSQL store's connections live.

A psycopg async connection (and a pool of them) belongs to the loop that opened it, but
the engine awaits the store from several loops (the caller's, the heartbeat thread's,
private loops of synchronous callers). So the store keeps its pool on this loop and every
call is handed over to it: awaited from any loop, or waited for from plain threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from regen.store._errors import StoreError

T = TypeVar("T")


class LoopThread:
    """Runs coroutines on an event loop in a daemon thread; :meth:`close` stops it."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` run on the thread's loop, from any other loop."""
        if not self._thread.is_alive():
            coro.close()
            raise StoreError("the PostgreSQL store is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wrap_future(future)

    def wait(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the thread's loop and wait for it (from a thread with no
        running loop, or one that must block)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LoopThread.wait called from its own thread would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def alive(self) -> bool:
        """Whether the loop still runs."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop the loop (its pending tasks are cancelled) and wait for the thread."""
        if not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self._cancel_all)
        self._thread.join(timeout=10)

    def _cancel_all(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if not tasks:
            self.loop.stop()
            return
        gathered = asyncio.gather(*tasks, return_exceptions=True)
        gathered.add_done_callback(lambda _: self.loop.stop())
