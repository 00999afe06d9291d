"""The OpenAI-compatible adapter: chat (plain and streamed), images, models.

Speaks to OpenAI, DeepSeek, DashScope's compatible mode, image gateways (``jimeng-4.0``
with ``ratio``/``resolution``/``negative_prompt``) and the simulator alike.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from regen.providers._base import BaseProvider, GeneratedImage, ImageWrap, run_sync
from regen.providers._chat_stream import ChatStreamReader, content_filtered
from regen.providers._errors import BadResponse
from regen.providers._secret import Secret
from regen.providers._stream import StreamChunk, StreamEvent, StreamReset, retry_stream
from regen.providers._transport import Response, Transport
from regen.retry import Policy

Messages = str | Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A finished chat completion: its text and what the provider said about it."""

    text: str
    finish_reason: str | None = None
    model: str | None = None
    id: str | None = None
    usage: Mapping[str, Any] = field(default_factory=dict)
    #: The provider that served the completion (a fallback's name when one did).
    provider: str | None = None


def _as_openai(provider: BaseProvider) -> OpenAIProvider:
    """A chat fallback: only OpenAI-compatible providers offer chat."""
    if not isinstance(provider, OpenAIProvider):
        raise TypeError(f"provider {provider.name!r} ({provider.kind}) does not offer chat")
    return provider


def _messages(messages: Messages) -> list[Mapping[str, Any]]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return list(messages)


