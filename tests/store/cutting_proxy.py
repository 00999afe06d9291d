"""A TCP relay to the PostgreSQL server that cuts a connection as a chosen statement
passes: before the server gets it, or after the server has run it but before its answer
reaches the client; or cuts them all for a while (an outage). What a process sees when the
network or the server fails mid-call.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass


@dataclass
class Cut:
    """Cut the connection that sends ``marker``; ``delivered``: after the server's answer
    to it (the statement ran), else before the server gets it."""

    marker: bytes
    delivered: bool


class CuttingProxy:
    """Relays loopback connections to ``host:port`` on a thread of its own (callers may
    block); :attr:`cut` arms one cut."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.cut: Cut | None = None
        #: Connections cut so far.
        self.cuts = 0
        self.port = 0
        #: During an outage every new connection is closed at once.
        self.down = False

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def go_down(self) -> None:
        """An outage: every connection is cut, and new ones closed, until :meth:`come_back`."""
        self.down = True
        asyncio.run_coroutine_threadsafe(self._cut_all(), self._loop).result(10)

    def come_back(self) -> None:
        """The end of the outage: connections are relayed again."""
        self.down = False

    async def _cut_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.sleep(0.05)  # the relays close their sockets
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        answer_cut = asyncio.Event()

        def close() -> None:
            writer.close()
            up_writer.close()

        async def outward() -> None:
            while data := await reader.read(65536):
                cut = self.cut
                if cut is not None and cut.marker in data:
                    self.cut = None
                    self.cuts += 1
                    if not cut.delivered:
                        close()
                        return
                    answer_cut.set()
                up_writer.write(data)
                await up_writer.drain()
            close()

        async def inward() -> None:
            while data := await up_reader.read(65536):
                if answer_cut.is_set():
                    close()  # the server has answered: the statement ran
                    return
                writer.write(data)
                await writer.drain()
            close()

        tasks = [asyncio.create_task(outward()), asyncio.create_task(inward())]
        self._tasks.update(tasks)
        try:
            with contextlib.suppress(Exception):
                await asyncio.gather(*tasks)
        finally:
            self._tasks.difference_update(tasks)
            close()
