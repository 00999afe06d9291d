"""The Server-Sent Events wire format: frames with ``id:``, keep-alive comments, ``retry:``."""

from __future__ import annotations

import json
from typing import Any

#: The media type of an event stream.
MEDIA_TYPE = "text/event-stream"
#: Headers that keep proxies from buffering or caching a stream.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: How long a browser's EventSource waits before reconnecting (ms), sent first.
RETRY_MS = 2000
#: A comment line every this many seconds keeps idle connections (and proxies) open.
KEEPALIVE_S = 15.0
KEEPALIVE = b": keep-alive\n\n"
#: The largest id a stream sends: sequence numbers and cursors are 64-bit in every store.
MAX_ID = 2**63 - 1


def retry_frame(ms: int = RETRY_MS) -> bytes:
    """``retry: ms``: the reconnection delay for EventSource clients."""
    return f"retry: {ms}\n\n".encode()


def frame(type_: str, data: Any, event_id: int | None = None) -> bytes:
    """One event: ``id:`` (when given), ``event:`` (its type), ``data:`` (JSON, one line)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"{head}event: {type_}\ndata: {body}\n\n".encode()


def resume_point(last_event_id: str | None, after: int | None) -> int:
    """Where a stream resumes: ``Last-Event-ID`` (sent by a reconnecting EventSource)
    wins over ``?after=``; neither means from the start. :class:`ValueError` for an id
    this server never sends (ids are whole numbers)."""
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        if not text.isdigit() or int(text) > MAX_ID:
            raise ValueError(
                f"Last-Event-ID {last_event_id[:40]!r} is not an id this stream sent "
                "(ids are whole numbers); reconnect without it to start over"
            )
        return int(text)
    return max(after or 0, 0)
