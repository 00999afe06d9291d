"""A lean ASGI layer: one ``Ctx`` per request, with the transport tricks faults need.

``reset``, ``stream_cut`` and ``truncated_image`` need the raw transport, which the
simulator's own uvicorn protocol puts in the scope under ``regen.transport``. Served by
another ASGI server, ``reset`` degrades to a 500 and cuts to an error logged by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from regen.sim._errors import JSON, Reply
from regen.sim._faults import FaultSpec
from regen.sim._injector import NO_FAULTS, Plan
from regen.sim._script import Ident

if TYPE_CHECKING:
    from regen.sim._state import SimState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TRANSPORT_KEY = "regen.transport"
MAX_BODY = 16 * 1024 * 1024


class ClientGone(Exception):
    """The client went away while the request was being read."""


class BodyTooLarge(Exception):
    """The request body is larger than the simulator accepts."""


def new_request_id() -> str:
    raw = os.urandom(16).hex()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


class Ctx:
    """One request: what was asked, which faults it got, and how to answer."""

    __slots__ = (
        "_headers",
        "_query",
        "_request_id",
        "body",
        "data",
        "extra_headers",
        "family",
        "ident",
        "param",
        "plan",
        "receive",
        "recorded",
        "route",
        "scope",
        "send",
        "state",
    )

    def __init__(
        self,
        state: SimState,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: str,
        family: str,
        param: str,
    ) -> None:
        self.state = state
        self.scope = scope
        self.receive = receive
        self.send = send
        self.route = route
        self.family = family
        self.param = param
        self.body = b""
        self.data: Any = None
        self.ident = Ident()
        self.plan: Plan = NO_FAULTS
        self._request_id: str | None = None
        self.extra_headers: list[tuple[bytes, bytes]] = []
        self.recorded = False
        self._headers: dict[bytes, bytes] | None = None
        self._query: dict[str, list[str]] | None = None

    @property
    def request_id(self) -> str:
        """This request's id, made when first needed."""
        if self._request_id is None:
            self._request_id = new_request_id()
        return self._request_id

    # --- reading -------------------------------------------------------------------
    def header(self, name: bytes) -> str | None:
        if self._headers is None:
            self._headers = dict(self.scope["headers"])
        value = self._headers.get(name)
        return None if value is None else value.decode("latin-1")

    def query(self, name: str) -> str | None:
        if self._query is None:
            self._query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        values = self._query.get(name)
        return values[-1] if values else None

    @property
    def base_url(self) -> str:
        host = self.header(b"host")
        if not host:
            server = self.scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}"
        return f"{self.scope.get('scheme', 'http')}://{host}"

    async def read_body(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self.body

    def parse_json(self) -> str | None:
        """Parse the body into ``data``; the error message when it is not a JSON object."""
        if not self.body:
            return "The request body is empty; expected a JSON object."
        try:
            self.data = json.loads(self.body)
        except ValueError:
            return "We could not parse the JSON body of your request."
        if not isinstance(self.data, dict):
            self.data = None
            return "The request body must be a JSON object."
        return None

    # --- faults and stats --------------------------------------------------------------
    def fault(self, name: str) -> FaultSpec | None:
        """The spec of fault ``name`` if this request has it, recording that it applied."""
        spec = self.plan.faults.get(name)
        if spec is not None:
            self.state.stats.fault(self.route, self.prompt, name)
            self.record(name)
        return spec

    @property
    def prompt(self) -> str | None:
        return self.ident.prompt or self.ident.origin_prompt

    def record(self, outcome: str) -> None:
        if not self.recorded:
            self.recorded = True
            self.state.stats.outcome(self.route, self.prompt, outcome)

    # --- answering ---------------------------------------------------------------------
    async def reply(self, reply: Reply, outcome: str | None = None) -> None:
        await self.respond(reply.status, reply.body, reply.content_type, reply.headers, outcome)

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: bytes = JSON,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        outcome: str | None = None,
    ) -> None:
        self.record(outcome or ("ok" if status < 400 else _label(status)))
        self.state.stats.status(self.route, status)
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    *self.extra_headers,
                    *headers,
                ],
            }
        )
        await self.send({"type": "http.response.body", "body": body})

    async def start(
        self, status: int, content_type: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        """Start a response whose body follows in ``write`` calls."""
        self.record("ok" if status < 400 else _label(status))
        self.state.stats.status(self.route, status)
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type), *self.extra_headers, *headers],
            }
        )

    async def write(self, chunk: bytes, *, more: bool = True) -> None:
        await self.send({"type": "http.response.body", "body": chunk, "more_body": more})

    # --- misbehaving -------------------------------------------------------------------
    def _transport(self) -> asyncio.Transport | None:
        transport = self.scope.get(TRANSPORT_KEY)
        return transport if hasattr(transport, "abort") else None

    async def wait_disconnect(self, limit: float | None = None) -> None:
        """Wait until the client is gone (at most ``limit`` seconds)."""

        async def drain() -> None:
            while (await self.receive())["type"] != "http.disconnect":
                pass

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drain(), limit)

    async def hang(self) -> None:
        """Answer nothing until the client gives up or the server shuts down."""
        waiter = asyncio.ensure_future(self.wait_disconnect())
        closing = asyncio.ensure_future(self.state.closing.wait())
        try:
            await asyncio.wait((waiter, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            closing.cancel()
        if self.state.closing.is_set():
            await self.respond(503, b'{"error":"simulator shutting down"}', outcome="hang")

    async def reset(self) -> None:
        """Close the socket before any header, with a TCP reset where the OS allows."""
        transport = self._transport()
        if transport is None:
            raise RuntimeError("reset fault: the ASGI server gives no transport to close")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        await self.wait_disconnect(1.0)

    async def cut(self) -> None:
        """Drop the connection in the middle of a response body."""
        transport = self._transport()
        if transport is None:
            raise RuntimeError("cut fault: the ASGI server gives no transport to close")
        transport.close()
        await self.wait_disconnect(1.0)

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the server shuts down."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.state.closing.wait(), seconds)


def _label(status: int) -> str:
    return {
        400: "invalid_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "not_found",
        413: "invalid_request",
        429: "rate_limited",
    }.get(status, f"http_{status}")
