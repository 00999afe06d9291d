"""The chapter stream on the wire: the seed's events as Server-Sent Events with ids.

Each event is ``id: g{generation}-{seq}`` (``seq``: the regen event's number in the run
of that generation), ``event: summary|content|complete|failed`` and one ``data:`` line of
JSON. A stream opens with ``retry:`` and sends a ``: keep-alive`` comment when nothing
else was sent for a while.

Reading the log: regen's ``chunk`` is the seed's ``content``; ``summary`` and
``complete`` are the flow's own; ``run.failed`` / ``run.cancelled`` become ``failed``.
When a stream attempt was discarded (``stream.reset``), the next attempt starts with a
new ``summary``: a reader starts the text afresh on every ``summary``. A replay of what
is already written skips attempts that a later ``summary`` replaced, so a stream read
from its start carries the chapter's text once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from regen.engine import Engine, Event, EventType, RunNotFound

SSE_CONTENT_TYPE = "text/event-stream"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: How long a browser waits before reconnecting (``retry:``), in milliseconds.
RETRY_MS = 3000
#: Seconds of silence before a keep-alive comment.
KEEP_ALIVE_S = 15.0
KEEP_ALIVE = ": keep-alive\n\n"
FAILED_MESSAGE = "章节生成失败，请重试"

_ID = re.compile(r"^g(\d+)-(\d+)$")
_PAGE = 1000


@dataclass(frozen=True, slots=True)
class WireEvent:
    """One event as a reader gets it."""

    id: str
    event: str
    data: Mapping[str, Any]

    def frame(self) -> str:
        """``id:``, ``event:`` and ``data:`` lines (JSON on one line, UTF-8 as is)."""
        text = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.event}\ndata: {text}\n\n"


def event_id(generation: int, seq: int) -> str:
    return f"g{generation}-{seq}"


#: The largest event number a log can hold (SQLite's and PostgreSQL's integers).
_LARGEST_SEQ = 2**63 - 1


def resume_after(last_event_id: str | None, generation: int) -> int:
    """The ``seq`` to resume after: the id's, when it belongs to ``generation``; else 0
    (an id of a generation since cleaned up, or none: the chapter from its start)."""
    match = _ID.match((last_event_id or "").strip())
    if match is None or int(match.group(1)) != generation:
        return 0
    seq = int(match.group(2))
    return seq if seq <= _LARGEST_SEQ else 0  # beyond any log: not an id this stream sent


def failure_reason(error: object) -> str:
    """What a reader is told of a failed generation's cause: the kind of failure regen
    classified (``auth``, ``timeout``, ``rate_limit``…), or ``cancelled``. The full
    story (the provider, its address, the exception) is the operator's, in ``regen
    show``; a reader's page has no use for it."""
    kind = error.get("kind") if isinstance(error, Mapping) else None
    return str(kind) if kind else "cancelled"


def to_wire(event: Event, generation: int) -> WireEvent | None:
    """The seed's event for a log entry, or ``None`` for regen's own bookkeeping."""
    data = event.data
    found: tuple[str, dict[str, Any]] | None = None
    if event.type == "summary":
        found = ("summary", {"title": data.get("title")})
    elif event.type == EventType.CHUNK:
        found = ("content", {"text": data.get("text", "")})
    elif event.type == "complete":
        found = ("complete", {"options": data.get("options", [])})
    elif event.type in (EventType.RUN_FAILED, EventType.RUN_CANCELLED):
        found = ("failed", {"message": FAILED_MESSAGE, "reason": failure_reason(data.get("error"))})
    if found is None:
        return None
    return WireEvent(event_id(generation, event.seq), *found)


def latest_attempt(events: list[WireEvent]) -> list[WireEvent]:
    """``events`` without the text of attempts that a later ``summary`` replaced."""
    last = max((i for i, e in enumerate(events) if e.event == "summary"), default=0)
    return [e for i, e in enumerate(events) if i >= last or e.event not in ("summary", "content")]


async def written(
    engine: Engine, run_id: str, generation: int, after: int
) -> tuple[list[WireEvent], int]:
    """What the log holds after ``after`` (discarded attempts skipped), and its last seq."""
    history: list[WireEvent] = []
    cursor = after
    while True:
        page = await engine.read_events(run_id, after=cursor, limit=_PAGE)
        for event in page:
            cursor = event.seq
            wire = to_wire(event, generation)
            if wire is not None:
                history.append(wire)
        if len(page) < _PAGE:
            return latest_attempt(history), cursor


async def chapter_events(
    engine: Engine, run_id: str, generation: int, after: int
) -> AsyncIterator[WireEvent]:
    """The chapter's events after ``after``: what is written, then live until the run ends
    (or its log is cleaned up, a new generation having replaced a failed one)."""
    try:
        history, cursor = await written(engine, run_id, generation, after)
        for written_event in history:
            yield written_event
        async for event in engine.events(run_id, after=cursor, follow=True):
            live = to_wire(event, generation)
            if live is not None:
                yield live
    except RunNotFound:
        return


async def frames(
    events: AsyncIterator[WireEvent], keep_alive: float = KEEP_ALIVE_S
) -> AsyncIterator[str]:
    """The response body: ``retry:``, each event's frame, keep-alive comments between."""
    yield f"retry: {RETRY_MS}\n\n"
    iterator = aiter(events)

    async def following() -> WireEvent:
        return await anext(iterator)

    pending: asyncio.Task[WireEvent] = asyncio.ensure_future(following())
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=keep_alive)
            if not done:
                yield KEEP_ALIVE
                continue
            try:
                wire = pending.result()
            except StopAsyncIteration:
                return
            yield wire.frame()
            pending = asyncio.ensure_future(following())
    finally:
        # The reader went away (or the run ended): stop reading the log. The generation
        # itself is the worker's and goes on.
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            with contextlib.suppress(RuntimeError):
                await closer()
