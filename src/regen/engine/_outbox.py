"""A run's writes on their way to the store: kept in order, committed many at a time.

Writes that need not wait (events, an item starting) are queued and return at once; they
are committed with the next awaited commit, or a few milliseconds later. An awaited
commit returns once its writes, and every write queued before them, are durable. While
one commit is in flight, the writes made meanwhile (items of a map step finishing
together) wait and go in the next one: one transaction for all of them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

from regen.engine._blocking import wait_for
from regen.store import Commit, Lease, Store, Write

#: How long writes that nobody waits for may sit in the outbox, so that events and item
#: starts share the commit of the next finished item.
_LAG = 0.005


class Outbox:
    """The ordered writes of one run held under ``lease``, committed on ``loop``.

    ``observe(commit)`` hears every commit's outcome (a lost lease, a cancel request).
    """

    def __init__(
        self,
        store: Store,
        lease: Lease,
        loop: asyncio.AbstractEventLoop,
        observe: Callable[[Commit], None],
    ) -> None:
        self._store = store
        self._lease = lease
        self._loop = loop
        self._observe = observe
        self._lock = threading.Lock()  # writes come from steps in other threads too
        self._pending: list[Write] = []
        self._waiters: list[asyncio.Future[Commit]] = []
        self._flushing = False
        self._scheduled = False
        #: A commit of writes nobody waited for failed: the next awaited commit raises it.
        self._failed: Exception | None = None

    def add(self, writes: Sequence[Write], *, blocking: bool = False) -> None:
        """Queue writes (from any thread); they are committed soon, in order.

        ``blocking``: the caller is sync code running on the loop's own thread (a step run
        inline), so the loop cannot commit them while it runs: they are committed here and
        now, with everything queued before them, for their events to show meanwhile.
        """
        if blocking:
            self._commit_blocking(writes)
            return
        with self._lock:
            self._pending.extend(writes)
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is self._loop:
            self._later()
        else:
            self._loop.call_soon_threadsafe(self._later)

    async def commit(self, writes: Sequence[Write]) -> Commit:
        """Queue writes and wait until they (and all queued before them) are committed."""
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed
        if not self._flushing:
            # Nothing in flight: commit here, with whatever is queued (no task to start).
            self._flushing = True
            try:
                with self._lock:
                    taken, self._pending = [*self._pending, *writes], []
                result = await self._store.commit(self._lease, taken)
            finally:
                self._flushing = False
                if self._waiters or self._pending:
                    self._start()
            self._observe(result)
            return result
        future: asyncio.Future[Commit] = self._loop.create_future()
        with self._lock:
            self._pending.extend(writes)
            self._waiters.append(future)
        return await future

    async def flush(self) -> Commit:
        """Commit whatever is queued and wait for it."""
        return await self.commit(())

    def _commit_blocking(self, writes: Sequence[Write]) -> None:
        with self._lock:
            taken, self._pending = [*self._pending, *writes], []
        self._observe(wait_for(self._store.commit(self._lease, taken)))

    def _later(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_later(_LAG, self._start)

    def _start(self) -> None:
        self._scheduled = False
        # Nothing queued (an awaited commit took it meanwhile): no task, none left behind
        # unstarted should the loop close now.
        if not self._flushing and (self._pending or self._waiters):
            self._flushing = True
            self._loop.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while True:
                with self._lock:
                    writes, self._pending = self._pending, []
                    waiters, self._waiters = self._waiters, []
                if not writes and not waiters:
                    return
                try:
                    result = await self._store.commit(self._lease, writes)
                except Exception as exc:
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    if not waiters:  # nobody waits to hear it: the next commit will
                        self._failed = exc
                    continue
                self._observe(result)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(result)
        finally:
            self._flushing = False
