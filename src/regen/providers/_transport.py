"""The one HTTP client every adapter goes through: a shared ``aiohttp.ClientSession``.

This module is the seam: nothing else in regen imports aiohttp. It sends requests, bounds
them by the current attempt's time left, reads bodies under a size cap, and translates
aiohttp's errors into :class:`TransportError` carrying their classified failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from regen.providers._errors import BadContent, TransportError
from regen.retry import AttemptTimeout, ConfigError, classify, remaining

logger = logging.getLogger("regen.providers")

#: Slack given to aiohttp's own timeout past the attempt's end, so the retry core's
#: per-attempt timer fires first and the failure reads as the attempt's timeout.
_SLACK = 0.25


def redact_url(url: str) -> str:
    """``url`` without its query string and credentials (signed URLs carry secrets there)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True, slots=True)
class Response:
    """A complete HTTP response: status, headers (case-insensitive) and the body's bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str
    elapsed: float = 0.0

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased (``"application/json"``)."""
        raw = self.headers.get("Content-Type", "")
        return raw.split(";", 1)[0].strip().lower()

    def text(self, limit: int | None = None) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced), cut to ``limit`` chars."""
        text = self.body.decode("utf-8", "replace")
        return text if limit is None else text[:limit]


@dataclass(slots=True)
class StreamingResponse:
    """A response whose body is read as it arrives (server-sent events, large downloads)."""

    status: int
    headers: Mapping[str, str]
    url: str
    _response: aiohttp.ClientResponse = field(repr=False)
    _method: str = field(default="GET", repr=False)

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased."""
        raw = self.headers.get("Content-Type", "")
        return raw.split(";", 1)[0].strip().lower()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body in chunks as they arrive; a cut connection raises :class:`TransportError`."""
        iterator = self._response.content.iter_any().__aiter__()
        while True:
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                return
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if isinstance(exc, AttemptTimeout):
                    raise
                raise _translate(exc, self._method, self.url) from exc
            yield chunk

    async def read(self, max_bytes: int | None = None) -> bytes:
        """The whole body, refusing more than ``max_bytes`` (:class:`BadContent`, no retry)."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self.iter_bytes():
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise BadContent(
                    f"{redact_url(self.url)}: body exceeds the {max_bytes}-byte cap",
                    "too_large",
                    status=self.status,
                    retry=False,
                )
            parts.append(chunk)
        return b"".join(parts)


async def _read_capped(
    response: aiohttp.ClientResponse, max_bytes: int | None, method: str, url: str
) -> bytes:
    """The whole body, refusing more than ``max_bytes`` (:class:`BadContent`, no retry)."""
    parts: list[bytes] = []
    size = 0
    content = response.content
    while True:
        try:
            chunk = await content.readany()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if isinstance(exc, AttemptTimeout):
                raise
            raise _translate(exc, method, url) from exc
        if not chunk:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise BadContent(
                f"{redact_url(url)}: body exceeds the {max_bytes}-byte cap",
                "too_large",
                status=response.status,
                retry=False,
            )
        parts.append(chunk)


def _translate(exc: BaseException, method: str, url: str) -> TransportError:
    detail = str(exc) or type(exc).__name__
    message = f"{method} {redact_url(url)}: {type(exc).__name__}: {detail}"
    return TransportError(message, classify(exc))


