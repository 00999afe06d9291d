"""What every adapter shares: its key, base URL, policy and transport, and reading replies."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from regen.foundation import ConfigError, mask_secrets, remember_secret
from regen.providers._breaker import OUTAGE_KINDS
from regen.providers._errors import APIError, BadResponse, ProviderError
from regen.providers._fallback import Link, StreamLink, run_chain, run_stream_chain
from regen.providers._secret import Secret
from regen.providers._transport import Response, Transport, redact_url
from regen.retry import Failure, Kind, Policy, classify_response, kind_of_code, parse_retry_after

if TYPE_CHECKING:
    from regen.providers._guard import Guard

T = TypeVar("T")

#: JSON replies larger than this are refused (base64 images make replies of a few MB).
MAX_JSON_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One generated image: a ``url`` to download, or its bytes (``b64_json`` replies);
    ``provider``: the provider that served it; ``task_id``: the asynchronous task that made
    it, for providers that make images in tasks (DashScope)."""

    url: str | None = None
    data: bytes | None = None
    revised_prompt: str | None = None
    index: int = 0
    provider: str | None = None
    task_id: str | None = None

    def __repr__(self) -> str:
        where = redact_url(self.url) if self.url else f"<{len(self.data or b'')} bytes>"
        return f"GeneratedImage({where}, index={self.index})"


#: What an image call's ``wrap=`` is: given one provider's generation, the whole of that
#: provider's part of the attempt (the image pipeline adds the download).
ImageWrap = Callable[
    [Callable[[], Awaitable[list[GeneratedImage]]]], Awaitable[list[GeneratedImage]]
]


