"""A PostgreSQL store's listeners, and the connection that hears other processes' commits.

Commits that append events send ``NOTIFY regen_events, '<run id>'``; a run queued (new,
retried, released) sends ``NOTIFY regen_queue, '<flow>'``. The store tells its own
listeners of its own commits at once; a listening connection, opened on the store's loop
when the first listener is added, hears every other connection's notifications (the
store's own are skipped, by the server process that sent them). Best effort: a lost
listening connection is opened again, and followers and workers poll meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable

from regen.store._interface import Listener, QueueListener
from regen.store._postgres_db import CHANNEL, QUEUE_CHANNEL

logger = logging.getLogger("regen.store")
#: How long a lost listening connection waits before connecting again (seconds).
RELISTEN_DELAY = 1.0


class Listeners:
    """Listeners of one store; ``own_pids``: the server processes of its pool."""

    def __init__(self, url: str, location: str, loop: asyncio.AbstractEventLoop) -> None:
        self._url = url  # never shown: it may hold the password
        self._location = location
        self._loop = loop
        self._listeners: list[Listener] = []
        self._queue_listeners: list[QueueListener] = []
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self.own_pids: set[int] = set()
        #: Set while the listening connection is up.
        self.listening = threading.Event()

    def add(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(run_id)`` after commits to a run; returns what removes it."""
        return self._add(self._listeners, listener)

    def add_queue(self, listener: QueueListener) -> Callable[[], None]:
        """Call ``listener(flow)`` when a run of ``flow`` is queued; returns what removes it."""
        return self._add(self._queue_listeners, listener)

    def _add(
        self, group: list[Callable[[str], None]], listener: Callable[[str], None]
    ) -> Callable[[], None]:
        with self._lock:
            group.append(listener)
        if self._task is None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._start)

        def remove() -> None:
            with self._lock:
                if listener in group:
                    group.remove(listener)

        return remove

    def notify(self, run_ids: Iterable[str]) -> None:
        """Tell every listener of commits to these runs (from any thread)."""
        self._tell(self._listeners, run_ids)

    def queued(self, flows: Iterable[str]) -> None:
        """Tell every queue listener that runs of these flows were queued (any thread)."""
        self._tell(self._queue_listeners, flows)

    def _tell(self, group: list[Callable[[str], None]], values: Iterable[str]) -> None:
        with self._lock:
            listeners = list(group)
        for listener in listeners:
            for value in values:
                try:
                    listener(value)
                except Exception:
                    logger.warning("regen: a store listener failed", exc_info=True)

    def stop(self) -> None:
        """Stop listening (on the store's loop)."""
        if self._task is not None:
            self._task.cancel()

    def _start(self) -> None:
        if self._task is None:
            self._task = self._loop.create_task(self._listen())

    async def _listen(self) -> None:
        from psycopg import AsyncConnection  # noqa: PLC0415 - the driver is an optional extra

        warned = False  # once per outage, not at every attempt
        while True:
            try:
                async with await AsyncConnection.connect(self._url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    await conn.execute(f"LISTEN {QUEUE_CHANNEL}")
                    self.listening.set()
                    warned = False
                    # Runs queued before now went unheard: whoever waits, look.
                    self.queued(("",))
                    async for note in conn.notifies():
                        if note.pid in self.own_pids:
                            continue
                        if note.channel == QUEUE_CHANNEL:
                            self.queued((note.payload,))
                        else:
                            self.notify((note.payload,))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not warned:
                    logger.warning(
                        "regen: listening for PostgreSQL notifications failed; retrying",
                        extra={"database": self._location, "error": str(exc).strip()},
                    )
                    warned = True
            self.listening.clear()
            await asyncio.sleep(RELISTEN_DELAY)