class OpenAIProvider(BaseProvider):
    """An OpenAI-compatible API at ``base_url`` (``…/v1``).

    Every public method runs under a :class:`Policy` (the adapter's, or ``policy=``) and
    raises :class:`regen.retry.GiveUp` when it fails for good. ``*_once`` methods make a
    single attempt, for callers that run their own policy (the image pipeline).
    """

    kind: ClassVar[str] = "openai"
    capabilities: ClassVar[frozenset[str]] = frozenset({"chat", "image"})
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | Secret | None = None,
        *,
        name: str | None = None,
        model: str | None = "gpt-4o-mini",
        image_model: str | None = "dall-e-3",
        policy: Policy | None = None,
        transport: Transport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            name=name,
            model=model,
            policy=policy,
            transport=transport,
            headers=headers,
        )
        self.image_model = image_model

    # --- chat --------------------------------------------------------------------------------

    def _chat_body(
        self, messages: Messages, model: str | None, params: Mapping[str, Any], *, stream: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model or self.model, "messages": _messages(messages)}
        body.update(params)
        if stream:
            body["stream"] = True
        else:
            body.pop("stream", None)
        return body

    def default_model(self, capability: str) -> str | None:
        """The chat model, or the image model for ``image`` calls."""
        return self.image_model if capability == "image" else self.model

    async def chat_once(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        headers: Mapping[str, str] | None = None,
        fallback: bool = True,
        **params: Any,
    ) -> ChatResult:
        """One chat completion attempt, no retries: on this provider, or on its fallbacks
        when it is down (``fallback=False``: on this provider only). A fallback gets the
        messages and ``params`` without this provider's ``model`` and ``headers``."""
        return await self._chained(
            "chat",
            model or self.model,
            lambda: self._chat_request(messages, model=model, headers=headers, **params),
            lambda other: lambda: _as_openai(other)._chat_request(messages, **params),
            allowed=fallback,
        )

    async def _chat_request(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> ChatResult:
        body = self._chat_body(messages, model, params, stream=False)
        response = await self._send("POST", "chat/completions", json_body=body, headers=headers)
        payload = self.json_of(response, "chat completion")
        choices = payload.get("choices")
        if not isinstance(choices, list):
            raise self.missing("chat completion", "choices list", response.status)
        if not choices:
            raise BadResponse(
                f"{self.name}: chat completion: reply has no choices ({choices!r})",
                "empty_choices",
                provider=self.name,
                status=response.status,
            )
        first = choices[0] if isinstance(choices[0], Mapping) else {}
        message = first.get("message")
        finish = first.get("finish_reason")
        if finish == "content_filter":
            raise content_filtered(self.name)
        if not isinstance(message, Mapping):
            raise self.missing("chat completion", "choices[0].message", response.status)
        content = message.get("content")
        if content is None and not message.get("tool_calls"):
            raise self.missing("chat completion", "choices[0].message.content", response.status)
        usage = payload.get("usage") or {}
        if self.guard is not None and isinstance(usage, Mapping):
            total = usage.get("total_tokens")
            if isinstance(total, int):
                await self.guard.spend(total)
        return ChatResult(
            text=content if isinstance(content, str) else "",
            finish_reason=finish if isinstance(finish, str) else None,
            model=payload.get("model"),
            id=payload.get("id"),
            usage=usage,
            provider=self.name,
        )

    async def chat(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        policy: Policy | None = None,
        headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> ChatResult:
        """A chat completion, retried under the policy (on the fallbacks while this
        provider is down, unless the policy marks the call as not idempotent)."""
        chosen = self._policy(policy, "chat")
        return await chosen.acall(
            self.chat_once,
            messages,
            model=model,
            headers=headers,
            fallback=self.fallback_allowed(chosen),
            **params,
        )

    async def stream_once(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        headers: Mapping[str, str] | None = None,
        fallback: bool = True,
        **params: Any,
    ) -> AsyncGenerator[str, None]:
        """One streamed chat completion, no retries: its text deltas, in order.

        Raises when the stream breaks: cut mid-way (``connection``), ended without
        ``[DONE]`` or a ``finish_reason`` (``bad_response``), or carrying an error event
        (classified by its code). The text already yielded is then incomplete.

        While this provider is down (its breaker open, or the stream failing before its
        first text with a kind of ``fallback_on``) the stream comes from its fallbacks, as
        :meth:`chat_once`'s completion does (``fallback=False``: this provider only); once
        text has been yielded it stays on the provider that sent it.
        """
        body = self._chat_body(messages, model, params, stream=True)
        texts = self._stream_chained(
            "chat",
            model or self.model,
            lambda: self._stream_request(body, headers),
            lambda other: lambda: _as_openai(other)._stream_chat(messages, params),
            allowed=fallback,
        )
        async with contextlib.aclosing(texts):
            async for text in texts:
                yield text

    def _stream_chat(
        self, messages: Messages, params: Mapping[str, Any]
    ) -> AsyncGenerator[str, None]:
        """Another provider's stream served here: its messages and params, this model."""
        return self._stream_request(self._chat_body(messages, None, params, stream=True), None)

    async def _stream_request(
        self, body: Mapping[str, Any], headers: Mapping[str, str] | None
    ) -> AsyncGenerator[str, None]:
        if self.guard is not None:
            await self.guard.pace()
        async with self.transport.stream(
            "POST", self._url("chat/completions"), headers=self._headers(headers), json=body
        ) as response:
            if response.status >= 400:
                raw = await response.read(1024 * 1024)
                raise self.error_from(response.status, response.headers, raw)
            if response.content_type != "text/event-stream":
                async for text in self._not_a_stream(
                    response.status, response.headers, await response.read(1024 * 1024)
                ):
                    yield text
                return
            reader = ChatStreamReader(self, response.status)
            async for chunk in response.iter_bytes():
                for text in reader.feed(chunk):
                    yield text
                if reader.done:
                    return
            for text in reader.finish():
                yield text

    async def _not_a_stream(
        self, status: int, headers: Mapping[str, str], raw: bytes
    ) -> AsyncIterator[str]:
        """A non-SSE reply to a streaming request: an error object, a whole completion
        (some gateways ignore ``stream``), or a proxy's HTML page."""
        response = Response(status, headers, raw, self._url("chat/completions"))
        payload = self.json_of(response, "chat stream")
        choices = payload.get("choices")
        if not isinstance(choices, list):
            raise self.missing("chat stream", "choices list", status)
        if not choices or not isinstance(choices[0], Mapping):
            raise BadResponse(
                f"{self.name}: chat stream: reply has no choices",
                "empty_choices",
                provider=self.name,
                status=status,
            )
        message = choices[0].get("message") or {}
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, str):
            raise self.missing("chat stream", "choices[0].message.content", status)
        yield content

    async def stream(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        policy: Policy | None = None,
        headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> AsyncGenerator[StreamEvent, None]:
        """A streamed chat completion, retried: :class:`StreamChunk` and :class:`StreamReset`.

        See :mod:`regen.providers._stream` for the contract: on a reset, discard the text
        received since the previous reset; a normal end means the text is complete. Each
        attempt goes to the fallbacks while this provider is down, as :meth:`stream_once`
        says (unless the policy marks the call as not idempotent).
        """
        chosen = self._policy(policy, "stream")
        fallback = self.fallback_allowed(chosen)
        events = retry_stream(
            chosen,
            lambda: self.stream_once(
                messages, model=model, headers=headers, fallback=fallback, **params
            ),
        )
        # Closed here, not by the garbage collector: a consumer that stops early cancels
        # the running attempt at once.
        async with contextlib.aclosing(events):
            async for event in events:
                yield event

    async def complete(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        stream: bool = False,
        policy: Policy | None = None,
        headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> str:
        """The full text of a completion, retried; streamed underneath when ``stream=True``."""
        if not stream:
            result = await self.chat(
                messages, model=model, policy=policy, headers=headers, **params
            )
            return result.text
        parts: list[str] = []
        events = self.stream(messages, model=model, policy=policy, headers=headers, **params)
        async with contextlib.aclosing(events):
            async for event in events:
                if isinstance(event, StreamReset):
                    parts.clear()
                elif isinstance(event, StreamChunk):
                    parts.append(event.text)
        return "".join(parts)

    # --- images -------------------------------------------------------------------------------

    async def generate_once(
        self,
        prompt: str,
        *,
        n: int = 1,
        size: str | None = None,
        response_format: str = "url",
        model: str | None = None,
        ratio: str | None = None,
        resolution: str | None = None,
        negative_prompt: str | None = None,
        headers: Mapping[str, str] | None = None,
        fallback: bool = True,
        wrap: ImageWrap | None = None,
        **extra: Any,
    ) -> list[GeneratedImage]:
        """One image generation attempt, no retries: ``n`` images (URLs or bytes), from
        this provider or, while it is down, from its fallbacks (``fallback=False``: this
        provider only). A fallback gets the prompt, ``n``, ``size`` and, where it can give
        bytes, ``response_format``: an image asked as ``b64_json`` is not a URL to download
        because the fallback served it.
        ``wrap``: each provider's attempt runs as ``wrap(generate)`` inside its guard
        (:class:`ImagePipeline` downloads the image there, so an image that cannot be had
        counts against the provider that made it and hands the call to the next one).
        """
        params: dict[str, Any] = {
            "size": size,
            "response_format": response_format,
            "model": model,
            "ratio": ratio,
            "resolution": resolution,
            "negative_prompt": negative_prompt,
            "headers": headers,
            **extra,
        }
        return await self._chained(
            "image",
            model or self.image_model,
            lambda: self._images_request(prompt, n=n, **params),
            lambda other: (
                lambda: other.fallback_images(
                    prompt, n=n, size=size, response_format=response_format
                )
            ),
            allowed=fallback,
            wrap=wrap,
        )

    async def fallback_images(
        self, prompt: str, *, n: int = 1, size: str | None = None, response_format: str = "url"
    ) -> list[GeneratedImage]:
        """One attempt at ``n`` images for another provider's call (``1024*1024`` sizes
        are written ``1024x1024`` here), as URLs or bytes (``b64_json``)."""
        return await self._images_request(
            prompt,
            n=n,
            size=size.replace("*", "x") if size else None,
            response_format=response_format,
        )

    async def _images_request(
        self,
        prompt: str,
        *,
        n: int = 1,
        size: str | None = None,
        response_format: str = "url",
        model: str | None = None,
        ratio: str | None = None,
        resolution: str | None = None,
        negative_prompt: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> list[GeneratedImage]:
        if response_format not in ("url", "b64_json"):
            raise ValueError(f"response_format={response_format!r}: expected 'url' or 'b64_json'")
        body: dict[str, Any] = {
            "model": model or self.image_model,
            "prompt": prompt,
            "n": n,
            "response_format": response_format,
        }
        for key, value in (
            ("size", size),
            ("ratio", ratio),
            ("resolution", resolution),
            ("negative_prompt", negative_prompt),
        ):
            if value is not None:
                body[key] = value
        body.update(extra)
        response = await self._send("POST", "images/generations", json_body=body, headers=headers)
        payload = self.json_of(response, "image generation")
        data = payload.get("data")
        if not isinstance(data, list) or not data:
            raise self.missing("image generation", "data", response.status)
        images: list[GeneratedImage] = []
        for index, item in enumerate(data):
            if not isinstance(item, Mapping):
                raise self.missing("image generation", f"data[{index}]", response.status)
            revised = item.get("revised_prompt")
            revised = revised if isinstance(revised, str) else None
            if response_format == "b64_json" or item.get("b64_json"):
                encoded = item.get("b64_json")
                if not isinstance(encoded, str) or not encoded:
                    raise self.missing(
                        "image generation", f"data[{index}].b64_json", response.status
                    )
                try:
                    raw = base64.b64decode(encoded, validate=True)
                except (binascii.Error, ValueError):
                    raise BadResponse(
                        f"{self.name}: data[{index}].b64_json is not base64",
                        "invalid_base64",
                        provider=self.name,
                    ) from None
                images.append(
                    GeneratedImage(
                        data=raw, revised_prompt=revised, index=index, provider=self.name
                    )
                )
                continue
            url = item.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise self.missing("image generation", f"data[{index}].url", response.status)
            images.append(
                GeneratedImage(url=url, revised_prompt=revised, index=index, provider=self.name)
            )
        return images

    async def generate_images(
        self,
        prompt: str,
        *,
        n: int = 1,
        policy: Policy | None = None,
        **params: Any,
    ) -> list[GeneratedImage]:
        """``n`` generated images, retried under the policy. ``params`` as :meth:`generate_once`."""
        chosen = self._policy(policy, "images")
        params.setdefault("fallback", self.fallback_allowed(chosen))
        return await chosen.acall(self.generate_once, prompt, n=n, **params)

    async def generate_image(
        self, prompt: str, *, policy: Policy | None = None, **params: Any
    ) -> GeneratedImage:
        """One generated image, retried under the policy."""
        images = await self.generate_images(prompt, n=1, policy=policy, **params)
        return images[0]

    # --- models -------------------------------------------------------------------------------

    async def list_models(
        self, *, policy: Policy | None = None, headers: Mapping[str, str] | None = None
    ) -> list[str]:
        """The ids of the models the API offers (a cheap health check)."""

        async def once() -> list[str]:
            response = await self._send("GET", "models", headers=headers)
            payload = self.json_of(response, "model list")
            data = payload.get("data")
            if not isinstance(data, list):
                raise self.missing("model list", "data", response.status)
            return [str(m["id"]) for m in data if isinstance(m, Mapping) and "id" in m]

        return await self._policy(policy, "models").acall(once)

    def _judge_probe(self, response: Response) -> None:
        payload = self.json_of(response, "model list")
        if not isinstance(payload.get("data"), list):
            raise self.missing("model list", "data", response.status)

    # --- sync wrappers -----------------------------------------------------------------------

    def chat_sync(self, messages: Messages, **kwargs: Any) -> ChatResult:
        """:meth:`chat` for synchronous code (no event loop running)."""
        return run_sync(self.transport, lambda: self.chat(messages, **kwargs))

    def complete_sync(self, messages: Messages, **kwargs: Any) -> str:
        """:meth:`complete` for synchronous code (no event loop running)."""
        return run_sync(self.transport, lambda: self.complete(messages, **kwargs))

    def generate_images_sync(self, prompt: str, **kwargs: Any) -> list[GeneratedImage]:
        """:meth:`generate_images` for synchronous code (no event loop running)."""
        return run_sync(self.transport, lambda: self.generate_images(prompt, **kwargs))

    def generate_image_sync(self, prompt: str, **kwargs: Any) -> GeneratedImage:
        """:meth:`generate_image` for synchronous code (no event loop running)."""
        return run_sync(self.transport, lambda: self.generate_image(prompt, **kwargs))

    def list_models_sync(self, **kwargs: Any) -> list[str]:
        """:meth:`list_models` for synchronous code (no event loop running)."""
        return run_sync(self.transport, lambda: self.list_models(**kwargs))
