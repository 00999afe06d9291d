"""Concurrency slots for map items: a retry waiting for a slot goes before a new item."""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    """At most ``size`` attempts running at once.

    An item holds a slot only while an attempt runs (not while it waits to retry), and
    a freed slot goes to a waiting retry before a new item, so a retry is not starved by
    the stream of new items behind it.
    """

    def __init__(self, size: int) -> None:
        self.free = size
        self._retries: deque[asyncio.Future[None]] = deque()
        self._new: deque[asyncio.Future[None]] = deque()

    async def acquire(self, *, retry: bool) -> None:
        """Wait for a slot (``retry``: ahead of new items)."""
        if self.free > 0 and not self._retries and (retry or not self._new):
            self.free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._retries if retry else self._new).append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed over as we were cancelled: pass it on
            raise

    def release(self) -> None:
        """Give a slot back (to the first waiter, if any)."""
        for queue in (self._retries, self._new):
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)
                    return
        self.free += 1
