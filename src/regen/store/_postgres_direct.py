"""Connections of their own for the event loops that talk to the store often.

The store's pool lives on a thread of its own (psycopg's async connections belong to one
loop), so a call made from another loop is handed over to that thread and its answer
handed back: two thread wake-ups, 0.1–0.3 ms on a busy two-core machine, as much as the
server's work on a checkpoint. A loop that sends single statements again and again (the
one executing a run: its checkpoints, its claim, its reads) gets a connection opened on
it, and its statements are sent from where they are awaited, one at a time (while it is
busy, the loop's other statements go through the pool, side by side). Loops that call
once or twice (``asyncio.run`` of a blocking call) keep using the pool. A connection whose
loop has closed is closed with the next one opened, or with the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    Conn = AsyncConnection[dict[str, Any]]

#: Statements a loop sends through the pool before it gets a connection of its own.
DIRECT_AFTER = 8


class LoopConnections:
    """One connection per event loop that calls often; ``opened(pid)`` and
    ``closed(pid)`` tell the store of their server processes (for its listeners)."""

    def __init__(
        self, url: str, opened: Callable[[int], None], closed: Callable[[int], None]
    ) -> None:
        self._url = url  # never shown: it may hold the password
        self._opened = opened
        self._closed = closed
        self._lock = threading.Lock()
        self._connections: dict[asyncio.AbstractEventLoop, Conn] = {}
        self._uses: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = (
            weakref.WeakKeyDictionary()
        )
        self._busy: set[asyncio.AbstractEventLoop] = set()
        self._shut = False

    def take(self) -> bool:
        """Whether the running loop may send a statement on its own connection now: it calls
        often enough, and its connection is not sending another (statements of several
        runs at once go through the pool side by side). Then the connection is the
        caller's until :meth:`give_back`."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._shut or loop in self._busy:
                return False
            if loop not in self._connections:
                uses = self._uses.get(loop, 0) + 1
                self._uses[loop] = uses
                if uses <= DIRECT_AFTER:
                    return False
            self._busy.add(loop)
            return True

    def give_back(self) -> None:
        """The running loop's connection is free for its next statement."""
        with self._lock:
            self._busy.discard(asyncio.get_running_loop())

    @contextlib.asynccontextmanager
    async def connection(self, wait: float) -> AsyncIterator[Conn]:
        """The running loop's connection (opened if need be; :meth:`take` it first);
        dropped if it fails."""
        import psycopg  # noqa: PLC0415 - the driver is an optional extra

        loop = asyncio.get_running_loop()
        conn = self._connections.get(loop)
        if conn is None or conn.closed:
            conn = await self._open(loop, wait)
        try:
            yield conn
        except psycopg.OperationalError:
            self._drop(loop, conn)
            raise

    async def _open(self, loop: asyncio.AbstractEventLoop, wait: float) -> Conn:
        from psycopg import AsyncConnection  # noqa: PLC0415
        from psycopg.rows import dict_row  # noqa: PLC0415

        conn = await AsyncConnection.connect(
            self._url,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=max(2, min(10, int(wait))),
        )
        self._opened(conn.info.backend_pid)
        with self._lock:
            shut = self._shut
            if not shut:
                stale = [(lp, c) for lp, c in self._connections.items() if lp.is_closed()]
                for gone, _ in stale:
                    del self._connections[gone]
                self._connections[loop] = conn
        if shut:
            stale = [(loop, conn)]
        for _, old in stale:
            self._finish(old)
        if shut:
            from regen.store._errors import StoreError  # noqa: PLC0415

            raise StoreError("the PostgreSQL store is closed")
        return conn

    def _drop(self, loop: asyncio.AbstractEventLoop, conn: Conn) -> None:
        with self._lock:
            if self._connections.get(loop) is conn:
                del self._connections[loop]
        self._finish(conn)

    def _finish(self, conn: Conn) -> None:
        # Closing an async connection sends nothing (it ends the socket), so it can be
        # done from any thread, also for a connection whose loop has closed.
        with contextlib.suppress(Exception):
            self._closed(conn.info.backend_pid)
        conn.pgconn.finish()

    def close(self) -> None:
        """Close every connection (their loops may be gone)."""
        with self._lock:
            self._shut = True
            connections, self._connections = list(self._connections.values()), {}
        for conn in connections:
            self._finish(conn)
