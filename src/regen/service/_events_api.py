"""Server-Sent Events: one run's log (``id:`` = its ``seq``) and every run's run-level
events (``id:`` = the global cursor), both resumable with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Response
from fastapi.responses import StreamingResponse

from regen.engine import Engine, Event
from regen.service import _sse
from regen.service._feed import RunFeeds

#: Event types of ``GET /api/events`` (run-level: queued, started, succeeded, …).
_RUN_PREFIX = "run."
_ALL_PAGE = 500


def _stream(frames: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(frames, media_type=_sse.MEDIA_TYPE, headers=_sse.HEADERS)


def _resume(last_event_id: str | None, after: int | None) -> int:
    try:
        return _sse.resume_point(last_event_id, after)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


class _Frames:
    """Each event's frame, encoded once however many followers send it (a bounded cache
    keyed by run and ``seq``)."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    def of(self, event: Event) -> bytes:
        key = (event.run_id, event.seq)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = _sse.frame(event.type, event.to_dict(), event.seq)
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return found


def events_router(engine: Engine, feeds: RunFeeds, *, keepalive: float, poll: float) -> APIRouter:
    """The SSE routes on ``engine``."""
    api = APIRouter(tags=["events"])
    encoded = _Frames()
    stream_doc: dict[int | str, dict[str, object]] = {
        200: {"content": {_sse.MEDIA_TYPE: {}}, "description": "An event stream."},
        204: {"description": "The run has ended and no event follows ``Last-Event-ID``."},
    }

    @api.get("/api/runs/{run_id}/events", responses=stream_doc, response_class=StreamingResponse)
    async def run_events(
        run_id: str,
        after: Annotated[
            int | None, Query(ge=0, le=_sse.MAX_ID, description="Resume after this seq.")
        ] = None,
        last_event_id: Annotated[str | None, Header(max_length=40)] = None,
    ) -> Response:
        """The run's log: replayed from ``Last-Event-ID`` (or ``?after=``; without either,
        from its start), then followed live until the run has ended, when an ``end``
        event (no id) closes the stream. ``id:`` is each event's ``seq``; ``event:`` its
        type; ``data:`` the event as JSON. A replay leaves out the chunks of discarded
        stream attempts (their ``stream.reset`` is sent)."""
        start = _resume(last_event_id, after)
        run = await engine.get_run(run_id)
        ended = run.status.finished and run.retry_at is None
        if ended and start > 0 and not await engine.read_events(run_id, start, 1):
            # Nothing more will come: 204 tells an EventSource to stop reconnecting.
            return Response(status_code=204)

        async def frames() -> AsyncIterator[bytes]:
            yield _sse.retry_frame()
            async for batch in feeds.follow(run_id, start):
                if not batch:
                    yield _sse.KEEPALIVE
                elif len(batch) == 1:
                    yield encoded.of(batch[0])
                else:
                    yield b"".join(encoded.of(event) for event in batch)
            final = await engine.get_run(run_id)
            yield _sse.frame("end", {"run_id": run_id, "status": str(final.status)})

        return _stream(frames())

    @api.get("/api/events", responses=stream_doc, response_class=StreamingResponse)
    async def all_events(
        after: Annotated[
            int | None, Query(ge=0, le=_sse.MAX_ID, description="Resume after this cursor.")
        ] = None,
        last_event_id: Annotated[str | None, Header(max_length=40)] = None,
    ) -> Response:
        """Every run's run-level events (``run.queued``, ``run.started``, ``run.succeeded``
        …) as they are written, for live lists; ``id:`` is the global event cursor. Never
        ends by itself."""
        start = _resume(last_event_id, after)

        async def frames() -> AsyncIterator[bytes]:
            yield _sse.retry_frame()
            cursor, quiet = start, 0.0
            while True:
                batch: list[Event] = await engine.read_all_events(
                    cursor, _ALL_PAGE, prefix=_RUN_PREFIX
                )
                for event in batch:
                    cursor = event.cursor
                    yield _sse.frame(event.type, event.to_dict(), event.cursor)
                if len(batch) == _ALL_PAGE:
                    continue
                quiet = 0.0 if batch else quiet + poll
                if quiet >= keepalive:
                    quiet = 0.0
                    yield _sse.KEEPALIVE
                await asyncio.sleep(poll)

        return _stream(frames())

    return api