class Transport:
    """A pooled HTTP client shared by adapters; one per application is plenty.

    ``limit`` caps open connections (aiohttp's pool), ``timeout`` bounds a request made
    outside any retried attempt, ``connect_timeout`` bounds opening a connection. Inside an
    attempt, each request is also bounded by the time the attempt has left. Close it with
    ``await transport.aclose()`` or ``async with transport:``.
    """

    def __init__(
        self,
        *,
        limit: int = 256,
        timeout: float = 300.0,
        connect_timeout: float = 10.0,
        user_agent: str = "regen",
    ) -> None:
        if limit < 1:
            raise ConfigError(f"limit={limit!r}: expected at least one connection")
        if timeout <= 0 or connect_timeout <= 0:
            raise ConfigError("timeout and connect_timeout must be > 0 seconds")
        self.limit = limit
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        state = "open" if self._session is not None and not self._session.closed else "idle"
        return f"Transport(limit={self.limit}, timeout={self.timeout:g}, {state})"

    # --- the session -----------------------------------------------------------------------

    def _session_here(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None and not session.closed:
            if self._loop is loop:
                return session
            # A session is bound to the loop that made it; that loop is gone (asyncio.run
            # ended without aclose()). Let it go and open a new one on this loop.
            session.detach()
        connector = aiohttp.TCPConnector(limit=self.limit, limit_per_host=0)
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
            headers={"User-Agent": self.user_agent},
            auto_decompress=True,
        )
        # aiohttp silently resends a GET once when the server drops the connection; regen
        # owns the retry loop, so a reset must surface as one failed attempt, not two
        # requests. (aiohttp's own test client switches it off the same way.)
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self._session, self._loop = session, loop
        return session

    async def aclose(self) -> None:
        """Close the pooled connections. The transport reopens lazily if used again."""
        session, self._session, self._loop = self._session, None, None
        if session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- requests ----------------------------------------------------------------------------

    def _timeout(self, timeout: float | None) -> aiohttp.ClientTimeout:
        chosen = self.timeout if timeout is None else timeout
        left = remaining()
        if left is not None:
            chosen = min(chosen, left + _SLACK)
        chosen = max(chosen, 0.001)
        return aiohttp.ClientTimeout(total=chosen, sock_connect=min(chosen, self.connect_timeout))

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109 - becomes aiohttp's own ClientTimeout
        max_bytes: int | None = None,
    ) -> Response:
        """Send a request and read its whole body (at most ``max_bytes``)."""
        # The stream() path written out: a request per map item goes through here, and the
        # context manager and chunk generator cost more than the rest of the wrapper.
        response = await self._send(method, url, headers, json, timeout)
        try:
            started = time.monotonic()
            length = response.headers.get("Content-Length")
            if (
                max_bytes is not None
                and length is not None
                and length.isdigit()
                and int(length) > max_bytes
            ):
                raise BadContent(
                    f"{redact_url(url)}: Content-Length {length} exceeds the {max_bytes}-byte cap",
                    "too_large",
                    status=response.status,
                    retry=False,
                )
            body = await _read_capped(response, max_bytes, method, url)
        except BaseException:
            response.close()  # unread bytes may be left: not pooled
            raise
        response.release()
        return Response(response.status, response.headers, body, url, time.monotonic() - started)

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        json: Any,
        timeout: float | None,  # noqa: ASYNC109 - handed to aiohttp as its ClientTimeout
    ) -> aiohttp.ClientResponse:
        session = self._session_here()
        started = time.monotonic()
        try:
            response = await session.request(
                method,
                url,
                headers=dict(headers) if headers else None,
                json=json,
                timeout=self._timeout(timeout),
                allow_redirects=True,
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if isinstance(exc, AttemptTimeout):
                raise
            logger.debug(
                "%s %s failed: %s",
                method,
                redact_url(url),
                type(exc).__name__,
                extra={"method": method, "url": redact_url(url), "error": type(exc).__name__},
            )
            raise _translate(exc, method, url) from exc
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %d in %.0f ms",
                method,
                redact_url(url),
                response.status,
                (time.monotonic() - started) * 1000,
                extra={"method": method, "url": redact_url(url), "status": response.status},
            )
        return response

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109 - becomes aiohttp's own ClientTimeout
    ) -> AsyncIterator[StreamingResponse]:
        """Send a request; yield the response once its headers are in, body unread."""
        response = await self._send(method, url, headers, json, timeout)
        try:
            yield StreamingResponse(response.status, response.headers, url, response, method)
        except BaseException:
            # Cut short (an error, a timeout, a consumer that stopped reading): the connection
            # may hold unread bytes, so it is closed rather than pooled.
            response.close()
            raise
        else:
            response.release()
