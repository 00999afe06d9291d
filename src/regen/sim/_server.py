"""Serving the simulator: uvicorn's httptools protocol on a uvloop loop, with a fast stop.

The protocol is uvicorn's, plus one line: it puts the connection's transport in the
scope, so faults can reset a socket or cut a body. Shutdown does not wait on hung
requests: they are woken, answered 503 and closed.

That protocol class, its constructor and ``ServerState`` are not uvicorn's public API,
so the simulator runs only on the uvicorn releases it is tested with
(:data:`TESTED_UVICORN`, pinned the same in ``pyproject.toml``). uvicorn's public
``Server`` serves as fast, but hands the app no transport, and ASGI has no "abort the
connection": the ``reset``, ``stream_cut`` and ``truncated_image`` faults need one.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from regen.sim._app import SimApp, create_app
from regen.sim._config import SimConfig
from regen.sim._http import TRANSPORT_KEY

_SHUTDOWN_GRACE = 2.0

#: The uvicorn releases the simulator is tested with: at least the first, below the second.
#: ``pyproject.toml``'s ``sim`` and ``server`` extras pin the same range (a test checks).
TESTED_UVICORN = ("0.30", "0.56")


class UnsupportedUvicorn(RuntimeError):
    """The installed uvicorn is outside :data:`TESTED_UVICORN`."""


def check_uvicorn(version: str | None = None) -> None:
    """Refuse a uvicorn release outside :data:`TESTED_UVICORN`, saying what to install."""
    if version is None:
        import uvicorn  # noqa: PLC0415 - the simulator's server is an extra

        version = uvicorn.__version__
    low, below = TESTED_UVICORN
    if not _release(low) <= _release(version) < _release(below):
        raise UnsupportedUvicorn(
            f"regen sim runs on uvicorn >={low},<{below}, the releases it is tested with "
            f"(it extends uvicorn's HTTP protocol, which is not public API); uvicorn "
            f"{version} is installed: pip install 'uvicorn[standard]>={low},<{below}'"
        )


def _release(version: str) -> tuple[int, ...]:
    """``"0.55.0"`` → ``(0, 55, 0)``; pre-release and local suffixes are ignored."""
    found = re.match(r"\d+(?:\.\d+)*", version)
    if found is None:
        raise UnsupportedUvicorn(f"cannot read uvicorn's version {version!r}")
    return tuple(int(part) for part in found.group().split("."))


def _protocol_class() -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415

    class SimProtocol(HttpToolsProtocol):
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.scope[TRANSPORT_KEY] = self.transport  # type: ignore[literal-required]

    return SimProtocol


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when installed, else asyncio's."""
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Runner:
    """Serves one app on one socket until ``stop`` is called (from any thread)."""

    def __init__(self, app: SimApp, sock: socket.socket) -> None:
        self.app = app
        self.sock = sock
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._stop_requested = False

    async def serve(self, on_started: Callable[[], None] | None = None) -> None:
        """Serve until ``stop``; ``on_started`` runs once the socket accepts requests."""
        import uvicorn  # noqa: PLC0415
        from uvicorn.server import ServerState  # noqa: PLC0415

        config = uvicorn.Config(
            self.app,
            http=_protocol_class(),
            ws="none",  # no WebSocket routes: nor loading a websockets library
            interface="asgi3",
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_keep_alive=5,
        )
        config.load()
        state = ServerState()
        loop = asyncio.get_running_loop()
        self.loop = loop
        self._stop = asyncio.Event()
        if self._stop_requested:  # asked to stop before it was running
            self._stop.set()

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=state,
                app_state={},
                _loop=loop,
            )

        server = await loop.create_server(protocol, sock=self.sock, backlog=2048)
        ticker = loop.create_task(self._tick(state))
        self.started.set()
        if on_started is not None:
            on_started()
        try:
            await self._stop.wait()
        finally:
            ticker.cancel()
            await self._shutdown(server, state)

    @staticmethod
    async def _tick(state: Any) -> None:
        while True:
            state.default_headers = [
                (b"date", formatdate(usegmt=True).encode()),
                (b"server", b"regen-sim"),
            ]
            await asyncio.sleep(1)

    async def _shutdown(self, server: asyncio.AbstractServer, state: Any) -> None:
        loop = asyncio.get_running_loop()
        self.app.state.closing.set()
        server.close()
        for connection in list(state.connections):
            connection.shutdown()
        deadline = loop.time() + _SHUTDOWN_GRACE
        # uvicorn's connection set has no event to wait on: poll it briefly.
        while state.connections and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        for connection in list(state.connections):
            connection.transport.abort()
        tasks = [task for task in state.tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1.0)
        self.sock.close()

    def stop(self) -> None:
        """Ask the server to stop; safe from any thread, even before it runs."""
        self._stop_requested = True
        loop, event = self.loop, self._stop
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)


def serve(
    config: SimConfig | None = None, *, on_ready: Callable[[str], None] | None = None
) -> None:
    """Run the simulator until SIGINT/SIGTERM; ``on_ready`` gets its base URL once listening."""
    check_uvicorn()
    config = config or SimConfig()
    sock = bind_socket(config.host, config.port)
    runner = Runner(create_app(config), sock)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread() and sys.platform != "win32":
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, runner.stop)
        url = f"http://{shown}:{port}"
        await runner.serve(None if on_ready is None else lambda: on_ready(url))

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner_loop:
            runner_loop.run(main())
    finally:
        sock.close()
