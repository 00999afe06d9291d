"""A streamed OpenAI-compatible chat completion, read as its bytes arrive.

The reader turns server-sent events into text deltas (choice 0 only) and decides whether
the stream ended whole: it showed a choice, then ``[DONE]`` or a ``finish_reason``.
Anything less is a truncated answer (``bad_response``). An error object in an event is
raised as the error it names, and a ``content_filter`` finish as ``content_policy``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping

from regen.providers._base import BaseProvider
from regen.providers._errors import APIError, BadResponse
from regen.providers._sse import ServerSentEvent, SSEDecoder
from regen.retry import Failure, Kind


def content_filtered(provider: str) -> APIError:
    """The error for a completion the provider's content filter stopped."""
    return APIError(
        f"{provider}: the provider's content filter stopped the completion",
        Failure.of(Kind.CONTENT_POLICY, "content_filter"),
        provider=provider,
        code="content_filter",
    )


class ChatStreamReader:
    """Reads one chat stream from ``provider`` (answered with HTTP ``status``).

    Feed it each chunk of bytes and yield the texts it gives back; once :attr:`done` is
    true (the stream said ``[DONE]``) the answer is whole and nothing after it need be
    read. Otherwise, at the end of the bytes, :meth:`finish` gives the last texts and
    raises if the stream ended short.
    """

    __slots__ = ("_choices", "_decoder", "_finish", "_provider", "_status", "done")

    def __init__(self, provider: BaseProvider, status: int) -> None:
        self._provider = provider
        self._status = status
        self._decoder = SSEDecoder()
        self._choices = False
        self._finish: str | None = None
        self.done = False

    def feed(self, chunk: bytes) -> Iterator[str]:
        """The texts of the events ``chunk`` completes, up to ``[DONE]``."""
        return self._read(self._decoder.feed(chunk))

    def finish(self) -> Iterator[str]:
        """The texts of an event the bytes ended in; then raises unless the stream was whole."""
        yield from self._read(self._decoder.close())
        if not self.done:
            self._check(done=False)

    def _read(self, events: Iterable[ServerSentEvent]) -> Iterator[str]:
        for event in events:
            if event.data.strip() == "[DONE]":
                self._check(done=True)
                self.done = True
                return
            yield from self._texts(event)

    def _check(self, *, done: bool) -> None:
        name = self._provider.name
        if not self._choices:
            raise BadResponse(
                f"{name}: stream carried no choices",
                "empty_choices",
                provider=name,
                status=self._status,
            )
        if not done and self._finish is None:
            raise BadResponse(
                f"{name}: stream ended without [DONE] or a finish_reason",
                "stream_no_done",
                provider=name,
                status=self._status,
            )

    def _texts(self, event: ServerSentEvent) -> list[str]:
        name = self._provider.name
        try:
            payload = json.loads(event.data)
        except ValueError:
            raise BadResponse(
                f"{name}: stream event is not JSON: {event.data[:80]!r}",
                "invalid_json",
                provider=name,
            ) from None
        if not isinstance(payload, Mapping):
            raise BadResponse(
                f"{name}: stream event is not an object", "invalid_json", provider=name
            )
        if isinstance(payload.get("error"), Mapping):
            raise self._provider.embedded_error(payload)
        texts: list[str] = []
        for choice in payload.get("choices") or ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            self._choices = True
            delta = choice.get("delta") or {}
            content = delta.get("content") if isinstance(delta, Mapping) else None
            if isinstance(content, str) and content:
                texts.append(content)
            finish = choice.get("finish_reason")
            if finish == "content_filter":
                raise content_filtered(name)
            if isinstance(finish, str) and finish:
                self._finish = finish
        return texts