def run_sync(transport: Transport, factory: Callable[[], Awaitable[T]]) -> T:
    """Run an adapter's coroutine to completion from synchronous code.

    The transport's connections belong to the event loop that opened them, so they are
    closed before :func:`asyncio.run` ends. Refused inside a running loop, where the
    caller should ``await`` the async method instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "a *_sync() method was called from a running event loop: await the async "
            "method instead (e.g. `await provider.chat(...)`)"
        )

    async def main() -> T:
        try:
            return await factory()
        finally:
            await transport.aclose()

    return asyncio.run(main())


def _no_fallbacks(capability: str) -> list[BaseProvider]:
    return []


def _as_secret(api_key: str | Secret | None) -> Secret | None:
    if api_key is None or isinstance(api_key, Secret):
        return api_key or None
    return Secret(api_key) if api_key else None


class BaseProvider:
    """An adapter's settings and the plumbing its methods share.

    ``api_key`` is required (a :class:`ConfigError` before any request otherwise); it is
    held as a :class:`Secret` and appears masked in every ``repr``, log and error.
    ``headers`` go with every request; each method also takes per-request ``headers``.
    Without a ``transport`` the adapter opens its own and closes it in :meth:`aclose`.
    """

    kind: ClassVar[str] = ""
    #: What the adapter can do (``chat``, ``image``): fallbacks must offer the same.
    capabilities: ClassVar[frozenset[str]] = frozenset()
    default_base_url: ClassVar[str] = ""
    default_policy: ClassVar[Policy] = Policy(attempts=3, timeout=120.0, wait=1.0, max_wait=30.0)

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | Secret | None = None,
        *,
        name: str | None = None,
        model: str | None = None,
        policy: Policy | None = None,
        transport: Transport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name or self.kind
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"provider {self.name!r}: base_url={self.base_url!r} is not an http(s) URL"
            )
        secret = _as_secret(api_key)
        if secret is None:
            raise ConfigError(
                f"provider {self.name!r} has no API key: pass api_key= or set it in the "
                "environment / providers file"
            )
        self.api_key: Secret = secret
        remember_secret(secret.reveal())
        self.model = model
        self.policy = policy or self.default_policy
        self._owns_transport = transport is None
        self.transport = transport or Transport()
        self.headers = dict(headers or {})
        #: The provider's breaker, rate limit and counters (set by a :class:`Registry`;
        #: ``None`` for an adapter built on its own, whose calls go straight through).
        self.guard: Guard | None = None
        #: The fallback adapters offering a capability, in order (set by a registry).
        self.fallbacks: Callable[[str], list[BaseProvider]] = _no_fallbacks
        #: Failure kinds that hand an attempt to the next provider of the chain.
        self.fallback_on: frozenset[Kind] = OUTAGE_KINDS

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r}, "
            f"api_key={self.api_key.masked!r}, model={self.model!r})"
        )

    async def aclose(self) -> None:
        """Close the adapter's connections (only when it opened its own transport)."""
        if self._owns_transport:
            await self.transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- requests ----------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.api_key.reveal()}", **self.headers}
        if extra:
            headers.update(extra)
        return headers

    def _policy(self, policy: Policy | None, operation: str) -> Policy:
        chosen = policy or self.policy
        if chosen.operation is None:
            chosen = chosen.replace(operation=f"{self.name}.{operation}")
        if self.guard is not None:
            chosen = self.guard.counting(chosen)
        return chosen

    # --- guarded attempts ------------------------------------------------------------------

    async def _chained(
        self,
        capability: str,
        model: str | None,
        call: Callable[[], Awaitable[T]],
        fallback: Callable[[BaseProvider], Callable[[], Awaitable[T]]],
        *,
        allowed: bool = True,
        wrap: Callable[[Callable[[], Awaitable[T]]], Awaitable[T]] | None = None,
    ) -> T:
        """One attempt of ``call`` on this provider, under its guard, handed to the
        fallbacks offering ``capability`` (each called as ``fallback(adapter)()``) when this
        provider is down. ``allowed=False`` keeps a non-idempotent call on this provider.
        ``wrap``: each provider's attempt runs ``wrap(its call)`` instead, inside its guard."""

        def link(
            name: str, guard: Guard | None, at: str | None, one: Callable[[], Awaitable[T]]
        ) -> Link[T]:
            if wrap is None:
                return Link(name, guard, at, one)
            around = wrap
            return Link(name, guard, at, lambda: around(one))

        links = [link(self.name, self.guard, model, call)]
        if allowed:
            links += [
                link(other.name, other.guard, other.default_model(capability), fallback(other))
                for other in self.fallbacks(capability)
            ]
        return await run_chain(links, fallback_on=self.fallback_on, allowed=allowed)

    def _stream_chained(
        self,
        capability: str,
        model: str | None,
        open_stream: Callable[[], AsyncIterator[T]],
        fallback: Callable[[BaseProvider], Callable[[], AsyncIterator[T]]],
        *,
        allowed: bool = True,
    ) -> AsyncGenerator[T, None]:
        """:meth:`_chained` for a stream: handed to a fallback only before its first item."""
        links = [StreamLink(self.name, self.guard, model, open_stream)]
        if allowed:
            links += [
                StreamLink(
                    other.name, other.guard, other.default_model(capability), fallback(other)
                )
                for other in self.fallbacks(capability)
            ]
        return run_stream_chain(links, fallback_on=self.fallback_on, allowed=allowed)

    def default_model(self, capability: str) -> str | None:
        """The model a call for ``capability`` uses when it names none."""
        return self.model

    async def fallback_images(
        self, prompt: str, *, n: int = 1, size: str | None = None, response_format: str = "url"
    ) -> list[GeneratedImage]:
        """One attempt at ``n`` images for another provider's call: only the prompt, the
        number, the size (in this provider's notation) and, where this provider can honour
        it, ``response_format`` (bytes instead of a URL to download) carry over."""
        raise ConfigError(f"provider {self.name!r} ({self.kind}) does not generate images")

    @staticmethod
    def fallback_allowed(policy: Policy) -> bool:
        """Whether a call under ``policy`` may go to another provider: not a call that must
        not run twice, unless it carries an idempotency key."""
        return policy.idempotent or policy.idempotency_key is not None

    def _scrub(self, text: str) -> str:
        """``text`` safe to show: this adapter's key and anything key-like masked."""
        key = self.api_key.reveal()
        if key and key in text:
            text = text.replace(key, self.api_key.masked)
        return mask_secrets(text)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        guard = self.guard
        if guard is not None:
            await guard.pace()
        response = await self.transport.request(
            method,
            self._url(path),
            headers=self._headers(headers),
            json=json_body,
            max_bytes=MAX_JSON_BYTES,
        )
        if guard is not None and response.status == 429:
            guard.rate_limited(parse_retry_after(response.headers, time.time()))
        return response

    # --- health -------------------------------------------------------------------------------

    #: What :meth:`probe` asks for, relative to the base URL: the cheapest request the API
    #: answers only for a valid key.
    probe_path: ClassVar[str] = "models"

    async def probe(self, *, timeout: float = 5.0) -> Response:  # noqa: ASYNC109 - aiohttp's timeout
        """One cheap request proving the service answers and accepts the key: sent once (no
        retries), bounded by ``timeout`` seconds. Returns the reply, headers included (where
        rate-limit headers tell the quota left); raises :class:`ProviderError` when the
        reply says the service or the key is not fine (its ``failure`` holds the status and
        any ``Retry-After``)."""
        response = await self.transport.request(
            "GET",
            self._url(self.probe_path),
            headers=self._headers(),
            timeout=timeout,
            max_bytes=MAX_JSON_BYTES,
        )
        self._judge_probe(response)
        return response

    def _judge_probe(self, response: Response) -> None:
        """Raise the error a :meth:`probe` reply stands for; return when it is fine."""
        self.json_of(response, "probe")

    # --- reading replies ----------------------------------------------------------------------

    def error_from(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """The error an HTTP error reply stands for, classified and with secrets masked."""
        parsed = _loads(body)
        failure = classify_response(status, headers, parsed if parsed is not None else body)
        assert failure is not None  # status >= 400
        failure = _should_retry(failure, headers)
        code, message, request_id = _error_fields(parsed)
        if message is None:
            message = _excerpt(body)
        text = f"{self.name}: HTTP {status}" + (f" {code}" if code else "") + f": {message}"
        return APIError(
            self._scrub(text), failure, provider=self.name, code=code, request_id=request_id
        )

    def embedded_error(self, payload: Mapping[str, Any], status: int | None = None) -> APIError:
        """The error a 200 body or a stream event carries as ``{"error": {...}}``."""
        code, message, request_id = _error_fields(payload)
        kind = kind_of_code(code) or Kind.SERVER_ERROR
        failure = Failure.of(kind, code or "embedded_error", status=status)
        text = f"{self.name}: error in reply" + (f" {code}" if code else "") + f": {message}"
        return APIError(
            self._scrub(text), failure, provider=self.name, code=code, request_id=request_id
        )

    def json_of(
        self, response: Response, what: str, *, embedded_errors: bool = True
    ) -> dict[str, Any]:
        """The JSON object a successful reply must carry, or the right error for what came.

        ``embedded_errors``: a 200 carrying ``{"error": {...}}`` is an error (OpenAI-style
        gateways); pass ``False`` for APIs whose replies hold an ``error`` field as data
        (a failed task's status).
        """
        if response.status >= 400:
            raise self.error_from(response.status, response.headers, response.body)
        parsed = _loads(response.body)
        if not isinstance(parsed, dict):
            raise self.bad_body(response, what)
        error = parsed.get("error")
        if embedded_errors and isinstance(error, Mapping) and error:
            raise self.embedded_error(parsed, response.status)
        return parsed

    def bad_body(self, response: Response, what: str) -> BadResponse:
        """A :class:`BadResponse` for a 2xx body that is not the JSON object expected."""
        head = response.body.lstrip()[:256].lower()
        if not response.body.strip():
            reason, described = "empty_body", "an empty body"
        elif response.content_type in ("text/html", "application/xhtml+xml") or head.startswith(
            (b"<!doctype html", b"<html")
        ):
            reason, described = "html_200", "an HTML page"
        elif _loads(response.body) is None:
            reason, described = "invalid_json", f"invalid JSON ({_excerpt(response.body)})"
        else:
            reason, described = "missing_fields", "JSON that is not an object"
        return BadResponse(
            self._scrub(f"{self.name}: {what}: HTTP {response.status} with {described}"),
            reason,
            provider=self.name,
            status=response.status,
        )

    def missing(self, what: str, field: str, status: int = 200) -> BadResponse:
        """A :class:`BadResponse` for a reply without a field the protocol promises."""
        return BadResponse(
            f"{self.name}: {what}: reply has no {field}",
            "missing_fields",
            provider=self.name,
            status=status,
        )


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _error_fields(parsed: Any) -> tuple[str | None, str | None, str | None]:
    """``(code, message, request_id)`` from an OpenAI-style or DashScope-style error body."""
    if not isinstance(parsed, Mapping):
        return None, None, None
    request_id = parsed.get("request_id")
    inner = parsed.get("error")
    body: Mapping[str, Any] = inner if isinstance(inner, Mapping) else parsed
    code = body.get("code") or body.get("type")
    message = body.get("message")
    return (
        str(code) if code else None,
        str(message) if message else None,
        str(request_id) if request_id else None,
    )


def _excerpt(body: bytes, limit: int = 160) -> str:
    text = body.decode("utf-8", "replace").strip()
    text = " ".join(text.split())
    return (text[:limit] + "…") if len(text) > limit else (text or "(empty body)")


def _should_retry(failure: Failure, headers: Mapping[str, str]) -> Failure:
    """Honour OpenAI's ``x-should-retry`` header, which overrides the status's verdict."""
    hint = headers.get("x-should-retry")
    if hint == "true" and not failure.retry:
        return Failure(failure.kind, True, failure.reason, failure.status, failure.retry_after)
    if hint == "false" and failure.retry:
        return Failure(failure.kind, False, failure.reason, failure.status, failure.retry_after)
    return failure
