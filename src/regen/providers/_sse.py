"""An incremental decoder of server-sent events, tolerant of what real gateways send.

Comments (``: keep-alive``), blank lines between or before events, ``\\r\\n`` line ends,
multi-line ``data:`` fields and chunks that split a line (or a UTF-8 character) anywhere
are all parsed through.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One event: its ``data`` (lines joined by ``\\n``), and ``event``/``id`` if given."""

    data: str
    event: str | None = None
    id: str | None = None


class SSEDecoder:
    """Feed bytes as they arrive; get back the events they complete."""

    __slots__ = ("_buffer", "_data", "_event", "_id")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Events completed by ``chunk``."""
        self._buffer.extend(chunk)
        events: list[ServerSentEvent] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            event = self._line(raw.rstrip(b"\r").decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[ServerSentEvent]:
        """Events left when the stream ends: a last line without its newline, a pending event.

        The SSE spec drops an event not closed by a blank line; a clean end right after
        ``data: [DONE]`` is common enough that it is dispatched instead.
        """
        events: list[ServerSentEvent] = []
        if self._buffer:
            raw = bytes(self._buffer).rstrip(b"\r")
            self._buffer.clear()
            event = self._line(raw.decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        event = self._dispatch()
        if event is not None:
            events.append(event)
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: ": keep-alive", ": OPENROUTER PROCESSING"
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = None
            return None
        event = ServerSentEvent("\n".join(self._data), self._event, self._id)
        self._data, self._event = [], None
        return event
