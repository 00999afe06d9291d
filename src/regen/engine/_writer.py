"""Group commit: the writes runs append, many to a transaction, committed where they wait.

Writes that need not wait (events, an item starting) are queued and return at once;
writes that must be durable before going on (an item's success, a step's checkpoint) are
committed with everything queued before them, in order. An awaited commit is made on the
event loop that awaits it, once per turn of the loop, for every item that finished in
that turn: no thread hop, no lock hand-over between threads on the hot path. Writes
queued from other threads (sync steps in the pool, a sync step run inline on the loop)
are committed by a writer thread, so their events show while the step still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from regen.engine import _faults
from regen.store import Batch, Commit, Lease, Store, Write

logger = logging.getLogger("regen.engine")

Observer = Callable[[Lease, Commit], None]
Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Commit]"]
_Entry = tuple[Lease, Sequence[Write], Waiter | None]
#: How long writes that nobody waits for may sit in the queue of an event loop, so that
#: events and item starts share the commit of the next finished item.
_LAG = 0.005


def _resolve(waiters: list[tuple[asyncio.Future[Commit], Commit | BaseException]]) -> None:
    for future, outcome in waiters:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class Writer:
    """Commits batches of writes to ``store``, many at a time, in the order queued.

    ``observer(lease, commit)`` hears every commit's outcome (a lost lease, a cancel
    request), from the committing thread.
    """

    def __init__(self, store: Store, observer: Observer) -> None:
        self._store = store
        self._observer = observer
        self._lock = threading.Lock()  # guards the queue and the schedule
        self._commit_lock = threading.Lock()  # one commit at a time: queue order is kept
        self._wake = threading.Condition(self._lock)
        self._queue: list[_Entry] = []
        # Loops with a flush due (next turn) or lagged; weak: a loop may close first.
        self._soon: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._later: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._for_thread = False
        self._closed = False
        self._thread: threading.Thread | None = None

    # --- queueing ----------------------------------------------------------------------------

    def add(self, lease: Lease, writes: Sequence[Write], *, blocking: bool = False) -> None:
        """Queue writes; returns at once (any thread). ``blocking``: queued by sync code
        running on the event loop's thread (it blocks the loop): the writer thread commits
        them, so they show while that code still runs."""
        loop = None if blocking else self._here()
        with self._lock:
            self._check_open()
            self._queue.append((lease, writes, None))
            if loop is None:
                self._for_thread = True
                self._ensure_thread()
                self._wake.notify()
            elif loop not in self._soon and loop not in self._later:
                self._later.add(loop)
                loop.call_later(_LAG, self._flush_on, loop, self._later)

    async def commit(self, lease: Lease, writes: Sequence[Write]) -> Commit:
        """Queue writes and wait until they (and all queued before them) are committed;
        committed on this loop in its next turn, with whatever else is queued by then."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Commit] = loop.create_future()
        with self._lock:
            self._check_open()
            self._queue.append((lease, writes, (loop, future)))
            if loop not in self._soon:
                self._soon.add(loop)
                loop.call_soon(self._flush_on, loop, self._soon)
        return await future

    def commit_now(self, lease: Lease, writes: list[Write]) -> Commit:
        """Commit writes here and now (any thread), after everything queued before them.

        The caller hears the outcome of its own writes from the result (the observer hears
        it only when other writes were committed with them)."""
        with self._commit_lock:
            if self._closed:
                raise RuntimeError("the engine's writer is closed")
            if self._queue:
                with self._lock:
                    taken, self._queue = self._queue, []
                taken.append((lease, writes, None))
                return self._write(taken)[lease.token]
            # Nothing else to commit (a run of quick steps): the shortest path. (A write
            # queued by another thread meanwhile is not ordered before this one anyway.)
            _faults.point("before_commit")
            result = self._store.commit([Batch(lease, writes)])[0]
            _faults.point("after_commit")
            return result

    def drain(self, lease: Lease | None = None) -> None:
        """Commit what is queued, here and now (any thread)."""
        with self._commit_lock:
            with self._lock:
                taken, self._queue = self._queue, []
            if taken:
                self._write(taken, raise_errors=False)

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join()
        self.drain()

    # --- committing ----------------------------------------------------------------------------

    @staticmethod
    def _here() -> asyncio.AbstractEventLoop | None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the engine's writer is closed")

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="regen-writer", daemon=True)
            self._thread.start()

    def _flush_on(
        self, loop: asyncio.AbstractEventLoop, schedule: weakref.WeakSet[asyncio.AbstractEventLoop]
    ) -> None:
        with self._lock:
            schedule.discard(loop)
        self.drain()

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._wake.wait_for(lambda: self._for_thread or self._closed)
                if self._closed:
                    return
                self._for_thread = False
            self.drain()

    def _write(self, taken: list[_Entry], *, raise_errors: bool = True) -> dict[str, Commit]:
        """Commit ``taken`` in one transaction (the commit lock held); resolve its waiters."""
        batches: dict[str, Batch] = {}
        for lease, writes, _ in taken:
            batch = batches.get(lease.token)
            if batch is None:
                batch = batches[lease.token] = Batch(lease, [])
            batch.writes.extend(writes)
        outcome: dict[str, Any] = {}
        error: Exception | None = None
        try:
            _faults.point("before_commit")
            results = self._store.commit(list(batches.values()))
            _faults.point("after_commit")
            for token, result in zip(batches, results, strict=True):
                outcome[token] = result
                self._observer(batches[token].lease, result)
        except Exception as exc:
            logger.exception("regen: a group commit failed", extra={"writes": len(taken)})
            error = exc
            outcome = dict.fromkeys(batches, exc)
        self._wake_waiters(taken, outcome)
        if error is not None and raise_errors:
            raise error
        return outcome

    @staticmethod
    def _wake_waiters(taken: list[_Entry], outcome: dict[str, Any]) -> None:
        here = None
        with contextlib.suppress(RuntimeError):
            here = asyncio.get_running_loop()
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for lease, _, waiter in taken:
            if waiter is not None:
                by_loop.setdefault(waiter[0], []).append((waiter[1], outcome[lease.token]))
        for loop, waiters in by_loop.items():
            if loop is here:
                _resolve(waiters)
                continue
            with contextlib.suppress(RuntimeError):  # the loop closed while we committed
                loop.call_soon_threadsafe(_resolve, waiters)
